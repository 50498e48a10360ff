package org.tflitefg.core;

/**
 * The plain QZO-FF recipe of tflite_fg (build.py defaults: Gaussian Sign-m-SPSA, anchored
 * arithmetic, round-to-nearest, constant lr), bit for bit with the Python runtime:
 *
 * <pre>
 * for i in 0..m-1:  z_i = gaussianQ8(stream(seed, step, i, tensor))
 *                   delta = roundShift(eps_master * z_i, Z_MULTIPLIER, Z_SHIFT)
 *                   w+- = sat(w +- delta);  L+- = loss(engine(w+-))
 *                   S += sign(L+ - L-) * z_i                       (int32)
 * g = (float) S * (float) (Z_SCALE / m)                              (Sign-m-SPSA, one float step)
 * w = sat(w + rint((float) -(lr * lsb) * g))                         (SGD on the master grid)
 * </pre>
 *
 * The master copy is int8 (w8) or int16 with 256 units per int8 LSB (w16, the paper's 16w8a);
 * the engine gets sat8(roundShift(w, 1, 8)) for w16. eps and lr are in int8 LSBs.
 * Options: Rademacher/Binomial z, momentum-guided sampling, kernel-wise normalization, a sparse-update
 * mask (z is 0 outside it, Masks) and stochastic update rounding (floor(x) + [frac(x) * 2^32 > u], u
 * from stream(seed, step, UPDATE_ROUND_INDEX, tensor)): tflite_fg/samplers.py and updates.py.
 */
public final class SignSpsa {
    /** What tflite_fg.config.TrainConfig can add to the plain recipe (build.py's composition order:
     *  masked(kernel_normalized(momentum_guided(distribution)))). */
    public static final class Options {
        String distribution = "gaussian";   // or "rademacher", "binomial" (n = 4)
        boolean[][] mask;                   // sparse update: z = 0 outside (Masks)
        boolean stochasticRounding;
        double momentumAlpha;               // > 0: momentum-guided sampling
        double momentumBetaMin = 0.5;
        int momentumDecaySteps = 1000;
        boolean kernelNorm;
        boolean paper;                      // QZO-FF Eq. 6-8 exactly (integer g_q and lr)
        boolean engineStochasticRounding;   // w16: the engine's int8 copy rounded stochastically
        double samRho;                      // > 0: sharpness-aware ascent of rho * eps first
        Schedule schedule;                  // null: constant
        boolean spsa;                       // the magnitude estimator (L+ - L-) / (2 eps) z, for comparison
        boolean[][] support;                // neuron selection: only these elements' z are drawn (selection.py)

        /** A learning-rate schedule (tflite_fg/schedules.py): "cosine" (to finalFraction over totalSteps)
         *  or "step" (factor every `every` steps). */
        public static final class Schedule {
            final String kind;
            final long totalSteps;
            final double finalFraction;
            final long every;
            final double factor;

            public Schedule(String kind, long totalSteps, double finalFraction, long every, double factor) {
                if (!kind.equals("cosine") && !kind.equals("step"))
                    throw new IllegalArgumentException("schedule must be cosine or step, got " + kind);
                this.kind = kind;
                this.totalSteps = totalSteps;
                this.finalFraction = finalFraction;
                this.every = every;
                this.factor = factor;
            }
        }

        public Options spsa(boolean on) {
            spsa = on;
            return this;
        }

        /** A neuron selection's elements: each tensor draws only as many numbers as it has selected
         *  elements and puts draw j on the j-th selected element (row-major); the rest stay 0. */
        public Options support(boolean[][] s) {
            support = s;
            return this;
        }

        public Options paperArithmetic(boolean on) {
            paper = on;
            return this;
        }

        public Options engineStochasticRounding(boolean on) {
            engineStochasticRounding = on;
            return this;
        }

        public Options sam(double rho) {
            if (!(rho >= 0 && rho <= 16)) throw new IllegalArgumentException("sam_rho must be in [0, 16], got " + rho);
            samRho = rho;
            return this;
        }

