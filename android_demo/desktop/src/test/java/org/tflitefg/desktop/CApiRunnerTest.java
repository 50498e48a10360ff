package org.tflitefg.desktop;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;

import org.junit.BeforeClass;
import org.junit.Test;
import org.tflitefg.core.ExactHead;
import org.tflitefg.core.Export;
import org.tflitefg.core.Json;
import org.tflitefg.core.Dataset;
import org.tflitefg.core.Metadata;
import org.tflitefg.core.Selector;
import org.tflitefg.core.SignSpsa;
import org.tflitefg.core.Training;

/** The real TFLite C library (2.17.1, through JNA) on the real converted default-task model and data
 *  that tools/export_java_data.py wrote: same logits as Python's LiteRT, and training improves accuracy. */
public class CApiRunnerTest {
    static final Path DATA = Paths.get(System.getProperty("java.data", "build/java-data"));
    static final String LIB = System.getProperty("tflite.c");

    static String sha256(byte[] data) {
        return Metadata.sha256(data);
    }

    /** What tools/export_java_data.py measured with the Python runtime. */
    @SuppressWarnings("unchecked")
    static Map<String, Object> expected() throws Exception {
        return (Map<String, Object>) Json.parse(
                new String(Files.readAllBytes(DATA.resolve("expected.json")), StandardCharsets.UTF_8));
    }

    /** The demo recipe's learning rates (0.2 body, 0.5 head), in int8 LSBs. */
    static final double[] DEMO_LR = {0.2, 0.2, 0.2, 0.5};
    static byte[] bytes;
    static Metadata meta;
    static Dataset data;

    @BeforeClass
    public static void load() throws Exception {
        bytes = Files.readAllBytes(DATA.resolve("model.tflite"));
        meta = Metadata.read(DATA.resolve("model.tflite"), bytes);
        data = Dataset.read(DATA);
    }

    static CApiRunner runner() {
        return new CApiRunner(TfLiteC.load(LIB), DATA.resolve("model.tflite").toString(), meta, 1);
    }

    @Test
    @SuppressWarnings("unchecked")
    public void logitsEqualPythonLiteRT() throws Exception {
        Map<String, Object> expected = expected();
        int n = ((Number) expected.get("n")).intValue(), d = meta.inputSize();
        byte[] x = new byte[n * d];
        System.arraycopy(data.xTest, 0, x, 0, n * d);
        try (CApiRunner r = runner()) {
            byte[] logits = r.forward(x, n, meta.initialKernels(bytes));
            // The C library applies no XNNPACK delegate by default: its logits are the builtin kernels'
            // (Python's engine="builtin"), bit for bit; XNNPACK's rounding differs by a few LSB.
            List<Object> want = (List<Object>) expected.get("builtin");
            int[] got = new int[logits.length], w = new int[want.size()];
            for (int i = 0; i < got.length; i++) got[i] = logits[i];
            for (int i = 0; i < w.length; i++) w[i] = ((Number) want.get(i)).intValue();
            assertArrayEquals(w, got);
            // the split graph: suffix(prefix(x)) is forward, bit for bit
            assertTrue(r.hasPrefix());
            assertArrayEquals(logits, r.suffix(r.prefix(x, n), n, meta.initialKernels(bytes)));
        }
    }

    @Test
    @SuppressWarnings("unchecked")
    public void probeOutputsEqualPythonLiteRT() throws Exception {
        Map<String, Object> expected = (Map<String, Object>) expected().get("neuron_outputs");
        int n = ((Number) expected.get("n")).intValue(), d = meta.inputSize();
        byte[] x = java.util.Arrays.copyOf(data.xTest, n * d);
        try (CApiRunner r = runner()) {
            assertTrue(r.hasProbe());
            float[][] got = r.neuronOutputs(x, n, meta.initialKernels(bytes));
            List<Object> want = (List<Object>) expected.get("values");
            assertEquals(want.size(), got.length);
            for (int t = 0; t < got.length; t++) {
                List<Object> w = (List<Object>) want.get(t);
                float[] wf = new float[w.size()];
                for (int e = 0; e < wf.length; e++) wf[e] = (float) ((Number) w.get(e)).doubleValue();
                assertArrayEquals("layer " + t, wf, got[t], 0f);
            }
        }
    }

