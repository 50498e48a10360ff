package org.tflitefg.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;

import org.junit.Test;

/** Given the same sequence of losses, the Java trainer produces the Python runtime's weights bit for
 *  bit (tests/golden/trainer_golden.json, written by tools/java_golden.py): every probe's engine
 *  kernels, and the master and engine weights after every step, for w8 and w16, plain and with
 *  top-k / random / threshold masks, stochastic update rounding, Rademacher / Binomial z,
 *  momentum-guided sampling, kernel-wise normalization, the paper's integer arithmetic, schedules,
 *  sharpness-aware steps, stochastic engine rounding, the SPSA estimator, a neuron-selection support,
 *  gradient averaging, the exact head (whose head passes, int8 logits and head inputs, are
 *  replayed too: Java computes the head's gradient itself), with a body or alone, and
 *  block-coordinate probes (one tensor per probe; with three tensors, SAM's unsigned ascent index). */
public class SignSpsaGoldenTest {
    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> cases() throws Exception {
        Path p = Paths.get(System.getProperty("golden.dir", "../tests/golden"), "trainer_golden.json");
        Map<String, Object> g = (Map<String, Object>) Json.parse(new String(Files.readAllBytes(p), "UTF-8"));
        return (List<Map<String, Object>>) g.get("cases");
    }

    static int[] ints(Object list) {
        return Metadata.ints(list);
    }

    /** Golden int lists -> int8 tensors. */
    static byte[][] int8(int[][] values) {
        byte[][] out = new byte[values.length][];
        for (int t = 0; t < values.length; t++) {
            out[t] = new byte[values[t].length];
            for (int e = 0; e < values[t].length; e++) out[t][e] = (byte) values[t][e];
        }
        return out;
    }

    static int[] ints(byte[] b) {
        int[] out = new int[b.length];
        for (int i = 0; i < b.length; i++) out[i] = b[i];
        return out;
    }

    @SuppressWarnings("unchecked")
    static int[][] tensors(Object list) {
        List<Object> l = (List<Object>) list;
        int[][] out = new int[l.size()][];
        for (int t = 0; t < out.length; t++) out[t] = ints(l.get(t));
        return out;
    }

