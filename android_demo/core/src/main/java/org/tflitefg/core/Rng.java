package org.tflitefg.core;

/**
 * The counter-based generator of tflite_fg/rng.py (docs/rng.md), bit for bit with Java longs:
 * every random number of a run is a pure function of (seed, step, index, tensor, element), so
 * perturbations are regenerated, never stored, and equal the Python runtime's.
 */
public final class Rng {
    public static final long GAMMA = 0x9E3779B97F4A7C15L;
    public static final long MIX_MUL1 = 0xBF58476D1CE4E5B9L;
    public static final long MIX_MUL2 = 0x94D049BB133111EBL;
    /** Reserved stream indices (tflite_fg/rng.py): never a perturbation index 0..m-1. */
    public static final long MINIBATCH_INDEX = -1L;
    public static final long ASCENT_INDEX = -2L;
    public static final long ENGINE_ROUND_INDEX = -3L;
    public static final long UPDATE_ROUND_INDEX = -4L;
    public static final long MASK_INDEX = -5L;
    public static final long SELECT_INDEX = -6L;
    public static final long SECOND_DRAW = 1L << 32;

    private Rng() {}

    /** SplitMix64's finaliser (wrap-around multiplies, logical shifts). */
    public static long mix(long z) {
        z = (z ^ (z >>> 30)) * MIX_MUL1;
        z = (z ^ (z >>> 27)) * MIX_MUL2;
        return z ^ (z >>> 31);
    }

    private static long field(long value, int position) {
        return mix(value + position * GAMMA);
    }

    /** k = mix(seed + G); k = mix(k ^ mix(step + 2G)); k = mix(k ^ mix(index + 3G)); k = mix(k ^ mix(tensor + 4G)). */
    public static long streamKey(long seed, long step, long index, long tensor) {
        long k = field(seed, 1);
        k = mix(k ^ field(step, 2));
        k = mix(k ^ field(index, 3));
        return mix(k ^ field(tensor, 4));
    }

    /** Draw i (0-based) of a stream: mix(key + (i + 1) G) >>> 32, an unsigned 32-bit value in a long. */
    public static long uint32(long key, long i) {
        return mix(key + (i + 1) * GAMMA) >>> 32;
    }

    /** The first n draws of a stream. */
    public static long[] uint32Stream(long key, int n) {
        long[] out = new long[n];
        for (int i = 0; i < n; i++) out[i] = uint32(key, i);
        return out;
    }

    /** The step's mini-batch: a partial Fisher-Yates shuffle driven by the MINIBATCH_INDEX stream
     *  (r = j + ((u_j * (n - j)) >>> 32), Lemire's multiply-shift), the first batchSize positions. */
    public static int[] minibatchIndices(long seed, long step, int nTotal, int batchSize) {
        if (nTotal < 1) throw new IllegalArgumentException("nTotal must be >= 1, got " + nTotal);
        if (batchSize < 1 || batchSize > nTotal)
            throw new IllegalArgumentException("batchSize must be in [1, " + nTotal + "], got " + batchSize);
        long key = streamKey(seed, step, MINIBATCH_INDEX, 0);
        int[] perm = new int[nTotal];
        for (int i = 0; i < nTotal; i++) perm[i] = i;
        for (int j = 0; j < batchSize; j++) {
            int r = j + (int) ((uint32(key, j) * (long) (nTotal - j)) >>> 32);
            int t = perm[j];
            perm[j] = perm[r];
            perm[r] = t;
        }
        int[] out = new int[batchSize];
        System.arraycopy(perm, 0, out, 0, batchSize);
        return out;
    }
}
