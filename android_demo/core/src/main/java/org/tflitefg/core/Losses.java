package org.tflitefg.core;

/**
 * Softmax cross-entropy and accuracy on the dequantized int8 logits, in float32 with the row max
 * subtracted (as tflite_fg/losses.py). The floats may differ from numpy's in the last bits (exp/log
 * and summation order), which can flip the sign of an exact near-tie L+ - L-; the trainer's
 * arithmetic is bit-exact only given the same losses (SignSpsaGoldenTest).
 */
public final class Losses {
    private Losses() {}

    public static double softmaxCrossEntropy(byte[] logits, int[] labels, int numClasses, double scale, int zeroPoint) {
        int batch = labels.length;
        float s = (float) scale, zp = zeroPoint;
        float total = 0f;
        for (int b = 0; b < batch; b++) {
            int y = labels[b];
            if (y < 0 || y >= numClasses) throw new IllegalArgumentException("label " + y + " out of [0, " + numClasses + ")");
            float max = Float.NEGATIVE_INFINITY;
            for (int c = 0; c < numClasses; c++) max = Math.max(max, (logits[b * numClasses + c] - zp) * s);
            float sum = 0f;
            for (int c = 0; c < numClasses; c++) sum += (float) Math.exp((logits[b * numClasses + c] - zp) * s - max);
            total += (float) Math.log(sum) - ((logits[b * numClasses + y] - zp) * s - max);
        }
        return total / batch;
    }

    /** Fraction of rows whose first maximal logit is the label. */
    public static int correct(byte[] logits, int[] labels, int numClasses) {
        int hits = 0;
        for (int b = 0; b < labels.length; b++) {
            int best = 0;
            for (int c = 1; c < numClasses; c++) if (logits[b * numClasses + c] > logits[b * numClasses + best]) best = c;
            if (best == labels[b]) hits++;
        }
        return hits;
    }
}
