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

/** The exact head's softmax table, integer error and float32 gradient equal tflite_fg/exact_head.py's
 *  bit for bit (trainer_golden.json "exact_head"); a model that cannot train its head exactly is
 *  refused with the fix. */
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

    /** A two-class model of 4 inputs whose last trainable layer is `op`. */
    static Metadata model(String op) {
        return Metadata.parse("{\"format\": \"tflite_fg/1\", \"model_sha256\": \"0\", \"input_name\": \"x\", "
                + "\"input_shape\": [4], \"input_scale\": 0.1, \"input_zero_point\": 0, \"output_name\": \"logits\", "
                + "\"output_scale\": 0.1, \"output_zero_point\": 0, \"num_classes\": 2, \"trainable\": [{\"layer\": \"head\", "
                + "\"input_name\": \"k0\", \"op\": \"" + op + "\", \"shape\": [2, 4], \"scale\": 0.01, \"infer_offset\": 0, "
                + "\"nbytes\": 8}]}");
    }

    /** A runner of that model, with or without the `head_in` output (its passes are never run here). */
    static ForwardRunner runner(boolean headInput) {
        return new ForwardRunner() {
            @Override
            public byte[] forward(byte[] x, int batch, byte[][] kernels) {
                return new byte[2 * batch];
            }

            @Override
            public boolean hasHeadInput() {
                return headInput;
            }

            @Override
            public TensorQuant headInputQuant() {
                return new TensorQuant(0.05, -128);
            }

            @Override
            public void close() {}
        };
    }

    @Test
    public void modelsWithoutHeadInputAreRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ExactHead.Quant.of(model("Dense"), runner(false)));
        assertTrue(e.getMessage(), e.getMessage().contains("'head_in'") && e.getMessage().contains("reconvert"));
        e = assertThrows(IllegalArgumentException.class, () -> ExactHead.Quant.of(model("Conv2D"), runner(true)));
        assertTrue(e.getMessage(), e.getMessage().contains("not Dense"));
        ExactHead.Quant quant = ExactHead.Quant.of(model("Dense"), runner(true));
        assertEquals(new ExactHead.Quant(0.1, 0.05, -128, 0.01), quant);
        // a trainer built for the exact head, given a runner without head_in
        SignSpsa trainer = new SignSpsa(0, 1, 1, new double[] {0.3}, 8, new byte[][] {new byte[8]},
                                        new SignSpsa.Options().exactHead(quant));
        e = assertThrows(IllegalArgumentException.class,
                () -> new Training(runner(false), model("Dense"), trainer, 0, new byte[4], new int[] {1}, false));
        assertTrue(e.getMessage(), e.getMessage().contains("'head_in'"));
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
