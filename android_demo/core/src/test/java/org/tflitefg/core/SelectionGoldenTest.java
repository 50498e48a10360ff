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

/** Static, random and magnitude selections equal tflite_fg/selection.py's (trainer_golden.json "selections"). */
public class SelectionGoldenTest {
    @Test
    @SuppressWarnings("unchecked")
    public void selectionsMatchPython() throws Exception {
        Path p = Paths.get(System.getProperty("golden.dir", "../tests/golden"), "trainer_golden.json");
        Map<String, Object> g = (Map<String, Object>) ((Map<String, Object>) Json.parse(
                new String(Files.readAllBytes(p), "UTF-8"))).get("selections");
        int[][] shapes = SignSpsaGoldenTest.tensors(g.get("shapes"));
        byte[][] kernels = SignSpsaGoldenTest.int8(SignSpsaGoldenTest.tensors(g.get("kernels")));
        List<Object> sc = (List<Object>) g.get("scales");
        double[] scales = new double[sc.size()];
        for (int t = 0; t < scales.length; t++) scales[t] = ((Number) sc.get(t)).doubleValue();
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
            int[] got = new int[chosen.length];
            for (int i = 0; i < got.length; i++) got[i] = chosen[i] ? 1 : 0;
            assertArrayEquals(s + " at " + b, SignSpsaGoldenTest.ints(c.get("chosen")), got);
            boolean[][] support = sel.support(chosen);
            long selected = 0;
            for (boolean[] m : support) for (boolean v : m) if (v) selected++;
            assertTrue(selected <= budget);
        }
        assertThrows(IllegalArgumentException.class, () -> sel.fill(sel.staticOrder(), 3));
    }
}