    /** The trainer of a golden case, with the options its TrainConfig names (build.py's composition). */
    @SuppressWarnings("unchecked")
    static SignSpsa trainer(Map<String, Object> c) {
        byte[][] initial = int8(tensors(c.get("initial")));
        List<Object> lrList = (List<Object>) c.get("lr");
        double[] lr = new double[lrList.size()];
        for (int t = 0; t < lr.length; t++) lr[t] = ((Number) lrList.get(t)).doubleValue();
        long seed = ((Number) c.get("seed")).longValue();
        Map<String, Object> options = (Map<String, Object>) c.get("options");
        String kind = (String) options.getOrDefault("mask", "none");
        boolean[][] mask = switch (kind) {
            case "topk" -> Masks.topk(initial, ((Number) options.get("sparsity")).doubleValue());
            case "random" -> Masks.random(initial, ((Number) options.get("sparsity")).doubleValue(), seed);
            case "threshold" -> Masks.threshold(initial, ((Number) options.get("mask_threshold_lsb")).doubleValue());
            default -> null;
        };
        SignSpsa.Options opt = new SignSpsa.Options().mask(mask)
                .stochasticRounding("stochastic".equals(options.get("update_rounding")))
                .distribution((String) options.getOrDefault("distribution", "gaussian"))
                .kernelNorm(Boolean.TRUE.equals(options.get("kernel_norm")))
                .blockCoordinate(Boolean.TRUE.equals(options.get("block_coordinate")));
        if (c.get("support") != null) {
            int[][] sup = tensors(c.get("support"));
            boolean[][] support = new boolean[sup.length][];
            for (int t = 0; t < sup.length; t++) {
                support[t] = new boolean[sup[t].length];
                for (int e = 0; e < sup[t].length; e++) support[t][e] = sup[t][e] != 0;
            }
            opt.support(support);
        }
        opt.spsa("spsa".equals(options.get("estimator")))
           .paperArithmetic("paper".equals(options.get("arithmetic")))
           .engineStochasticRounding("stochastic".equals(options.get("engine_rounding")))
           .sam(((Number) options.getOrDefault("sam_rho", 0.0)).doubleValue())
           .gradAverage(((Number) options.getOrDefault("grad_average", 0.0)).doubleValue());
        if (Boolean.TRUE.equals(options.get("exact_head"))) {
            List<?> q = (List<?>) c.get("head_quant");
            opt.exactHead(new ExactHead.Quant(((Number) q.get(0)).doubleValue(), ((Number) q.get(1)).doubleValue(),
                                              ((Number) q.get(2)).intValue(), ((Number) q.get(3)).doubleValue()))
               .headAdam("adam".equals(options.get("head_optimizer")));
        }
        if (options.containsKey("schedule"))
            opt.schedule(new SignSpsa.Options.Schedule((String) options.get("schedule"), ((Number) c.get("steps")).longValue(),
                    ((Number) options.getOrDefault("schedule_final", 0.0)).doubleValue(),
                    ((Number) options.getOrDefault("schedule_every", 1000L)).longValue(),
                    ((Number) options.getOrDefault("schedule_factor", 0.5)).doubleValue()));
        if (options.containsKey("momentum_alpha"))
            opt.momentum(((Number) options.get("momentum_alpha")).doubleValue(),
                         ((Number) options.getOrDefault("momentum_beta_min", 0.5)).doubleValue(),
                         ((Number) options.getOrDefault("momentum_decay_steps", 1000L)).intValue());
        return new SignSpsa(seed, ((Number) c.get("m")).intValue(), ((Number) c.get("eps_lsb")).doubleValue(),
                lr, c.get("precision").equals("w16") ? 16 : 8, initial, opt);
    }

    static String name(Map<String, Object> c) {
        return c.get("precision") + " " + c.get("options");
    }

    /** The Python run's losses and head passes in call order, each checked against the engine
     *  kernels Java passes (the counters carry across a checkpoint). */
    static final class Replay {
        final String name;
        final List<Map<String, Object>> calls;
        final List<Map<String, Object>> headCalls;
        int next;
        int nextHead;

        @SuppressWarnings("unchecked")
        Replay(Map<String, Object> c) {
            name = name(c);
            calls = (List<Map<String, Object>>) c.get("calls");
            headCalls = (List<Map<String, Object>>) c.getOrDefault("head_calls", List.of());
        }

        double loss(byte[][] kernels) {
            Map<String, Object> call = calls.get(next);
            check(call, kernels, "call " + next);
            next++;
            return ((Number) call.get("loss")).doubleValue();
        }

        ExactHead.Batch head(byte[][] kernels) {
            Map<String, Object> call = headCalls.get(nextHead);
            check(call, kernels, "head call " + nextHead);
            nextHead++;
            return new ExactHead.Batch(ExactHeadGoldenTest.bytes(ints(call.get("logits"))),
                    ExactHeadGoldenTest.bytes(ints(call.get("head_in"))), ints(call.get("labels")),
                    ((Number) call.get("loss")).doubleValue());
        }

        private void check(Map<String, Object> call, byte[][] kernels, String what) {
            int[][] want = tensors(call.get("kernels"));
            for (int t = 0; t < want.length; t++) assertArrayEquals(name + " " + what + " tensor " + t, want[t], ints(kernels[t]));
        }

        /** One step of `trainer` on the replayed calls. */
        double step(SignSpsa trainer) {
            return trainer.exactHead() ? trainer.step(this::loss, this::head) : trainer.step(this::loss);
        }

        void finished() {
            assertEquals(name, calls.size(), next);
            assertEquals(name, headCalls.size(), nextHead);
        }
    }

