package org.tflitefg.core;

import java.util.ArrayList;
import java.util.List;

/**
 * Which neurons train in each round (tflite_fg/selection.py Selector): round r starts at step
 * r * every; static and magnitude choose once, random and velocity every round. Velocity's rounds 0
 * and 1 use the `init` strategy. The result feeds SignSpsa.support through Selection.support.
 */
public final class Selector {
    /** One round's choice, as tflite_fg's Selector.history records it. */
    public static final class Round {
        public final long step;
        public final String by;
        public final long params;
        public final int[] perLayer;

        Round(long step, String by, long params, int[] perLayer) {
            this.step = step;
            this.by = by;
            this.params = params;
            this.perLayer = perLayer;
        }
    }

    private final Selection layout;
    private final String strategy;
    private final String init;
    private final int every;
    private final long seed;
    private final long budget;
    private final int[] magnitudeOrder;
    private final Velocity velocity;
    private final List<Round> history = new ArrayList<>();

    /**
     * @param strategy static, random, magnitude or velocity
     * @param budget   fraction of the kernel parameters, in (0, 1]
     * @param init     velocity's strategy for rounds 0 and 1 (static, random or magnitude)
     * @param kernels  the initial int8 kernels and their scales (magnitude)
     */
    public Selector(Selection layout, String strategy, double budget, int every, String init, double mu, long seed,
                    byte[][] kernels, double[] scales) {
        if (!List.of("static", "random", "magnitude", "velocity").contains(strategy))
            throw new IllegalArgumentException("selection strategy must be static, random, magnitude or velocity, got " + strategy);
        if (!List.of("static", "random", "magnitude").contains(init))
            throw new IllegalArgumentException("velocity init strategy must be static, random or magnitude, got " + init);
        if (every < 1) throw new IllegalArgumentException("re-selection period must be >= 1 steps, got " + every);
        if (!(mu >= 0 && mu < 1)) throw new IllegalArgumentException("velocity mu must be in [0, 1), got " + mu);
        this.layout = layout;
        this.strategy = strategy;
        this.init = init;
        this.every = every;
        this.seed = seed;
        this.budget = layout.budgetParams(budget);
        this.magnitudeOrder = layout.magnitudeOrder(kernels, scales);
        this.velocity = new Velocity(layout.channels(), mu);
    }

    /** A selector over a converted model's trainable kernels (output channels from the metadata's ops). */
    public static Selector forModel(Metadata meta, byte[][] initialKernels, String strategy, double budget, int every,
                                    String init, double mu, long seed) {
        return new Selector(Selection.forModel(meta), strategy, budget, every, init, mu, seed, initialKernels, meta.scales());
    }

    public boolean dynamic() {
        return strategy.equals("random") || strategy.equals("velocity");
    }

    public boolean needsOutputs() {
        return strategy.equals("velocity");
    }

    public Selection layout() {
        return layout;
    }

    /** True at step 0 and, for dynamic strategies, at every round start. */
    public boolean due(long step) {
        return step == 0 || (dynamic() && step % every == 0);
    }

    public List<Round> history() {
        return history;
    }

    /** The choice (flat per neuron) for the round starting at `step`; outputs: the probe batch's
     *  neuron outputs with the current engine kernels (velocity only, else null). */
    public boolean[] select(long step, float[][] outputs) {
        long round = step / every;
        String by = strategy;
        int[] order;
        if (strategy.equals("velocity")) {
            if (outputs == null) throw new IllegalArgumentException("velocity selection needs the neuron outputs of this round");
            velocity.observe(outputs);
            if (velocity.ready()) {
                order = layout.rankDescending(velocity.scores(layout.neuronParams()));
            } else {
                by = init;
                order = order(init, round);
            }
        } else {
            order = order(strategy, round);
        }
        boolean[] chosen = layout.fill(order, budget);
        history.add(new Round(step, by, layout.selectedParams(chosen), layout.perLayer(chosen)));
        return chosen;
    }

    private int[] order(String s, long round) {
        return s.equals("static") ? layout.staticOrder()
                : s.equals("random") ? layout.randomOrder(seed, round) : magnitudeOrder;
    }
}