    @Test
    public void cachedPrefixStepsEqualWholeForwardSteps() throws Exception {
        String[] sha = new String[2];
        double[][] losses = new double[2][10];
        try (CApiRunner r = runner()) {
            for (int run = 0; run < 2; run++) {
                SignSpsa trainer = new SignSpsa(3, 2, 8, DEMO_LR, 16, meta.initialKernels(bytes));
                Training training = new Training(r, meta, trainer, 3, data.xTrain, data.yTrain, run == 1);
                assertEquals(run == 1, training.cached());
                for (int s = 0; s < 10; s++) losses[run][s] = training.step(32);
                sha[run] = trainer.engineSha256();
            }
        }
        assertArrayEquals(losses[0], losses[1], 0.0);
        assertEquals(sha[0], sha[1]);
    }

    @Test
    @SuppressWarnings("unchecked")
    public void trainingRunImprovesAccuracyAndReproducesPythonBitForBit() throws Exception {
        Map<String, Object> run = (Map<String, Object>) expected().get("run");
        int n = meta.trainable.size(), steps = ((Number) run.get("steps")).intValue();
        double[] lr = new double[n];
        for (int t = 0; t < n; t++) lr[t] = ((Number) run.get(t == n - 1 ? "lr_head" : "lr_body")).doubleValue();
        SignSpsa trainer = new SignSpsa(0, 3, 8, lr, 16, meta.initialKernels(bytes));
        try (CApiRunner r = runner()) {
            Training training = new Training(r, meta, trainer, 0, data.xTrain, data.yTrain, true);
            assertTrue(training.cached());
            double before = training.accuracy(data.xTest, data.yTest, 256);
            for (int s = 0; s < steps; s++) training.step(64);
            double after = training.accuracy(data.xTest, data.yTest, 256);
            assertEquals((long) steps * 2 * 3, trainer.forwardPasses());
            assertTrue("test accuracy " + before + " -> " + after, after > before + 0.03);
            // The losses are computed in Java floats here; they agree with numpy's closely enough that
            // no sign of L+ - L- flips over the run: the same weights as the Python runtime's.
            assertEquals(run.get("weights_sha256"), trainer.engineSha256());
            assertEquals(((Number) run.get("test_acc")).doubleValue(), after, 0.0);
            // the deployable model: the same bytes and metadata as tflite_fg/export.py writes
            Path dir = Files.createTempDirectory("tfg-export");
            Path out = dir.resolve("trained.tflite");
            String json = new String(Files.readAllBytes(DATA.resolve("model.tflite.json")), StandardCharsets.UTF_8);
            Export.exportModel(out, bytes, json, meta, trainer.engine());
            assertEquals(run.get("exported_sha256"), sha256(Files.readAllBytes(out)));
            assertEquals(run.get("exported_metadata_sha256"), sha256(Files.readAllBytes(dir.resolve("trained.tflite.json"))));
            Metadata reread = Metadata.read(out, Files.readAllBytes(out));
            assertArrayEquals(trainer.engine()[0], reread.initialKernels(Files.readAllBytes(out))[0]);
        }
    }

    /** tools/train.py --select=velocity's recipe: the probe signature's outputs on the exported probe
     *  batch decide each round's neurons; same rounds and same weights as the Python runtime. */
    @Test
    @SuppressWarnings("unchecked")
    public void velocitySelectionRunReproducesPython() throws Exception {
        Map<String, Object> run = (Map<String, Object>) expected().get("selective_run");
        int steps = ((Number) run.get("steps")).intValue();
        byte[][] start = meta.initialKernels(bytes);
        SignSpsa trainer = new SignSpsa(0, 3, 8, DEMO_LR, 16, start);
        Selector selector = Selector.forModel(meta, start, "velocity", ((Number) run.get("budget")).doubleValue(),
                ((Number) run.get("every")).intValue(), (String) run.get("init"), ((Number) run.get("mu")).doubleValue(), 0);
        try (CApiRunner r = runner()) {
            Training training = new Training(r, meta, trainer, 0, data.xTrain, data.yTrain, true);
            training.select(selector, data.probeInputs(meta.inputSize()), data.probe.length);
            for (int s = 0; s < steps; s++) training.step(64);
            List<Map<String, Object>> want = (List<Map<String, Object>>) run.get("history");
            assertEquals(want.size(), selector.history().size());
            for (int k = 0; k < want.size(); k++) {
                Selector.Round got = selector.history().get(k);
                assertEquals(((Number) want.get(k).get("step")).longValue(), got.step);
                assertEquals(want.get(k).get("by"), got.by);
                assertEquals(((Number) want.get(k).get("params")).longValue(), got.params);
                assertArrayEquals(Metadata.ints(want.get(k).get("per_layer")), got.perLayer);
            }
            assertEquals("velocity", selector.history().get(want.size() - 1).by);
            assertEquals(run.get("weights_sha256"), trainer.engineSha256());
            assertEquals(((Number) run.get("test_acc")).doubleValue(), training.accuracy(data.xTest, data.yTest, 256), 0.0);
        }
    }

