package org.tflitefg.core;

import java.util.Arrays;

/**
 * The on-device loop over one labelled int8 data set: each step's mini-batch is
 * Rng.minibatchIndices(seed, step, n, batch) (the Python runtime's), its loss is the softmax
 * cross-entropy of the candidate kernels' logits, and SignSpsa takes the step.
 *
 * With `cacheFeatures` and a model split at its first trainable op, the frozen `prefix` runs once
 * for the whole data set and every pass runs `suffix` only (tflite_fg/objective.py's "dataset"
 * cache): the losses are bit-identical, and the step costs only the trainable layers. With a
 * Selector, only the selected neurons train, re-selected at each round start (tflite_fg/selective.py).
 * With a trainer built with the exact head (SignSpsa.Options.exactHead), each step also runs one
 * unperturbed pass that returns the logits and `head_in` of the same mini-batch
 * (objective.BatchLoss.head), from which the head's exact gradient is computed.
 */
public final class Training {
    private static final int CHUNK = 256;
    private final ForwardRunner runner;
    private final Metadata meta;
    private final SignSpsa trainer;
    private final long seed;
    private final int[] labels;
    private final boolean cached;
    private final byte[][] source;    // what a mini-batch is gathered from: the prefix outputs of every
    private final int[] width;        // example (cached), or the inputs; bytes per example of each
    private Selector selector;
    private byte[] probe;
    private int probeCount;
    private boolean selected;
    // the mini-batch buffers, reused while the batch size stays
    private byte[][] batchInputs;
    private int[] batchLabels;

    public Training(ForwardRunner runner, Metadata meta, SignSpsa trainer, long seed, byte[] x, int[] labels,
                    boolean cacheFeatures) {
        int d = meta.inputSize();
        if (labels.length == 0 || x.length != (long) labels.length * d)
            throw new IllegalArgumentException(x.length + " input bytes for " + labels.length + " labels of " + d
                                               + " values each: give at least one example, and one label per example");
        for (int y : labels)
            if (y < 0 || y >= meta.numClasses)
                throw new IllegalArgumentException("label " + y + " is outside 0.." + (meta.numClasses - 1));
        if (trainer.exactHead() && !runner.hasHeadInput()) throw new IllegalArgumentException(ExactHead.NO_HEAD_INPUT);
        this.runner = runner;
        this.meta = meta;
        this.trainer = trainer;
        this.seed = seed;
        this.labels = labels;
        cached = cacheFeatures && runner.hasPrefix();
        source = cached ? prefixAll(x) : new byte[][] {x};
        width = new int[source.length];
        for (int k = 0; k < source.length; k++) width[k] = source[k].length / labels.length;
    }

    /** The prefix outputs of every training example, run CHUNK examples at a time. */
    private byte[][] prefixAll(byte[] x) {
        int n = labels.length, d = meta.inputSize();
        byte[][] out = null;
        for (int s = 0; s < n; s += CHUNK) {
            int b = Math.min(CHUNK, n - s);
            byte[][] part = runner.prefix(Arrays.copyOfRange(x, s * d, (s + b) * d), b);
            if (out == null) {
                out = new byte[part.length][];
                for (int k = 0; k < part.length; k++) out[k] = new byte[part[k].length / b * n];
            }
            for (int k = 0; k < part.length; k++) System.arraycopy(part[k], 0, out[k], part[k].length / b * s, part[k].length);
        }
        return out;
    }

    public SignSpsa trainer() {
        return trainer;
    }

    /** True when the steps run `suffix` on cached prefix features. */
    public boolean cached() {
        return cached;
    }

    /** Train only the selector's neurons from now on. probe: the fixed batch of `probeCount` int8
     *  examples velocity watches through the `probe` signature (null for the other strategies). */
    public void select(Selector s, byte[] probe, int probeCount) {
        if (s.needsOutputs() && (probe == null || probeCount < 1 || probe.length != probeCount * meta.inputSize()))
            throw new IllegalArgumentException("velocity selection needs a probe batch of whole examples");
        if (s.needsOutputs() && !runner.hasProbe())
            throw new IllegalArgumentException("velocity selection needs the model's 'probe' signature: reconvert it with python tools/convert.py");
        selector = s;
        this.probe = probe;
        this.probeCount = probeCount;
        selected = false;
    }

    /** One step; returns the mean of its 2m losses (and the exact head's pass). */
    public double step(int batchSize) {
        if (selector != null && (!selected || selector.due(trainer.step()))) {
            float[][] outputs = selector.needsOutputs() ? runner.neuronOutputs(probe, probeCount, trainer.engine()) : null;
            trainer.support(selector.layout().support(selector.select(trainer.step(), outputs)));
            selected = true;
        }
        int n = labels.length, b = Math.min(batchSize, n);
        int[] idx = Rng.minibatchIndices(seed, trainer.step(), n, b);
        if (batchLabels == null || batchLabels.length != b) {
            batchInputs = new byte[width.length][];
            for (int k = 0; k < width.length; k++) batchInputs[k] = new byte[b * width[k]];
            batchLabels = new int[b];
        }
        byte[][] in = batchInputs;
        int[] yb = batchLabels;
        for (int i = 0; i < b; i++) {
            for (int k = 0; k < width.length; k++) System.arraycopy(source[k], idx[i] * width[k], in[k], i * width[k], width[k]);
            yb[i] = labels[idx[i]];
        }
        SignSpsa.Loss loss = kernels -> loss(cached ? runner.suffix(in, b, kernels) : runner.forward(in[0], b, kernels), yb);
        if (!trainer.exactHead()) return trainer.step(loss);
        return trainer.step(loss, kernels -> {
            byte[][] out = cached ? runner.suffixWithHead(in, b, kernels) : runner.forwardWithHead(in[0], b, kernels);
            return new ExactHead.Batch(out[0], out[1], yb, loss(out[0], yb));
        });
    }

    private double loss(byte[] logits, int[] yb) {
        return Losses.softmaxCrossEntropy(logits, yb, meta.numClasses, meta.outputScale, meta.outputZeroPoint);
    }

    /** Accuracy of the current engine kernels on (x, labels), in chunks of `chunk` examples. */
    public double accuracy(byte[] x, int[] labels, int chunk) {
        byte[][] kernels = trainer.engine();
        int d = meta.inputSize(), hits = 0;
        for (int s = 0; s < labels.length; s += chunk) {
            int b = Math.min(chunk, labels.length - s);
            hits += Losses.correct(runner.forward(Arrays.copyOfRange(x, s * d, (s + b) * d), b, kernels),
                                   Arrays.copyOfRange(labels, s, s + b), meta.numClasses);
        }
        return (double) hits / labels.length;
    }
}
