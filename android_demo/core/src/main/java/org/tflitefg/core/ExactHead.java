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
 */
public final class ExactHead {
    public static final int ERROR_BITS = 15;
    public static final int TABLE_BITS = 16;

    private ExactHead() {}

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