    /** tools/train.py's default recipe: block-coordinate FF on the body, the head by its exact gradient
     *  from the `head_in` output of one more pass a step and Adam; the same weights as the Python runtime. */
    @Test
    @SuppressWarnings("unchecked")
    public void exactHeadRunReproducesPython() throws Exception {
        Map<String, Object> run = (Map<String, Object>) expected().get("exact_head_run");
        int n = meta.trainable.size(), steps = ((Number) run.get("steps")).intValue();
        double[] lr = new double[n];
        for (int t = 0; t < n; t++) lr[t] = ((Number) run.get(t == n - 1 ? "head_lr" : "lr_body")).doubleValue();
        try (CApiRunner r = runner()) {
            assertTrue(r.hasHeadInput());
            // forward and suffix give the same logits and head input, and forward's logits are its plain call's
            int b = 4, d = meta.inputSize();
            byte[] x = java.util.Arrays.copyOf(data.xTest, b * d);
            byte[][] whole = r.forwardWithHead(x, b, meta.initialKernels(bytes));
            byte[][] split = r.suffixWithHead(r.prefix(x, b), b, meta.initialKernels(bytes));
            assertArrayEquals(r.forward(x, b, meta.initialKernels(bytes)), whole[0]);
            assertArrayEquals(whole[0], split[0]);
            assertArrayEquals(whole[1], split[1]);
            assertEquals(b * meta.trainable.get(n - 1).shape[1], whole[1].length);

            ExactHead.Quant quant = ExactHead.Quant.of(meta, r);
            List<Object> want = (List<Object>) run.get("head_quant");
            assertEquals(((Number) want.get(0)).doubleValue(), quant.outputScale(), 0.0);
            assertEquals(((Number) want.get(1)).doubleValue(), quant.inputScale(), 0.0);
            assertEquals(((Number) want.get(2)).intValue(), quant.inputZeroPoint());
            assertEquals(((Number) want.get(3)).doubleValue(), quant.kernelScale(), 0.0);
            SignSpsa trainer = new SignSpsa(0, 3, 8, lr, 16, meta.initialKernels(bytes), new SignSpsa.Options().exactHead(quant)
                    .headAdam("adam".equals(run.getOrDefault("head_optimizer", "sgd")))
                    .blockCoordinate(Boolean.TRUE.equals(run.get("block_coordinate"))));
            Training training = new Training(r, meta, trainer, 0, data.xTrain, data.yTrain, true);
            double before = training.accuracy(data.xTest, data.yTest, 256);
            for (int s = 0; s < steps; s++) training.step(64);
            double after = training.accuracy(data.xTest, data.yTest, 256);
            assertEquals((long) steps * (2 * 3 + 1), trainer.forwardPasses());
            assertTrue("test accuracy " + before + " -> " + after, after > before + 0.03);
            assertEquals(run.get("weights_sha256"), trainer.engineSha256());
            assertEquals(((Number) run.get("test_acc")).doubleValue(), after, 0.0);
        }
    }

    @Test
    public void badInputsAreRefused() throws Exception {
        try (CApiRunner r = runner()) {
            assertThrows(IllegalArgumentException.class, () -> r.forward(new byte[5], 1, meta.initialKernels(bytes)));
            assertThrows(IllegalArgumentException.class, () -> r.forward(new byte[meta.inputSize()], 1, new byte[0][]));
            SignSpsa trainer = new SignSpsa(0, 1, 8, new double[] {0.5, 0.5, 0.5, 0.5}, 16, meta.initialKernels(bytes));
            int d = meta.inputSize();
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new Training(r, meta, trainer, 0, new byte[2 * d], new int[] {1, 10}, true));
            assertTrue(e.getMessage(), e.getMessage().contains("label 10"));
            assertThrows(IllegalArgumentException.class, () -> new Training(r, meta, trainer, 0, new byte[d], new int[] {1, 2}, true));
            Training training = new Training(r, meta, trainer, 0, new byte[d], new int[] {1}, false);
            Selector velocity = Selector.forModel(meta, meta.initialKernels(bytes), "velocity", 0.2, 10, "random", 0.5, 0);
            assertThrows(IllegalArgumentException.class, () -> training.select(velocity, null, 0));
            assertThrows(IllegalArgumentException.class,
                    () -> Selector.forModel(meta, meta.initialKernels(bytes), "neq", 0.2, 10, "random", 0.5, 0));
        }
        byte[] truncated = java.util.Arrays.copyOf(bytes, bytes.length / 2);
        assertThrows(java.io.IOException.class, () -> Metadata.read(DATA.resolve("model.tflite"), truncated));
    }
}
