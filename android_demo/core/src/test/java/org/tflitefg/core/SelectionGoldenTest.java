package org.tflitefg.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;

import org.junit.Test;

/** Static, random, magnitude and NEq velocity selections equal tflite_fg/selection.py's
 *  (trainer_golden.json "selections"). */
public class SelectionGoldenTest {
    @SuppressWarnings("unchecked")
    static Map<String, Object> golden() throws Exception {
        Path p = Paths.get(System.getProperty("golden.dir", "../tests/golden"), "trainer_golden.json");
        return (Map<String, Object>) ((Map<String, Object>) Json.parse(new String(Files.readAllBytes(p), "UTF-8"))).get("selections");
    }

    static double[] doubles(Object list) {
        List<?> l = (List<?>) list;
        double[] out = new double[l.size()];
        for (int i = 0; i < out.length; i++) out[i] = ((Number) l.get(i)).doubleValue();
        return out;
    }

    static int[] bits(boolean[] chosen) {
        int[] out = new int[chosen.length];
        for (int i = 0; i < out.length; i++) out[i] = chosen[i] ? 1 : 0;
        return out;
    }

    @Test
    @SuppressWarnings("unchecked")
    public void selectionsMatchPython() throws Exception {
        Map<String, Object> g = golden();
        int[][] shapes = SignSpsaGoldenTest.tensors(g.get("shapes"));
        byte[][] kernels = SignSpsaGoldenTest.int8(SignSpsaGoldenTest.tensors(g.get("kernels")));
        double[] scales = doubles(g.get("scales"));
        int[] axes = new int[shapes.length];  // output channels first (OHWI, [out, in])
        Selection sel = new Selection(shapes, axes);
        long seed = ((Number) g.get("seed")).longValue();
        for (Map<String, Object> c : (List<Map<String, Object>>) g.get("cases")) {
            double b = ((Number) c.get("budget")).doubleValue();
            long budget = sel.budgetParams(b);
            assertEquals(((Number) c.get("budget_params")).longValue(), budget);
            String s = (String) c.get("strategy");
            int[] order = s.equals("static") ? sel.staticOrder()
                    : s.equals("magnitude") ? sel.magnitudeOrder(kernels, scales)
                    : sel.randomOrder(seed, Long.parseLong(s.substring("random".length())));
            boolean[] chosen = sel.fill(order, budget);
            assertArrayEquals(s + " at " + b, SignSpsaGoldenTest.ints(c.get("chosen")), bits(chosen));
            boolean[][] support = sel.support(chosen);
            long selected = 0;
            for (boolean[] m : support) for (boolean v : m) if (v) selected++;
            assertTrue(selected <= budget);
        }
        assertThrows(IllegalArgumentException.class, () -> sel.fill(sel.staticOrder(), 3));
    }

    /** Five rounds of a velocity Selector on the same synthetic layer outputs as Python's: the same
     *  strategy per round (init until three rounds are observed) and the same neurons, bit for bit. */
    @Test
    @SuppressWarnings("unchecked")
    public void velocityRoundsMatchPython() throws Exception {
        Map<String, Object> g = golden();
        Map<String, Object> v = (Map<String, Object>) g.get("velocity");
        int[][] shapes = SignSpsaGoldenTest.tensors(g.get("shapes"));
        Selector selector = new Selector(new Selection(shapes, new int[shapes.length]), "velocity",
                ((Number) v.get("budget")).doubleValue(), ((Number) v.get("every")).intValue(), (String) v.get("init"),
                ((Number) v.get("mu")).doubleValue(), ((Number) v.get("seed")).longValue(),
                SignSpsaGoldenTest.int8(SignSpsaGoldenTest.tensors(g.get("kernels"))), doubles(g.get("scales")));
        int every = ((Number) v.get("every")).intValue(), k = 0;
        float[][] outputs = null;
        for (Map<String, Object> round : (List<Map<String, Object>>) v.get("rounds")) {
            List<Object> outs = (List<Object>) round.get("outputs");
            outputs = new float[outs.size()][];
            for (int t = 0; t < outputs.length; t++) {
                double[] d = doubles(outs.get(t));
                outputs[t] = new float[d.length];
                for (int e = 0; e < d.length; e++) outputs[t][e] = (float) d[e];
            }
            long step = (long) k++ * every;
            assertTrue(selector.due(step));
            boolean[] chosen = selector.select(step, outputs);
            assertEquals(round.get("by"), selector.history().get(selector.history().size() - 1).by);
            assertArrayEquals("round " + (k - 1), SignSpsaGoldenTest.ints(round.get("chosen")), bits(chosen));
        }
        assertEquals("velocity", selector.history().get(k - 1).by);
        assertThrows(IllegalArgumentException.class, () -> selector.select(0, null));
        outputs[2][7] = Float.NaN;
        float[][] bad = outputs;
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> selector.select(0, bad));
        assertTrue(e.getMessage(), e.getMessage().contains("NaN"));
    }
}
