package org.tflitefg.core;

/**
 * The forward-only exact head (tflite_fg/exact_head.py): the cross-entropy gradient of the dense
 * last layer, (softmax(logits) - onehot)^T (x - zp) / B, from one forward pass's int8 logits and the
 * head's int8 input (the graph's `head_in` output). All integer but the last multiply, so it is bit
 * for bit the Python runtime's (ExactHeadGoldenTest):
 *   T[k] = rint(2^16 exp(-s_out k)), k = max(q) - q_j in 0..255;
 *   e = floor((T[k_j] 2^16 + sum T) / (2 sum T)) - 2^15 [j = y]     (softmax on 2^-15, half up);
 *   G = e^T (x - zp) in 64-bit integers;  g = (float) G * (float) (s_x / (s_w B 2^15)).
 * g is in kernel LSBs per unit of a float-space SGD rate; the TFLite FullyConnected layout [C, C_in].
 * An instance holds one model's table; SignSpsa uses it to train the last tensor (Options.exactHead).
 */
public final class ExactHead {
    public static final int ERROR_BITS = 15;
    public static final int TABLE_BITS = 16;
    /** Why a model cannot train its head exactly, and the fix (FgModel._require_head_input). */
    public static final String NO_HEAD_INPUT = "the model has no 'head_in' output (converted before converter version 4, "
            + "or its last trainable layer is not dense): reconvert it with python tools/convert.py to train the head exactly";

    /** The fixed quantization the gradient needs (tflite_fg.exact_head.HeadQuant). */
    public record Quant(double outputScale, double inputScale, int inputZeroPoint, double kernelScale) {
        /** A converted model's: its logits' scale, its `head_in` output's, its dense head kernel's. */
        public static Quant of(Metadata meta, ForwardRunner runner) {
            if (!runner.hasHeadInput()) throw new IllegalArgumentException(NO_HEAD_INPUT);
            Metadata.Trainable head = meta.trainable.get(meta.trainable.size() - 1);
            if (!"Dense".equals(head.op))
                throw new IllegalArgumentException("the last trainable layer '" + head.layer + "' is a " + head.op
                        + ", not Dense: the exact head trains a dense last layer (reconvert with one, or train without it)");
            ForwardRunner.TensorQuant x = runner.headInputQuant();
            return new Quant(meta.outputScale, x.scale(), x.zeroPoint(), head.scale);
        }
    }

    /** What one unperturbed forward pass of a mini-batch gives (tflite_fg.exact_head.HeadBatch): int8
     *  logits [batch, classes], the head's int8 input [batch, width], the labels and the batch loss. */
    public record Batch(byte[] logits, byte[] headIn, int[] labels, double loss) {}

    private final Quant quant;
    private final long[] table;

    public ExactHead(Quant quant) {
        this.quant = quant;
        this.table = softmaxTable(quant.outputScale());
    }

    /** The batch's head gradient [classes, width] in kernel LSBs per unit of float lr. */
    public float[] gradient(Batch b) {
        if (b.labels().length == 0 || b.logits().length % b.labels().length != 0)
            throw new IllegalArgumentException(b.logits().length + " logits for " + b.labels().length + " labels");
        return gradient(b.logits(), b.headIn(), b.labels(), b.logits().length / b.labels().length, table,
                        quant.inputScale(), quant.inputZeroPoint(), quant.kernelScale());
    }

    /** T[k] = rint(2^16 exp(-outputScale k)), k = 0..255. */
    public static long[] softmaxTable(double outputScale) {
        long[] t = new long[256];
        for (int k = 0; k < 256; k++) t[k] = (long) Math.rint(Math.scalb(StrictMath.exp(-outputScale * k), TABLE_BITS));
        return t;
    }

    /** softmax - onehot of each row of int8 logits [batch, classes], on the scale 2^-15. */
    public static long[] softmaxError(byte[] logits, int[] labels, int classes, long[] table) {
        int batch = labels.length;
        if (logits.length != batch * classes)
            throw new IllegalArgumentException(logits.length + " logits for " + batch + " rows of " + classes);
        long[] e = new long[logits.length];
        for (int b = 0; b < batch; b++) {
            int y = labels[b];
            if (y < 0 || y >= classes) throw new IllegalArgumentException("label " + y + " out of [0, " + classes + ")");
            int max = Integer.MIN_VALUE;
            for (int c = 0; c < classes; c++) max = Math.max(max, logits[b * classes + c]);
            long total = 0;
            for (int c = 0; c < classes; c++) total += table[max - logits[b * classes + c]];
            for (int c = 0; c < classes; c++) {
                long t = table[max - logits[b * classes + c]];
                e[b * classes + c] = Math.floorDiv((t << (ERROR_BITS + 1)) + total, 2 * total);
            }
            e[b * classes + y] -= 1L << ERROR_BITS;
        }
        return e;
    }

    /** The head's gradient [classes, width] from the batch's logits and head inputs [batch, width]. */
    public static float[] gradient(byte[] logits, byte[] headIn, int[] labels, int classes, long[] table,
                                   double inputScale, int inputZeroPoint, double kernelScale) {
        int batch = labels.length;
        if (headIn.length % batch != 0) throw new IllegalArgumentException(headIn.length + " head inputs for " + batch + " rows");
        int width = headIn.length / batch;
        long[] e = softmaxError(logits, labels, classes, table);
        float scale = (float) (inputScale / (kernelScale * batch * (1 << ERROR_BITS)));
        float[] g = new float[classes * width];
        for (int c = 0; c < classes; c++) {
            for (int i = 0; i < width; i++) {
                long sum = 0;
                for (int b = 0; b < batch; b++) sum += e[b * classes + c] * (headIn[b * width + i] - inputZeroPoint);
                g[c * width + i] = (float) sum * scale;
            }
        }
        return g;
    }
}
