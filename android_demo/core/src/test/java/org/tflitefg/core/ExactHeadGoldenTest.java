package org.tflitefg.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;

import org.junit.Test;

/** The exact head's softmax table, integer error and float32 gradient equal tflite_fg/exact_head.py's
 *  bit for bit (trainer_golden.json "exact_head"). */
public class ExactHeadGoldenTest {
    @Test
    @SuppressWarnings("unchecked")
    public void exactHeadMatchesPython() throws Exception {
        Path p = Paths.get(System.getProperty("golden.dir", "../tests/golden"), "trainer_golden.json");
        Map<String, Object> g = (Map<String, Object>) Json.parse(new String(Files.readAllBytes(p), "UTF-8"));
        List<Map<String, Object>> cases = (List<Map<String, Object>>) g.get("exact_head");
        assertEquals(3, cases.size());
        for (Map<String, Object> c : cases) {
            List<?> q = (List<?>) c.get("quant");
            double outputScale = ((Number) q.get(0)).doubleValue(), inputScale = ((Number) q.get(1)).doubleValue();
            int zeroPoint = ((Number) q.get(2)).intValue();
            double kernelScale = ((Number) q.get(3)).doubleValue();
            int classes = ((Number) c.get("classes")).intValue();
            byte[] logits = bytes(SignSpsaGoldenTest.ints(c.get("logits")));
            byte[] headIn = bytes(SignSpsaGoldenTest.ints(c.get("head_in")));
            int[] labels = SignSpsaGoldenTest.ints(c.get("labels"));
            long[] table = ExactHead.softmaxTable(outputScale);
            assertArrayEquals(longs(c.get("table")), table);
            assertArrayEquals(longs(c.get("error")), ExactHead.softmaxError(logits, labels, classes, table));
            float[] grad = ExactHead.gradient(logits, headIn, labels, classes, table, inputScale, zeroPoint, kernelScale);
            List<?> expected = (List<?>) c.get("gradient");
            assertEquals(expected.size(), grad.length);
            for (int i = 0; i < grad.length; i++)
                assertEquals("gradient " + i, Float.floatToIntBits((float) ((Number) expected.get(i)).doubleValue()),
                             Float.floatToIntBits(grad[i]));
        }
    }

    static byte[] bytes(int[] v) {
        byte[] out = new byte[v.length];
        for (int i = 0; i < v.length; i++) out[i] = (byte) v[i];
        return out;
    }

    static long[] longs(Object list) {
        List<?> l = (List<?>) list;
        long[] out = new long[l.size()];
        for (int i = 0; i < out.length; i++) out[i] = ((Number) l.get(i)).longValue();
        return out;
    }
}