        public Options schedule(Schedule s) {
            schedule = s;
            return this;
        }

        public Options distribution(String d) {
            if (!d.equals("gaussian") && !d.equals("rademacher") && !d.equals("binomial"))
                throw new IllegalArgumentException("distribution must be gaussian, rademacher or binomial, got " + d);
            distribution = d;
            return this;
        }

        public Options mask(boolean[][] m) {
            mask = m;
            return this;
        }

        public Options stochasticRounding(boolean on) {
            stochasticRounding = on;
            return this;
        }

        public Options momentum(double alpha, double betaMin, int decaySteps) {
            if (!(alpha > 0 && alpha < 1 && betaMin >= 0 && betaMin <= 1 && decaySteps >= 0))
                throw new IllegalArgumentException("momentum needs 0 < alpha < 1, 0 <= beta_min <= 1, decay_steps >= 0");
            momentumAlpha = alpha;
            momentumBetaMin = betaMin;
            momentumDecaySteps = decaySteps;
            return this;
        }

        public Options kernelNorm(boolean on) {
            kernelNorm = on;
            return this;
        }
    }

    /** The loss of the int8 kernels the engine runs (one forward pass). The kernels are the trainer's
     *  own buffer, valid during the call only: copy them to keep them. */
    public interface Loss {
        double of(byte[][] engineKernels);
    }

    private static final float ROUND_LIMIT = 1 << 24;

    private final long seed;
    private final int m;
    private final int bits;
    private final int shift;
    private final long epsMaster;
    private final float[] negLr;
    private final int[][] master;
    private final Options opt;
    private final boolean paper;
    private final long lsb;
    private final double[] lrLsb;
    private final long samEpsMaster;
    private final double epsLsb;
    private final int[][] history;  // momentum: the previous step's gradient as int8 z_q
    private final int distribution; // 0 gaussian, 1 rademacher, 2 binomial (decided once, not per element)
    // Work buffers of one step, allocated once: the training step allocates nothing.
    private final int[][] z;
    private final int[][] z2;
    private final int[][] candidate;
    private final int[][] neighbour;
    private final int[][] sums;
    private final double[][] acc;
    private final byte[][] engineKernels;
    private double lossSum;
    private long stepsSeen;
    private long step;
    private long forwardPasses;

    /** The plain recipe: Gaussian z, no mask, round-to-nearest updates. */
    public SignSpsa(long seed, int m, double epsLsb, double[] lrLsb, int bits, byte[][] initial) {
        this(seed, m, epsLsb, lrLsb, bits, initial, new Options());
    }

