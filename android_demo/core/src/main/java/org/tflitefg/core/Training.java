package org.tflitefg.core;

/**
 * The on-device loop: each step's mini-batch is Rng.minibatchIndices(seed, step, n, batch) (the
 * Python runtime's), its loss is the softmax cross-entropy of `forward` on the candidate kernels,
 * and SignSpsa takes the step. Evaluation runs `forward` with the engine kernels.
 */
public final class Training {
    private final ForwardRunner runner;
    private final Metadata meta;
    private final SignSpsa trainer;
    private final long seed;
    private byte[] xb;
    private int[] yb;

    public Training(ForwardRunner runner, Metadata meta, SignSpsa trainer, long seed) {
        this.runner = runner;
        this.meta = meta;
        this.trainer = trainer;
        this.seed = seed;
    }

    public SignSpsa trainer() {
        return trainer;
    }

    /** One step on (x, labels); returns the mean of its 2m losses. */
    public double step(byte[] x, int[] labels, int batchSize) {
        int n = labels.length, d = meta.inputSize();
        int b = Math.min(batchSize, n);
        int[] idx = Rng.minibatchIndices(seed, trainer.step(), n, b);
        if (yb == null || yb.length != b) {  // the batch buffers, reused while the batch size stays
            xb = new byte[b * d];
            yb = new int[b];
        }
        byte[] xb = this.xb;
        int[] yb = this.yb;
        for (int i = 0; i < b; i++) {
            System.arraycopy(x, idx[i] * d, xb, i * d, d);
            yb[i] = labels[idx[i]];
        }
        return trainer.step(k -> Losses.softmaxCrossEntropy(runner.forward(xb, b, k), yb, meta.numClasses,
                                                              meta.outputScale, meta.outputZeroPoint));
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