    /** The master and engine weights after step s equal the golden ones. */
    @SuppressWarnings("unchecked")
    static void assertStep(Map<String, Object> c, SignSpsa trainer, int s) {
        Map<String, Object> after = ((List<Map<String, Object>>) c.get("after_step")).get(s);
        int[][] master = trainer.master();
        int[][] wantMaster = tensors(after.get("master"));
        int[][] wantEngine = tensors(after.get("engine"));
        byte[][] engine = trainer.engine();
        for (int t = 0; t < master.length; t++) {
            assertArrayEquals(name(c) + " step " + s + " master " + t, wantMaster[t], master[t]);
            assertArrayEquals(name(c) + " step " + s + " engine " + t, wantEngine[t], ints(engine[t]));
        }
    }

    /** Forward passes per step: 2m probes (+2 with SAM; none for a head-only exact head), +1 exact head pass. */
    @SuppressWarnings("unchecked")
    static long passesPerStep(Map<String, Object> c) {
        Map<String, Object> options = (Map<String, Object>) c.get("options");
        boolean head = Boolean.TRUE.equals(options.get("exact_head"));
        long probes = Boolean.TRUE.equals(options.get("head_only")) ? 0
                : 2L * ((Number) c.get("m")).intValue() + (options.containsKey("sam_rho") ? 2 : 0);
        return probes + (head ? 1 : 0);
    }

    @Test
    public void replayedLossesGiveBitIdenticalWeights() throws Exception {
        int exactHead = 0, averaged = 0, block = 0, adam = 0;
        for (Map<String, Object> c : cases()) {
            SignSpsa trainer = trainer(c);
            Replay replay = new Replay(c);
            int steps = ((Number) c.get("steps")).intValue();
            for (int s = 0; s < steps; s++) {
                replay.step(trainer);
                assertStep(c, trainer, s);
            }
            replay.finished();
            assertEquals(name(c), trainer.step() * passesPerStep(c), trainer.forwardPasses());
            exactHead += trainer.exactHead() ? 1 : 0;
            averaged += name(c).contains("grad_average") ? 1 : 0;
            block += name(c).contains("block_coordinate") ? 1 : 0;
            adam += name(c).contains("head_optimizer=adam") ? 1 : 0;
        }
        assertEquals(9, exactHead);
        assertEquals(7, averaged);
        assertEquals(6, block);
        assertEquals(4, adam);
    }

    @Test
    public void badArgumentsAreRefused() {
        byte[][] w = {{1, 2}};
        assertThrows(IllegalArgumentException.class, () -> new SignSpsa(0, 3, 1.5, new double[] {1}, 8, w));
        assertThrows(IllegalArgumentException.class, () -> new SignSpsa(0, 0, 1, new double[] {1}, 8, w));
        assertThrows(IllegalArgumentException.class, () -> new SignSpsa(0, 1, 1, new double[] {1, 2}, 8, w));
        SignSpsa t = new SignSpsa(0, 1, 1, new double[] {1}, 16, w);
        assertThrows(IllegalArgumentException.class, () -> t.step(k -> Double.NaN));
        assertThrows(IllegalArgumentException.class, () -> new SignSpsa.Options().gradAverage(1.0));
        ExactHead.Quant quant = new ExactHead.Quant(0.1, 0.01, 0, 0.01);
        assertThrows(IllegalArgumentException.class, () -> new SignSpsa(0, 1, 1, new double[] {1}, 8, w,
                new SignSpsa.Options().exactHead(quant).paperArithmetic(true)));
        SignSpsa head = new SignSpsa(0, 1, 1, new double[] {1}, 8, w, new SignSpsa.Options().exactHead(quant));
        assertThrows(IllegalArgumentException.class, () -> head.step(k -> 0.0));  // no head pass given
        // a head pass whose logits and input do not make the head's shape
        assertThrows(IllegalArgumentException.class, () -> head.step(k -> 0.0,
                k -> new ExactHead.Batch(new byte[] {1, 2, 3}, new byte[] {4}, new int[] {0}, 0.0)));
    }
}