    /**
     * @param bits 8 (w8) or 16 (w16)
     * @param lrLsb learning rate per tensor, in int8 LSBs per unit of z
     */
    public SignSpsa(long seed, int m, double epsLsb, double[] lrLsb, int bits, byte[][] initial, Options options) {
        boolean[][] mask = options.mask;
        if (mask != null) requireLike(mask, initial, "mask");
        if (options.support != null) requireLike(options.support, initial, "support");
        this.opt = options;
        this.paper = options.paper;
        this.lrLsb = lrLsb.clone();
        if (options.spsa && (options.paper || options.momentumAlpha > 0))
            throw new IllegalArgumentException("the SPSA estimator goes with neither the paper's arithmetic nor momentum");
        if (options.engineStochasticRounding && bits != 16)
            throw new IllegalArgumentException("stochastic engine rounding rounds the w16 master copy; bits is " + bits);
        this.history = new int[initial.length][];
        for (int t = 0; t < initial.length; t++) history[t] = new int[initial[t].length];
        if (bits != 8 && bits != 16) throw new IllegalArgumentException("bits must be 8 or 16, got " + bits);
        if (m < 1) throw new IllegalArgumentException("m must be >= 1, got " + m);
        if (lrLsb.length != initial.length)
            throw new IllegalArgumentException(lrLsb.length + " learning rates for " + initial.length + " tensors");
        this.seed = seed;
        this.m = m;
        this.bits = bits;
        this.shift = bits - 8;
        this.lsb = 1L << shift;
        double eps = epsLsb * lsb;
        if (!(eps >= 1) || eps != Math.rint(eps))
            throw new IllegalArgumentException("eps_lsb=" + epsLsb + " is not a whole number >= 1 of master LSBs (1/" + lsb + ")");
        this.epsMaster = (long) eps;
        this.epsLsb = epsLsb;
        double samEps = epsLsb * options.samRho * lsb;
        if (options.samRho > 0 && (samEps < 1 || samEps != Math.rint(samEps)))
            throw new IllegalArgumentException("sam_rho * eps_lsb must be a whole number of master LSBs");
        this.samEpsMaster = (long) samEps;
        this.negLr = new float[lrLsb.length];
        for (int t = 0; t < lrLsb.length; t++) {
            if (!(lrLsb[t] > 0) || Double.isInfinite(lrLsb[t])) throw new IllegalArgumentException("lr must be finite and > 0");
            negLr[t] = (float) -(lrLsb[t] * lsb);
        }
        this.master = new int[initial.length][];
        for (int t = 0; t < initial.length; t++) {
            master[t] = new int[initial[t].length];
            for (int e = 0; e < initial[t].length; e++) master[t][e] = (int) Quant.saturate((long) initial[t][e] << shift, bits);
        }
        this.distribution = switch (options.distribution) {
            case "rademacher" -> 1;
            case "binomial" -> 2;
            default -> 0;
        };
        z = like(master);
        z2 = like(master);
        candidate = like(master);
        neighbour = like(master);
        sums = like(master);
        acc = new double[master.length][];
        engineKernels = new byte[master.length][];
        for (int t = 0; t < master.length; t++) {
            acc[t] = new double[master[t].length];
            engineKernels[t] = new byte[master[t].length];
        }
    }

    private static int[][] like(int[][] w) {
        int[][] out = new int[w.length][];
        for (int t = 0; t < w.length; t++) out[t] = new int[w[t].length];
        return out;
    }

    public long step() {
        return step;
    }

    /** A new neuron selection from the next step on (Selector's rounds; tflite_fg/selective.py rebuilds
     *  the estimator with the new support and keeps the state): only these elements are drawn and move. */
    public void support(boolean[][] s) {
        requireLike(s, engineKernels, "support");
        opt.support = s;
    }

    /** An element mask (mask or support) must have one entry per element of every tensor. */
    private static void requireLike(boolean[][] m, byte[][] tensors, String what) {
        if (m.length != tensors.length) throw new IllegalArgumentException(m.length + " " + what + "s for " + tensors.length + " tensors");
        for (int t = 0; t < m.length; t++)
            if (m[t].length != tensors[t].length) throw new IllegalArgumentException(what + " " + t + " does not match its tensor");
    }

    public long forwardPasses() {
        return forwardPasses;
    }

    /** Continue from a saved state (Checkpoint): master weights, step and forward passes. */
    public void restore(int[][] weights, long atStep, long passes) {
        if (weights.length != master.length) throw new IllegalArgumentException(weights.length + " tensors for " + master.length);
        for (int t = 0; t < master.length; t++) {
            if (weights[t].length != master[t].length)
                throw new IllegalArgumentException("tensor " + t + " has " + weights[t].length + " values, expected " + master[t].length);
            for (int v : weights[t])
                if (v != Quant.saturate(v, bits)) throw new IllegalArgumentException("value " + v + " outside the w" + bits + " range");
        }
        for (int t = 0; t < master.length; t++) System.arraycopy(weights[t], 0, master[t], 0, master[t].length);
        step = atStep;
        forwardPasses = passes;
    }

    /** A copy of the master weights (int8 or int16 values). */
    public int[][] master() {
        int[][] out = new int[master.length][];
        for (int t = 0; t < master.length; t++) out[t] = master[t].clone();
        return out;
    }

    /** The int8 kernels the engine runs for the current weights. */
    public byte[][] engine() {
        byte[][] out = new byte[master.length][];
        for (int t = 0; t < master.length; t++) out[t] = new byte[master[t].length];
        return toEngine(master, false, out);
    }

