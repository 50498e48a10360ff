package org.tflitefg.core;

import static org.junit.Assert.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;

import org.junit.Test;

/** The generator and the 8-bit perturbation against the golden vectors the Python runtime wrote
 *  (tests/golden/rng_golden.json; tests/test_rng.py checks the same file against tflite_fg). */
public class RngGoldenTest {
    @SuppressWarnings("unchecked")
    static Map<String, Object> golden() throws Exception {
        Path p = Paths.get(System.getProperty("golden.dir", "../tests/golden"), "rng_golden.json");
        return (Map<String, Object>) Json.parse(new String(Files.readAllBytes(p), "UTF-8"));
    }

    static long hex(Object s) {
        return Long.parseUnsignedLong(((String) s).substring(2), 16);
    }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> cases(Map<String, Object> g, String key) {
        return (List<Map<String, Object>>) g.get(key);
    }

    static long num(Object o) {
        return ((Number) o).longValue();
    }

    @Test
    @SuppressWarnings("unchecked")
    public void constantsMatch() throws Exception {
        Map<String, Object> c = (Map<String, Object>) golden().get("constants");
        assertEquals(hex(c.get("GAMMA")), Rng.GAMMA);
        assertEquals(hex(c.get("MIX_MUL1")), Rng.MIX_MUL1);
        assertEquals(hex(c.get("MIX_MUL2")), Rng.MIX_MUL2);
        assertEquals(hex(c.get("MINIBATCH_INDEX")), Rng.MINIBATCH_INDEX);
        assertEquals(num(c.get("ONE_Q")), Quant.ONE_Q);
        assertEquals(num(c.get("Z_MULTIPLIER")), Quant.Z_MULTIPLIER);
        assertEquals(num(c.get("Z_SHIFT")), Quant.Z_SHIFT);
        long sum = 0;
        for (long t : Quant.GAUSSIAN_THRESHOLDS) sum += t;
        assertEquals(num(c.get("GAUSSIAN_THRESHOLDS_SUM")), sum);
    }

    @Test
    public void mixMatches() throws Exception {
        for (Map<String, Object> c : cases(golden(), "mix")) assertEquals(hex(c.get("out")), Rng.mix(hex(c.get("in"))));
    }

    @Test
    @SuppressWarnings("unchecked")
    public void streamsAndPerturbationsMatch() throws Exception {
        for (Map<String, Object> c : cases(golden(), "streams")) {
            long key = Rng.streamKey(hex(c.get("seed")), num(c.get("step")), num(c.get("index")), num(c.get("tensor")));
            assertEquals(hex(c.get("key")), key);
            List<Object> u = (List<Object>) c.get("uint32");
            List<Object> g = (List<Object>) c.get("gaussian_q8");
            List<Object> r = (List<Object>) c.get("rademacher_q8");
            List<Object> d = (List<Object>) c.get("delta_eps1");
            long[] draws = Rng.uint32Stream(key, u.size());
            for (int k = 0; k < u.size(); k++) {
                assertEquals(num(u.get(k)), draws[k]);
                int z = Quant.gaussianQ8(draws[k]);
                assertEquals(num(g.get(k)), z);
                assertEquals(num(r.get(k)), Quant.rademacherQ8(draws[k]));
                assertEquals(num(d.get(k)), Quant.roundShift(z, Quant.Z_MULTIPLIER, Quant.Z_SHIFT));
            }
        }
    }

    @Test
    @SuppressWarnings("unchecked")
    public void minibatchesMatch() throws Exception {
        for (Map<String, Object> c : cases(golden(), "minibatches")) {
            int[] idx = Rng.minibatchIndices(hex(c.get("seed")), num(c.get("step")), (int) num(c.get("n_total")),
                                             (int) num(c.get("batch_size")));
            List<Object> want = (List<Object>) c.get("indices");
            assertEquals(want.size(), idx.length);
            for (int k = 0; k < idx.length; k++) assertEquals(num(want.get(k)), idx[k]);
        }
    }

    @Test
    public void gaussianCoversTheWholeRange() {
        assertEquals(-127, Quant.gaussianQ8(0L));
        assertEquals(127, Quant.gaussianQ8(0xFFFFFFFFL));
    }
}
