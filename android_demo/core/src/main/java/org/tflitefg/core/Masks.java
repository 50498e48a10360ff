package org.tflitefg.core;

/**
 * Sparse-update masks of tflite_fg/masks.py (the paper's enhancement 4), from the initial int8
 * kernels: which weights may change. `sparsity` is the frozen fraction of each tensor; ties are
 * broken by flat index, so a mask is the same in Python and Java.
 */
public final class Masks {
    private Masks() {}

    static int keepCount(int size, double sparsity) {
        if (!(sparsity >= 0 && sparsity < 1)) throw new IllegalArgumentException("sparsity must be in [0, 1), got " + sparsity);
        return Math.max(1, size - (int) Math.floor(sparsity * size));
    }

    /** True for the `keep` elements with the smallest keys (ties: lower index first). */
    static boolean[] keepSmallest(long[] keys, int keep) {
        Integer[] order = new Integer[keys.length];
        for (int i = 0; i < order.length; i++) order[i] = i;
        java.util.Arrays.sort(order, (a, b) -> keys[a] != keys[b] ? Long.compare(keys[a], keys[b]) : Integer.compare(a, b));
        boolean[] mask = new boolean[keys.length];
        for (int i = 0; i < keep; i++) mask[order[i]] = true;
        return mask;
    }

    /** Keep the (1 - sparsity) largest |w| of each tensor. */
    public static boolean[][] topk(byte[][] kernels, double sparsity) {
        boolean[][] out = new boolean[kernels.length][];
        for (int t = 0; t < kernels.length; t++) {
            long[] keys = new long[kernels[t].length];
            for (int e = 0; e < keys.length; e++) keys[e] = -Math.abs((long) kernels[t][e]);
            out[t] = keepSmallest(keys, keepCount(keys.length, sparsity));
        }
        return out;
    }

    /** Keep the elements with the smallest draws of stream(seed, 0, MASK_INDEX, tensor). */
    public static boolean[][] random(byte[][] kernels, double sparsity, long seed) {
        boolean[][] out = new boolean[kernels.length][];
        for (int t = 0; t < kernels.length; t++) {
            long[] keys = Rng.uint32Stream(Rng.streamKey(seed, 0, Rng.MASK_INDEX, t), kernels[t].length);
            out[t] = keepSmallest(keys, keepCount(keys.length, sparsity));
        }
        return out;
    }

    /** Keep |w| >= threshold (int8 LSBs); a tensor that would be empty keeps its largest |w|. */
    public static boolean[][] threshold(byte[][] kernels, double thresholdLsb) {
        if (!(thresholdLsb >= 0)) throw new IllegalArgumentException("mask threshold must be >= 0 int8 LSBs, got " + thresholdLsb);
        boolean[][] out = new boolean[kernels.length][];
        for (int t = 0; t < kernels.length; t++) {
            out[t] = new boolean[kernels[t].length];
            boolean any = false;
            for (int e = 0; e < out[t].length; e++) any |= out[t][e] = Math.abs(kernels[t][e]) >= thresholdLsb;
            if (!any) {
                long[] keys = new long[kernels[t].length];
                for (int e = 0; e < keys.length; e++) keys[e] = -Math.abs((long) kernels[t][e]);
                out[t] = keepSmallest(keys, 1);
            }
        }
        return out;
    }
}