    /** sha256 over the engine kernels in order (tflite_fg.objective.weights_sha256): equal runs, equal hashes. */
    public String engineSha256() {
        java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
        for (byte[] k : engine()) all.write(k, 0, k.length);
        return Metadata.sha256(all.toByteArray());
    }

    /** The int8 kernels of master weights: w16 rounds to nearest, or stochastically with the step's
     *  draws of stream(seed, step, ENGINE_ROUND_INDEX, tensor) (shared by every probe of the step). */
    private byte[][] toEngine(int[][] w, boolean stochastic, byte[][] out) {
        for (int t = 0; t < w.length; t++) {
            long key = stochastic ? Rng.streamKey(seed, step, Rng.ENGINE_ROUND_INDEX, t) : 0;
            for (int e = 0; e < w[t].length; e++) {
                long q = shift == 0 ? w[t][e]
                        : stochastic ? ((long) w[t][e] + (Rng.uint32(key, e) >>> (32 - shift))) >> shift
                        : Quant.roundShift(w[t][e], 1, shift);
                out[t][e] = (byte) Quant.saturate(q, 8);
            }
        }
        return out;
    }

    /** One step: 2m loss evaluations (+2 with SAM), the update applied. Returns the mean of the losses. */
    public double step(Loss loss) {
        lossSum = 0;
        int[][] anchor = master;
        if (opt.samRho > 0) {  // sharpness-aware: move to the uphill neighbour along z_a first
            sample(Rng.ASCENT_INDEX, anchor);
            double lp = evaluate(loss, perturb(anchor, epsMaster, 1, candidate));
            double lm = evaluate(loss, perturb(anchor, epsMaster, -1, candidate));
            anchor = perturb(anchor, samEpsMaster, lp >= lm ? 1 : -1, neighbour);
        }
        for (int t = 0; t < master.length; t++) {
            java.util.Arrays.fill(sums[t], 0);
            java.util.Arrays.fill(acc[t], 0.0);  // SPSA: sum of (L+ - L-) / (2 eps) * z * Dz
        }
        for (int i = 0; i < m; i++) {
            sample(i, anchor);
            double lp = evaluate(loss, perturb(anchor, epsMaster, 1, candidate));
            double lm = evaluate(loss, perturb(anchor, epsMaster, -1, candidate));
            double diff = lp - lm;  // numpy's sign(L+ - L-): 0 when equal
            if (opt.spsa) {
                double coef = diff / (2.0 * epsLsb);
                for (int t = 0; t < master.length; t++)
                    for (int e = 0; e < acc[t].length; e++) acc[t][e] += coef * (z[t][e] * Quant.Z_SCALE);
                continue;
            }
            int sign = diff > 0 ? 1 : (diff < 0 ? -1 : 0);
            if (sign != 0)
                for (int t = 0; t < master.length; t++)
                    for (int e = 0; e < sums[t].length; e++) sums[t][e] += sign * z[t][e];
        }
        double factor = schedule(step);
        for (int t = 0; t < master.length; t++) {
            long roundKey = Rng.streamKey(seed, step, Rng.UPDATE_ROUND_INDEX, t);
            if (paper) updatePaper(t, sums[t], factor, roundKey);
            else updateAnchored(t, sums[t], acc[t], (float) factor, roundKey);
        }
        stepsSeen++;
        step++;
        return lossSum / (2 * m + (opt.samRho > 0 ? 2 : 0));
    }

    private double evaluate(Loss loss, int[][] weights) {
        double v = finite(loss.of(toEngine(weights, opt.engineStochasticRounding, engineKernels)));
        forwardPasses++;
        lossSum += v;
        return v;
    }

