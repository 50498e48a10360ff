package org.tflitefg.core;

/**
 * The on-device loop over one labelled int8 data set: each step's mini-batch is
 * Rng.minibatchIndices(seed, step, n, batch) (the Python runtime's), its loss is the softmax
 * cross-entropy of the candidate kernels' logits, and SignSpsa takes the step.
 *
 * With `cacheFeatures` and a model split at its first trainable op, the frozen `prefix` runs once
 * for the whole data set and every pass runs `suffix` only (tflite_fg/objective.py's "dataset"
 * cache): the losses are bit-identical, and the step costs only the trainable layers. With a
 * Selector, only the selected neurons train, re-selected at each round start (tflite_fg/selective.py).
 */
public final class Training {
    private static final int CHUNK = 256;
    private final ForwardRunner runner;
    private final Metadata meta;
    private final SignSpsa trainer;
    private final long seed;
    private final byte[] x;
    private final int[] labels;
    private final byte[][] features;  // prefix outputs of every example, or null: forward on the inputs
    private final int[] featureBytes; // per example, per cut tensor
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
        this.runner = runner;
        this.meta = meta;
        this.trainer = trainer;
        this.seed = seed;
        this.x = x;
        this.labels = labels;
        if (cacheFeatures && runner.hasPrefix()) {
            features = prefixAll();
            featureBytes = new int[features.length];
            for (int k = 0; k < features.length; k++) featureBytes[k] = features[k].length / labels.length;
        } else {
            features = null;
            featureBytes = null;
        }
    }

    /** The prefix outputs of every training example, run CHUNK examples at a time. */
    private byte[][] prefixAll() {
        int n = labels.length, d = meta.inputSize();
        byte[][] out = null;
        for (int s = 0; s < n; s += CHUNK) {
            int b = Math.min(CHUNK, n - s);
            byte[] xb = new byte[b * d];
            System.arraycopy(x, s * d, xb, 0, b * d);
            byte[][] part = runner.prefix(xb, b);
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
        return features != null;
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

    /** One step; returns the mean of its 2m losses. */
    public double step(int batchSize) {
        if (selector != null && (!selected || selector.due(trainer.step()))) {
            float[][] outputs = selector.needsOutputs() ? runner.neuronOutputs(probe, probeCount, trainer.engine()) : null;
            trainer.support(selector.layout().support(selector.select(trainer.step(), outputs)));
            selected = true;
        }
        int n = labels.length, b = Math.min(batchSize, n);
        int[] idx = Rng.minibatchIndices(seed, trainer.step(), n, b);
        int[] width = features != null ? featureBytes : new int[] {meta.inputSize()};
        byte[][] source = features != null ? features : new byte[][] {x};
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
        return trainer.step(kernels -> loss(features != null ? runner.suffix(in, b, kernels) : runner.forward(in[0], b, kernels), yb));
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
            byte[] xb = new byte[b * d];
            System.arraycopy(x, s * d, xb, 0, b * d);
            int[] yb = new int[b];
            System.arraycopy(labels, s, yb, 0, b);
            hits += Losses.correct(runner.forward(xb, b, kernels), yb, meta.numClasses);
        }
        return (double) hits / labels.length;
    }
}
