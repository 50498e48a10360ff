package org.tflitefg.core;

/**
 * NEq's neuron velocity (Bragagnolo et al. 2022; tflite_fg/selection.py observe_velocity): each round,
 * phi = the cosine of every neuron's outputs on a fixed probe batch now and at the last round, and
 * v = (phi - phi_last) - mu * v_last. Sums run over the rows in row order, in double, as the Python
 * runtime's do, so the scores and the selection are the same bit for bit.
 */
final class Velocity {
    private final int[] channels;
    private final double mu;
    private double[][] outputs;  // last round's outputs per tensor, (rows, channels) row-major
    private double[] phi;
    private double[] velocity;
    private int rounds;

    Velocity(int[] channels, double mu) {
        this.channels = channels.clone();
        this.mu = mu;
    }

    /** Velocity needs three observations: two for phi, two phis for its change. */
    boolean ready() {
        return rounds >= 3;
    }

    int rounds() {
        return rounds;
    }

    /** One round: outputs[t] is tensor t's (batch, ..., channels) output, flat. */
    void observe(float[][] out) {
        if (out.length != channels.length)
            throw new IllegalArgumentException(out.length + " neuron outputs for " + channels.length + " trainable tensors");
        double[][] rows = new double[out.length][];
        for (int t = 0; t < out.length; t++) {
            if (out[t].length == 0 || out[t].length % channels[t] != 0)
                throw new IllegalArgumentException("neuron output " + t + " has " + out[t].length + " values, not a multiple of its "
                                                   + channels[t] + " channels");
            if (outputs != null && outputs[t].length != out[t].length)
                throw new IllegalArgumentException("neuron outputs changed shape between rounds (tensor " + t + ")");
            rows[t] = new double[out[t].length];
            for (int e = 0; e < out[t].length; e++) {
                if (!Float.isFinite(out[t][e])) throw new IllegalArgumentException("neuron outputs contain NaN or inf");
                rows[t][e] = out[t][e];
            }
        }
        if (outputs != null) {
            double[] now = cosine(rows, outputs);
            if (phi == null) {
                velocity = new double[now.length];
            } else {
                for (int i = 0; i < now.length; i++) velocity[i] = (now[i] - phi[i]) - mu * velocity[i];
            }
            phi = now;
        }
        outputs = rows;
        rounds++;
    }

    /** |v| / parameters of each neuron: the budget paper's score, highest first. */
    double[] scores(int[] neuronParams) {
        if (!ready()) throw new IllegalStateException("velocity needs 3 observed rounds, has " + rounds);
        double[] s = new double[velocity.length];
        for (int i = 0; i < s.length; i++) s[i] = Math.abs(velocity[i]) / neuronParams[i];
        return s;
    }

    /** Per neuron: cos(a, b) over the rows; two zero vectors are the same (1), one is orthogonal (0). */
    private double[] cosine(double[][] a, double[][] b) {
        int total = 0;
        for (int c : channels) total += c;
        double[] out = new double[total];
        for (int t = 0, offset = 0; t < a.length; offset += channels[t], t++) {
            int ch = channels[t];
            double[] dot = new double[ch], nx = new double[ch], ny = new double[ch];
            for (int e = 0; e < a[t].length; e++) {
                int c = e % ch;
                double x = a[t][e], y = b[t][e];
                dot[c] += x * y;
                nx[c] += x * x;
                ny[c] += y * y;
            }
            for (int c = 0; c < ch; c++) {
                double na = Math.sqrt(nx[c]), nb = Math.sqrt(ny[c]);
                double cos = na > 0 && nb > 0 ? dot[c] / (na * nb) : na == 0 && nb == 0 ? 1.0 : 0.0;
                out[offset + c] = Math.max(-1.0, Math.min(1.0, cos));
            }
        }
        return out;
    }
}