    /** w +- round(eps z) (anchored), or QZO-FF Eq. 6: sat(((w 1_q +- eps z) M) >> k) (paper), into out. */
    private int[][] perturb(int[][] w, long eps, int sign, int[][] out) {
        for (int t = 0; t < w.length; t++) {
            for (int e = 0; e < w[t].length; e++) {
                long v;
                if (paper) {
                    long acc = (long) w[t][e] * Quant.ONE_Q + sign * eps * z[t][e];
                    if (Math.abs(acc) > Integer.MAX_VALUE)
                        throw new ArithmeticException("QZO-FF accumulator exceeds 32 bits; lower eps_q");
                    v = Quant.roundShift(acc, Quant.Z_MULTIPLIER, Quant.Z_SHIFT);
                } else {
                    v = w[t][e] + sign * Quant.roundShift(eps * z[t][e], Quant.Z_MULTIPLIER, Quant.Z_SHIFT);
                }
                out[t][e] = (int) Quant.saturate(v, bits);
            }
        }
        return out;
    }

    /** g = (float) S * (float) (Dz / m); u = rint or stochastic(float(sched) * ((float) -lr * g)). */
    private void updateAnchored(int t, int[] sums, double[] acc, float factor, long roundKey) {
        float scale = (float) (Quant.Z_SCALE / m);
        for (int e = 0; e < sums.length; e++) {
            float g = opt.spsa ? (float) (acc[e] / m) : (float) sums[e] * scale;
            // momentum's history: g on the scale Dz, rounded half-even, clipped to int8
            history[t][e] = (int) Math.max(-127, Math.min(127, Math.rint((double) g / Quant.Z_SCALE)));
            float u = negLr[t] * g;
            if (opt.schedule != null) u = factor * u;
            u = Math.max(-ROUND_LIMIT, Math.min(ROUND_LIMIT, u));
            long update;
            if (opt.stochasticRounding) {
                float floor = (float) Math.floor(u);
                update = (long) floor + ((double) (u - floor) * 4294967296.0 > (double) Rng.uint32(roundKey, e) ? 1 : 0);
            } else {
                update = (long) Math.rint(u);
            }
            master[t][e] = (int) Quant.saturate(master[t][e] + update, bits);
        }
    }

    /** QZO-FF Eq. 7-8: g_q = round(S / m) half away from zero; u = (-g_q M + r) >> 24 with
     *  M = rint(lr * lsb * sched * Dz * 2^24), r = 2^23 or the top 24 bits of a draw. */
    private void updatePaper(int t, int[] sums, double factor, long roundKey) {
        long multiplier = (long) Math.rint(lrLsb[t] * lsb * factor * Quant.Z_SCALE * (1L << 24));
        for (int e = 0; e < sums.length; e++) {
            long s = Math.max(-127L * m, Math.min(127L * m, sums[e]));
            long q = (2 * Math.abs(s) + m) / (2L * m);
            long gq = Long.signum(s) * q;
            history[t][e] = (int) gq;
            long update;
            if (multiplier == 0 && !opt.stochasticRounding) update = 0;
            else if (opt.stochasticRounding) update = (-gq * multiplier + (Rng.uint32(roundKey, e) >>> 8)) >> 24;
            else update = Quant.roundShift(-gq, multiplier, 24);
            master[t][e] = (int) Quant.saturate(master[t][e] + update, bits);
        }
    }

    private double schedule(long count) {
        Options.Schedule sc = opt.schedule;
        if (sc == null) return 1.0;
        if (sc.kind.equals("step")) return Math.pow(sc.factor, (double) (count / sc.every));
        double x = Math.min(count, sc.totalSteps) / (double) sc.totalSteps;
        return sc.finalFraction + (1.0 - sc.finalFraction) * 0.5 * (1.0 + StrictMath.cos(Math.PI * x));
    }

