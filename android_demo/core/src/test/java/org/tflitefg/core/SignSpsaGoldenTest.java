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
 *  sharpness-aware steps, stochastic engine rounding, the SPSA estimator and a neuron-selection support. */
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

    @Test
    @SuppressWarnings("unchecked")
    public void replayedLossesGiveBitIdenticalWeights() throws Exception {
        for (Map<String, Object> c : cases()) {
            String name = c.get("precision") + " " + c.get("options");
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
                    .kernelNorm(Boolean.TRUE.equals(options.get("kernel_norm")));
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
               .sam(((Number) options.getOrDefault("sam_rho", 0.0)).doubleValue());
            if (options.containsKey("schedule"))
                opt.schedule(new SignSpsa.Options.Schedule((String) options.get("schedule"), ((Number) c.get("steps")).longValue(),
                        ((Number) options.getOrDefault("schedule_final", 0.0)).doubleValue(),
                        ((Number) options.getOrDefault("schedule_every", 1000L)).longValue(),
                        ((Number) options.getOrDefault("schedule_factor", 0.5)).doubleValue()));
            if (options.containsKey("momentum_alpha"))
                opt.momentum(((Number) options.get("momentum_alpha")).doubleValue(),
                             ((Number) options.getOrDefault("momentum_beta_min", 0.5)).doubleValue(),
                             ((Number) options.getOrDefault("momentum_decay_steps", 1000L)).intValue());
            SignSpsa trainer = new SignSpsa(seed, ((Number) c.get("m")).intValue(), ((Number) c.get("eps_lsb")).doubleValue(),
                    lr, c.get("precision").equals("w16") ? 16 : 8, initial, opt);
            List<Map<String, Object>> calls = (List<Map<String, Object>>) c.get("calls");
            List<Map<String, Object>> after = (List<Map<String, Object>>) c.get("after_step");
            int[] next = {0};
            SignSpsa.Loss replay = kernels -> {
                Map<String, Object> call = calls.get(next[0]++);
                int[][] want = tensors(call.get("kernels"));
                for (int t = 0; t < want.length; t++)
                    assertArrayEquals(name + " call " + (next[0] - 1) + " tensor " + t, want[t], ints(kernels[t]));
                return ((Number) call.get("loss")).doubleValue();
            };
            for (int s = 0; s < after.size(); s++) {
                trainer.step(replay);
                int[][] master = trainer.master();
                int[][] wantMaster = tensors(after.get(s).get("master"));
                int[][] wantEngine = tensors(after.get(s).get("engine"));
                byte[][] engine = trainer.engine();
                for (int t = 0; t < master.length; t++) {
                    assertArrayEquals(name + " step " + s + " master " + t, wantMaster[t], master[t]);
                    assertArrayEquals(name + " step " + s + " engine " + t, wantEngine[t], ints(engine[t]));
                }
            }
            assertEquals(calls.size(), next[0]);
            int sam = options.containsKey("sam_rho") ? 2 : 0;
            assertEquals(trainer.step() * (2L * ((Number) c.get("m")).intValue() + sam), trainer.forwardPasses());
        }
    }

    @Test
    public void badArgumentsAreRefused() {
        byte[][] w = {{1, 2}};
        assertThrows(IllegalArgumentException.class, () -> new SignSpsa(0, 3, 1.5, new double[] {1}, 8, w));
        assertThrows(IllegalArgumentException.class, () -> new SignSpsa(0, 0, 1, new double[] {1}, 8, w));
        assertThrows(IllegalArgumentException.class, () -> new SignSpsa(0, 1, 1, new double[] {1, 2}, 8, w));
        SignSpsa t = new SignSpsa(0, 1, 1, new double[] {1}, 16, w);
        assertThrows(IllegalArgumentException.class, () -> t.step(k -> Double.NaN));
    }
}
