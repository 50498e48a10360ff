package org.tflitefg.core;

import java.util.Arrays;

/**
 * Neuron selection under a parameter budget (tflite_fg/selection.py): strategies rank the output
 * channels of the trainable tensors, and `fill` takes them in rank order while they fit. The
 * result, expanded by `support`, is what SignSpsa.Options.support trains. Static, random and
 * magnitude orders are here; NEq velocity is Velocity, and Selector runs the rounds.
 */
public final class Selection {
    private final int[] channels;
    private final int[] paramsPerChannel;
    private final int[] axes;
    private final int[][] shapes;

    /** Kernels of the given native shapes whose output channels lie along `axes` (Metadata: Conv2D and
     *  Dense 0, DepthwiseConv2D 3). */
    public Selection(int[][] shapes, int[] axes) {
        this.shapes = shapes;
        this.axes = axes;
        channels = new int[shapes.length];
        paramsPerChannel = new int[shapes.length];
        for (int t = 0; t < shapes.length; t++) {
            int size = 1;
            for (int d : shapes[t]) size *= d;
            channels[t] = shapes[t][axes[t]];
            paramsPerChannel[t] = size / channels[t];
        }
    }

    /** The output-channel axis of each kernel in TFLite's native layout (selection.TFLITE_CHANNEL_AXIS). */
    static int channelAxis(String op) {
        return switch (op) {
            case "Conv2D", "Dense" -> 0;
            case "DepthwiseConv2D" -> 3;
            default -> throw new IllegalArgumentException("neuron selection does not know the output-channel axis of " + op);
        };
    }

    /** The layout of a converted model's trainable kernels. */
    public static Selection forModel(Metadata meta) {
        int n = meta.trainable.size();
        int[][] shapes = new int[n][];
        int[] axes = new int[n];
        for (int t = 0; t < n; t++) {
            shapes[t] = meta.trainable.get(t).shape;
            axes[t] = channelAxis(meta.trainable.get(t).op);
        }
        return new Selection(shapes, axes);
    }

    int[] channels() {
        return channels.clone();
    }

    public int numNeurons() {
        return Arrays.stream(channels).sum();
    }

    public long totalParams() {
        long n = 0;
        for (int t = 0; t < channels.length; t++) n += (long) channels[t] * paramsPerChannel[t];
        return n;
    }

    int[] neuronParams() {
        int[] out = new int[numNeurons()];
        for (int t = 0, i = 0; t < channels.length; t++) for (int c = 0; c < channels[t]; c++) out[i++] = paramsPerChannel[t];
        return out;
    }

    /** floor(fraction * total kernel parameters). */
    public long budgetParams(double fraction) {
        if (!(fraction > 0 && fraction <= 1)) throw new IllegalArgumentException("budget must be a fraction in (0, 1], got " + fraction);
        return (long) Math.floor(fraction * totalParams() + 1e-9);
    }

    /** Parameters of the chosen neurons. */
    public long selectedParams(boolean[] chosen) {
        int[] sizes = neuronParams();
        long n = 0;
        for (int i = 0; i < chosen.length; i++) if (chosen[i]) n += sizes[i];
        return n;
    }

    /** Chosen neurons per tensor. */
    public int[] perLayer(boolean[] chosen) {
        int[] out = new int[channels.length];
        for (int t = 0, i = 0; t < channels.length; t++) for (int c = 0; c < channels[t]; c++) if (chosen[i++]) out[t]++;
        return out;
    }

    /** Neurons in `order` while they fit; a neuron that does not fit is skipped. Flat per-neuron result. */
    public boolean[] fill(int[] order, long budget) {
        int[] sizes = neuronParams();
        int min = Arrays.stream(sizes).min().orElse(0);
        if (budget < min) throw new IllegalArgumentException("budget of " + budget + " parameters is smaller than the smallest neuron (" + min + ")");
        boolean[] chosen = new boolean[sizes.length];
        long left = budget;
        for (int i : order)
            if (sizes[i] <= left) {
                chosen[i] = true;
                left -= sizes[i];
            }
        return chosen;
    }

    /** Last tensor first, channel 0 first within a tensor. */
    public int[] staticOrder() {
        int[] out = new int[numNeurons()];
        int k = 0;
        for (int t = channels.length - 1; t >= 0; t--) {
            int offset = 0;
            for (int u = 0; u < t; u++) offset += channels[u];
            for (int c = 0; c < channels[t]; c++) out[k++] = offset + c;
        }
        return out;
    }

    /** Ascending draws of stream(seed, round, SELECT_INDEX, 0), ties lower index first. */
    public int[] randomOrder(long seed, long round) {
        long[] u = Rng.uint32Stream(Rng.streamKey(seed, round, Rng.SELECT_INDEX, 0), numNeurons());
        return ranked(i -> (double) u[i], false);
    }

    /** The largest mean |w| * Δw first (ties lower index first), from int8 kernels. */
    public int[] magnitudeOrder(byte[][] kernels, double[] scales) {
        double[] score = new double[numNeurons()];
        int i = 0;
        for (int t = 0; t < channels.length; t++) {
            double[] sum = new double[channels[t]];
            int[] shape = shapes[t];
            int inner = 1;
            for (int d = axes[t] + 1; d < shape.length; d++) inner *= shape[d];
            for (int e = 0; e < kernels[t].length; e++) sum[(e / inner) % channels[t]] += Math.abs(kernels[t][e]);
            for (int c = 0; c < channels[t]; c++) score[i++] = sum[c] / paramsPerChannel[t] * scales[t];
        }
        return ranked(k -> score[k], true);
    }

    /** Highest score first, ties lower index first (selection._rank_desc). */
    int[] rankDescending(double[] scores) {
        return ranked(k -> scores[k], true);
    }

    private int[] ranked(java.util.function.IntToDoubleFunction key, boolean descending) {
        Integer[] idx = new Integer[numNeurons()];
        for (int k = 0; k < idx.length; k++) idx[k] = k;
        Arrays.sort(idx, (a, b) -> {
            int c = Double.compare(key.applyAsDouble(a), key.applyAsDouble(b));
            return c != 0 ? (descending ? -c : c) : Integer.compare(a, b);
        });
        return Arrays.stream(idx).mapToInt(Integer::intValue).toArray();
    }

    /** Per-neuron choice -> element masks shaped like the (flat, row-major) kernels. */
    public boolean[][] support(boolean[] chosen) {
        boolean[][] out = new boolean[shapes.length][];
        for (int t = 0, offset = 0; t < shapes.length; offset += channels[t], t++) {
            int size = 1, inner = 1;
            for (int d : shapes[t]) size *= d;
            for (int d = axes[t] + 1; d < shapes[t].length; d++) inner *= shapes[t][d];
            out[t] = new boolean[size];
            for (int e = 0; e < size; e++) out[t][e] = chosen[offset + (e / inner) % channels[t]];
        }
        return out;
    }
}
