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
 * With the exact head (build.py's exact_head(...)), the last tensor is never perturbed: after the
 * probes, one unperturbed pass gives its gradient (ExactHead), which replaces its (zero) estimate.
 * With grad_average, g is first replaced by the running average m = decay m + (1 - decay) g
 * (updates.average_gradients, float32, the same order of operations).
 * With block-coordinate probes, probe i keeps only the z of one tensor, the ((step + i) mod n)-th of
 * the n tensors the sampler may draw (samplers.block_coordinate), and zeroes the others.
 */
public final class SignSpsa {
    /** What tflite_fg.config.TrainConfig can add to the plain recipe (build.py's composition order:
     *  block_coordinate(masked(kernel_normalized(momentum_guided(distribution))))). */
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
        ExactHead.Quant exactHead;          // non-null: the last tensor trains by its exact gradient
        double gradAverage;                 // > 0: exponential average of the gradient estimates
        boolean blockCoordinate;            // each probe perturbs one tensor, cycling
        boolean headAdam;                   // the exact head's optimizer is Adam (its lr: int8 LSBs per step)

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

        /** Train the last (dense) tensor with its exact cross-entropy gradient from one extra pass
         *  per step (ExactHead, tflite_fg/exact_head.py); Sign-m-SPSA perturbs only the others, and a
         *  head-only model runs no probes. Its learning rate is a float SGD rate (tools/train.py --head_lr). */
        public Options exactHead(ExactHead.Quant quant) {
            exactHead = quant;
            return this;
        }

        /** The exact head trains by Adam (updates.scale_by_adam on the head, TrainConfig.head_optimizer
         *  "adam"): its learning rate is then a step in int8 LSBs, and grad_average averages the body only. */
        public Options headAdam(boolean on) {
            headAdam = on;
            return this;
        }

        /** m = decay m + (1 - decay) g replaces g before the update (0 = off; TrainConfig.grad_average). */
        public Options gradAverage(double decay) {
            if (!(decay >= 0 && decay <= 0.999))
                throw new IllegalArgumentException("grad_average must be in [0, 0.999] (0 = off), got " + decay);
            gradAverage = decay;
            return this;
        }

        /** Each probe perturbs one tensor: probe `index` at `step` the ((step + index) mod n)-th of the n
         *  tensors with support (all without one; never the exact head), the others' z = 0
         *  (TrainConfig.block_coordinate). */
        public Options blockCoordinate(boolean on) {
            blockCoordinate = on;
            return this;
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

    /** The exact head's unperturbed pass on the engine kernels of the master weights: logits, head
     *  input, labels and loss of the step's mini-batch (the kernels are valid during the call only). */
    public interface HeadPass {
        ExactHead.Batch of(byte[][] engineKernels);
    }

    /** Everything a resumed run needs besides the options and model (Checkpoint writes it). */
    public static final class State {
        public final long step;
        public final long forwardPasses;
        public final long stepsSeen;        // momentum's beta schedule counts the steps it observed
        public final int[][] master;
        public final int[][] history;       // momentum: the last gradient as z_q
        public final float[][] average;     // grad_average's running average; null without it
        public final float[] adam;          // the head's Adam state: mu, nu (head size each), b1^t, b2^t; or null

        public State(long step, long forwardPasses, long stepsSeen, int[][] master, int[][] history, float[][] average,
                     float[] adam) {
            this.step = step;
            this.forwardPasses = forwardPasses;
            this.stepsSeen = stepsSeen;
            this.master = master;
            this.history = history;
            this.average = average;
            this.adam = adam;
        }
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
    private final ExactHead head;   // null: every tensor by the zeroth-order estimate
    private boolean[][] samplerSupport;  // what the sampler draws: the selection, less the head with the exact head
    private int[] blockTensors;     // block-coordinate probes cycle over these: the tensors with support
    private boolean[] headMask;     // the exact head's gradient is kept only here (mask and selection); null: all
    private final float keep;       // grad_average: float32(decay) and float32(1 - decay)
    private final float take;
    private final float[][] average;  // null without grad_average
    // Work buffers of one step, allocated once: the training step allocates nothing.
    private final int[][] z;
    private final int[][] z2;
    private final int[][] candidate;
    private final int[][] neighbour;
    private final int[][] sums;
    private final double[][] acc;
    private final float[][] grad;   // the step's gradient: estimate, exact head, average
    private final byte[][] engineKernels;
    private double lossSum;
    private long stepsSeen;
    private long step;
    private long forwardPasses;
    private final float[] adam;  // the Adam head's state (State.adam's layout), or null

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
        if (options.headAdam && options.exactHead == null)
            throw new IllegalArgumentException("headAdam is the exact head's optimizer: it needs exactHead");
        if (options.paper && (options.exactHead != null || options.gradAverage > 0))
            throw new IllegalArgumentException("the exact head and grad_average need the anchored arithmetic: the paper's keeps an 8-bit integer g_q");
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
        grad = new float[master.length][];
        engineKernels = new byte[master.length][];
        for (int t = 0; t < master.length; t++) {
            acc[t] = new double[master[t].length];
            grad[t] = new float[master[t].length];
            engineKernels[t] = new byte[master[t].length];
        }
        head = options.exactHead != null ? new ExactHead(options.exactHead) : null;
        keep = (float) options.gradAverage;
        take = (float) (1.0 - options.gradAverage);
        average = options.gradAverage > 0 ? new float[master.length][] : null;
        if (average != null) for (int t = 0; t < master.length; t++) average[t] = new float[master[t].length];
        adam = options.headAdam ? new float[2 * master[master.length - 1].length + 2] : null;
        if (adam != null) adam[adam.length - 2] = adam[adam.length - 1] = 1f;
        resolveSupport();
    }

    /** The sampler's support (the selection) and the tensors block-coordinate probes cycle over: those
     *  with any supported element, all without a support (samplers.block_coordinate's `active`). */
    private void resolveSupport() {
        samplerSupport = opt.support;
        if (head != null) headSupport();
        blockTensors = java.util.stream.IntStream.range(0, master.length)
                .filter(t -> samplerSupport == null || any(samplerSupport[t])).toArray();
    }

    /** build.py's exact-head composition: the sampler's support is the selection (or everything)
     *  without the head, and the head's gradient is kept where the static mask and the selection allow. */
    private void headSupport() {
        int last = master.length - 1;
        samplerSupport = new boolean[master.length][];
        for (int t = 0; t < last; t++) {
            samplerSupport[t] = opt.support != null ? opt.support[t] : new boolean[master[t].length];
            if (opt.support == null) java.util.Arrays.fill(samplerSupport[t], true);
        }
        samplerSupport[last] = new boolean[master[last].length];  // all false: the head is never perturbed
        headMask = null;
        for (boolean[][] m : new boolean[][][] {opt.mask, opt.support}) {
            if (m == null) continue;
            if (headMask == null) headMask = m[last].clone();
            else for (int e = 0; e < headMask.length; e++) headMask[e] &= m[last][e];
        }
    }

    private static boolean any(boolean[] b) {
        for (boolean v : b) if (v) return true;
        return false;
    }

    /** True when the last tensor trains by its exact gradient (step needs a HeadPass). */
    public boolean exactHead() {
        return head != null;
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
        if (adam != null && step > 0)  // its moments would keep moving the head weights the new selection froze
            throw new IllegalStateException("the Adam head cannot be re-selected mid-run: use SGD (headAdam(false)) or a static selection");
        opt.support = s;
        resolveSupport();
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

    /** A copy of everything a resumed run needs (Checkpoint.save). */
    public State state() {
        return new State(step, forwardPasses, stepsSeen, master(), copy(history), average == null ? null : copy(average),
                adam == null ? null : adam.clone());
    }

    /** Continue from a saved state (Checkpoint.restore); the trainer must have the run's options. */
    public void restore(State s) {
        requireShapes(s.master, "weights");
        requireShapes(s.history, "momentum history");
        for (int[] w : s.master)
            for (int v : w)
                if (v != Quant.saturate(v, bits)) throw new IllegalArgumentException("value " + v + " outside the w" + bits + " range");
        if ((s.average == null) != (average == null))
            throw new IllegalArgumentException("the state was saved " + (s.average == null ? "without" : "with")
                    + " grad_average and this trainer is built " + (average == null ? "without" : "with") + " it: use the run's options");
        if (average != null) {
            if (s.average.length != average.length) throw new IllegalArgumentException(s.average.length + " averages for " + average.length + " tensors");
            for (int t = 0; t < average.length; t++) {
                if (s.average[t].length != average[t].length) throw new IllegalArgumentException("average " + t + " does not match its tensor");
                System.arraycopy(s.average[t], 0, average[t], 0, average[t].length);
            }
        }
        if ((s.adam == null) != (adam == null))
            throw new IllegalArgumentException("the state was saved " + (s.adam == null ? "without" : "with")
                    + " the Adam head and this trainer is built " + (adam == null ? "without" : "with") + " it: use the run's options");
        if (adam != null) {
            if (s.adam.length != adam.length) throw new IllegalArgumentException("the Adam state has " + s.adam.length + " values, expected " + adam.length);
            System.arraycopy(s.adam, 0, adam, 0, adam.length);
        }
        for (int t = 0; t < master.length; t++) {
            System.arraycopy(s.master[t], 0, master[t], 0, master[t].length);
            System.arraycopy(s.history[t], 0, history[t], 0, history[t].length);
        }
        step = s.step;
        forwardPasses = s.forwardPasses;
        stepsSeen = s.stepsSeen;
    }

    private void requireShapes(int[][] w, String what) {
        if (w.length != master.length) throw new IllegalArgumentException(w.length + " " + what + " tensors for " + master.length);
        for (int t = 0; t < master.length; t++)
            if (w[t].length != master[t].length)
                throw new IllegalArgumentException(what + " tensor " + t + " has " + w[t].length + " values, expected " + master[t].length);
    }

    private static int[][] copy(int[][] a) {
        int[][] out = new int[a.length][];
        for (int t = 0; t < a.length; t++) out[t] = a[t].clone();
        return out;
    }

    private static float[][] copy(float[][] a) {
        float[][] out = new float[a.length][];
        for (int t = 0; t < a.length; t++) out[t] = a[t].clone();
        return out;
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
        return step(loss, null);
    }

    /**
     * One step of build.py's composition: the probes (none for a head-only exact head), then with the
     * exact head one unperturbed pass `headPass` for the head's gradient, then grad_average and the
     * update. Returns the mean of the losses, the head pass's included (tflite_fg's log["loss"]).
     */
    public double step(Loss loss, HeadPass headPass) {
        if (head != null && headPass == null)
            throw new IllegalArgumentException("the exact head needs its pass: step(loss, headPass)");
        lossSum = 0;
        int evaluations = 0;
        for (int t = 0; t < master.length; t++) {
            java.util.Arrays.fill(sums[t], 0);
            java.util.Arrays.fill(acc[t], 0.0);  // SPSA: sum of (L+ - L-) / (2 eps) * z * Dz
        }
        if (head == null || master.length > 1) {  // exact_head(None, ...): a head-only model runs no probes
            probes(loss);
            evaluations = 2 * m + (opt.samRho > 0 ? 2 : 0);
        }
        double factor = schedule(step);
        if (paper) {
            for (int t = 0; t < master.length; t++)
                updatePaper(t, sums[t], factor, Rng.streamKey(seed, step, Rng.UPDATE_ROUND_INDEX, t));
        } else {
            for (int t = 0; t < master.length; t++) estimate(t, sums[t], acc[t]);
            if (head != null) {
                headGradient(headPass);
                evaluations++;
            }
            if (average != null) averageGradients(adam != null ? master.length - 1 : master.length);
            if (adam != null) adamHead();
            for (int t = 0; t < master.length; t++)
                updateAnchored(t, (float) factor, Rng.streamKey(seed, step, Rng.UPDATE_ROUND_INDEX, t));
        }
        stepsSeen++;
        step++;
        return lossSum / evaluations;
    }

    /** The 2m probes (+2 with SAM) into sums (Sign-m-SPSA) or acc (SPSA). */
    private void probes(Loss loss) {
        int[][] anchor = master;
        if (opt.samRho > 0) {  // sharpness-aware: move to the uphill neighbour along z_a first
            sample(Rng.ASCENT_INDEX, anchor);
            double lp = evaluate(loss, perturb(anchor, epsMaster, 1, candidate));
            double lm = evaluate(loss, perturb(anchor, epsMaster, -1, candidate));
            anchor = perturb(anchor, samEpsMaster, lp >= lm ? 1 : -1, neighbour);
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
    }

    /** The exact head's pass on the master weights' engine kernels (the step's engine rounding, as
     *  trainer.OnEngine), its gradient replacing the head's estimate where the head mask allows. */
    private void headGradient(HeadPass headPass) {
        ExactHead.Batch batch = headPass.of(toEngine(master, opt.engineStochasticRounding, engineKernels));
        forwardPasses++;
        lossSum += batch.loss();
        float[] g = head.gradient(batch);
        float[] out = grad[master.length - 1];
        if (g.length != out.length)
            throw new IllegalArgumentException("the head pass gives " + g.length + " gradient values for a head of " + out.length);
        for (int e = 0; e < out.length; e++) out[e] = headMask == null || headMask[e] ? g[e] : 0f;
    }

    /** updates.average_gradients over the first `tensors` tensors (all but the head when Adam trains
     *  it: updates.split_head): m = float(decay) * m + float(1 - decay) * g, in float32, and g = m. */
    private void averageGradients(int tensors) {
        for (int t = 0; t < tensors; t++)
            for (int e = 0; e < grad[t].length; e++) {
                average[t][e] = keep * average[t][e] + take * grad[t][e];
                grad[t][e] = average[t][e];
            }
    }

    private static final float ADAM_B1 = (float) 0.9, ADAM_B2 = (float) 0.999, ADAM_EPS = (float) 1e-7;  // numpy's float32(x)
    private static final float ADAM_T1 = (float) (1.0 - 0.9), ADAM_T2 = (float) (1.0 - 0.999);

    /** updates.scale_by_adam on the head's gradient, in float32 in the same order of operations:
     *  mu = b1 mu + (1 - b1) g, nu = b2 nu + (1 - b2) g^2, b^t carried as products,
     *  g = (mu / (1 - b1^t)) / (sqrt(nu / (1 - b2^t)) + eps). adam = [mu..., nu..., b1^t, b2^t]. */
    private void adamHead() {
        float[] g = grad[master.length - 1];
        int n = g.length;
        float p1 = adam[2 * n] * ADAM_B1, p2 = adam[2 * n + 1] * ADAM_B2;
        float c1 = 1f - p1, c2 = 1f - p2;
        for (int e = 0; e < n; e++) {
            float mu = ADAM_B1 * adam[e] + ADAM_T1 * g[e];
            float nu = ADAM_B2 * adam[n + e] + ADAM_T2 * (g[e] * g[e]);
            adam[e] = mu;
            adam[n + e] = nu;
            g[e] = (mu / c1) / ((float) Math.sqrt(nu / c2) + ADAM_EPS);
        }
        adam[2 * n] = p1;
        adam[2 * n + 1] = p2;
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

    /** The estimate g = (float) S * (float) (Dz / m) (SPSA: (float) (acc / m)) into grad[t]; momentum
     *  observes it here, before the exact head and the average (the sampler's observe(grads)). */
    private void estimate(int t, int[] sums, double[] acc) {
        float scale = (float) (Quant.Z_SCALE / m);
        for (int e = 0; e < sums.length; e++) {
            float g = opt.spsa ? (float) (acc[e] / m) : (float) sums[e] * scale;
            // momentum's history: g on the scale Dz, rounded half-even, clipped to int8
            history[t][e] = (int) Math.max(-127, Math.min(127, Math.rint((double) g / Quant.Z_SCALE)));
            grad[t][e] = g;
        }
    }

    /** u = rint or stochastic(float(sched) * ((float) -lr * g)) on the master grid. */
    private void updateAnchored(int t, float factor, long roundKey) {
        for (int e = 0; e < grad[t].length; e++) {
            float u = negLr[t] * grad[t][e];
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
        if (samplerSupport != null && opt.momentumAlpha > 0)  // an earlier selection's history stays out
            for (int t = 0; t < z.length; t++)
                for (int e = 0; e < z[t].length; e++) if (!samplerSupport[t][e]) z[t][e] = 0;
        if (opt.blockCoordinate) {
            // Python's (step + index) % n on unbounded integers: index is unsigned (SAM's ASCENT_INDEX is
            // 2^64 - 2), and momentum's second draw is inside, so this is the probe's own index.
            int n = blockTensors.length;
            int chosen = n == 0 ? -1
                    : blockTensors[(int) ((Long.remainderUnsigned(step, n) + Long.remainderUnsigned(index, n)) % n)];
            for (int t = 0; t < z.length; t++) if (t != chosen) java.util.Arrays.fill(z[t], 0);
        }
    }

    /** The base distribution's draws of stream(seed, step, index, tensor). */
    private void draw(long index, int[][] out) {
        for (int t = 0; t < master.length; t++) {
            long key = Rng.streamKey(seed, step, index, t);
            long j = 0;  // with a support: the next unused draw of this tensor's stream
            for (int e = 0; e < out[t].length; e++) {
                if (samplerSupport != null && !samplerSupport[t][e]) {
                    out[t][e] = 0;
                    continue;
                }
                long u = Rng.uint32(key, samplerSupport != null ? j++ : e);
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