    /** z (the buffer) of perturbation `index` at this step around `params` (tflite_fg/samplers.py,
     *  build.py's order). */
    private void sample(long index, int[][] params) {
        draw(index, z);
        if (opt.momentumAlpha > 0) {
            double beta = opt.momentumDecaySteps <= 0 ? opt.momentumBetaMin
                    : 1.0 - (1.0 - opt.momentumBetaMin) * Math.min(stepsSeen, opt.momentumDecaySteps) / opt.momentumDecaySteps;
            long c1 = q15(beta * Math.sqrt(opt.momentumAlpha)), c2 = q15(1.0 - beta);
            long c3 = q15((1.0 - beta) * Math.sqrt(1.0 - opt.momentumAlpha));
            boolean second = c2 != 0 || c3 != 0;
            if (second) draw(index + Rng.SECOND_DRAW, z2);
            for (int t = 0; t < z.length; t++)
                for (int e = 0; e < z[t].length; e++) {
                    long v = !second ? Quant.roundShift(z[t][e] * c1, 1, 15)
                            : Quant.roundShift(z[t][e] * c1 + history[t][e] * c2 + z2[t][e] * c3, 1, 15);
                    z[t][e] = (int) Math.max(-32767, Math.min(32767, v));
                }
        }
        if (opt.kernelNorm) {
            for (int t = 0; t < z.length; t++) {
                long zSq = 0, wSq = 0;  // |w| <= 32767: no overflow below 8e9 elements
                for (int e = 0; e < z[t].length; e++) {
                    zSq += (long) z[t][e] * z[t][e];
                    wSq += (long) params[t][e] * params[t][e];
                }
                long factor = kernelNormFactorQ16(wSq, zSq, 1L << shift);
                for (int e = 0; e < z[t].length; e++) z[t][e] = (int) Quant.roundShift(z[t][e] * factor, 1, 16);
            }
        }
        if (opt.mask != null)
            for (int t = 0; t < z.length; t++)
                for (int e = 0; e < z[t].length; e++) if (!opt.mask[t][e]) z[t][e] = 0;
        if (opt.support != null && opt.momentumAlpha > 0)  // an earlier selection's history stays out
            for (int t = 0; t < z.length; t++)
                for (int e = 0; e < z[t].length; e++) if (!opt.support[t][e]) z[t][e] = 0;
    }

    /** The base distribution's draws of stream(seed, step, index, tensor). */
    private void draw(long index, int[][] out) {
        for (int t = 0; t < master.length; t++) {
            long key = Rng.streamKey(seed, step, index, t);
            long j = 0;  // with a support: the next unused draw of this tensor's stream
            for (int e = 0; e < out[t].length; e++) {
                if (opt.support != null && !opt.support[t][e]) {
                    out[t][e] = 0;
                    continue;
                }
                long u = Rng.uint32(key, opt.support != null ? j++ : e);
                out[t][e] = distribution == 1 ? Quant.rademacherQ8(u)
                        : distribution == 2 ? BINOMIAL4[Long.bitCount(u >>> 28)] : Quant.gaussianQ8(u);
            }
        }
    }

    /** Binomial(4, 1/2) centred and scaled to unit variance, quantized: round((k - 2) / Dz), k = 0..4. */
    private static final int[] BINOMIAL4 = {
        (int) Math.rint(-2 / Quant.Z_SCALE), (int) Math.rint(-1 / Quant.Z_SCALE), 0,
        (int) Math.rint(1 / Quant.Z_SCALE), (int) Math.rint(2 / Quant.Z_SCALE)};

    private static long q15(double x) {
        return (long) Math.rint(x * 32768);  // half-even, as Python's round()
    }

    /** F = ||w|| / (||z|| Dz 32) in Q16 with ||w|| in int8 LSBs: isqrt(w2 * 2^32 * 127^2 / (lsb^2 z2 112^2)). */
    static long kernelNormFactorQ16(long wSq, long zSq, long lsb) {
        if (zSq <= 0) return 0;
        java.math.BigInteger num = java.math.BigInteger.valueOf(wSq).shiftLeft(32).multiply(java.math.BigInteger.valueOf(127L * 127L));
        java.math.BigInteger den = java.math.BigInteger.valueOf(lsb * lsb).multiply(java.math.BigInteger.valueOf(zSq))
                .multiply(java.math.BigInteger.valueOf(112L * 112L));
        return num.divide(den).sqrt().longValueExact();
    }

    private static double finite(double v) {
        if (Double.isNaN(v) || Double.isInfinite(v))
            throw new IllegalArgumentException("loss is " + v + "; the sign of a loss difference needs finite losses");
        return v;
    }
}
