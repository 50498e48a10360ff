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

import org.junit.Test;
import org.tflitefg.core.Export;
import org.tflitefg.core.Json;
import org.tflitefg.core.Dataset;
import org.tflitefg.core.Metadata;
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

    static byte[] modelBytes() throws Exception {
        return Files.readAllBytes(DATA.resolve("model.tflite"));
    }

    static CApiRunner runner(Metadata meta) {
        return new CApiRunner(TfLiteC.load(LIB), DATA.resolve("model.tflite").toString(), meta, 1);
    }

    @Test
    @SuppressWarnings("unchecked")
    public void logitsEqualPythonLiteRT() throws Exception {
        byte[] bytes = modelBytes();
        Metadata meta = Metadata.read(DATA.resolve("model.tflite"), bytes);
        Dataset data = Dataset.read(DATA);
        Map<String, Object> expected = expected();
        int n = ((Number) expected.get("n")).intValue(), d = meta.inputSize();
        byte[] x = new byte[n * d];
        System.arraycopy(data.xTest, 0, x, 0, n * d);
        try (CApiRunner r = runner(meta)) {
            byte[] logits = r.forward(x, n, meta.initialKernels(bytes));
            // The C library applies no XNNPACK delegate by default: its logits are the builtin kernels'
            // (Python's engine="builtin"), bit for bit; XNNPACK's rounding differs by a few LSB.
            List<Object> want = (List<Object>) expected.get("builtin");
            int[] got = new int[logits.length], w = new int[want.size()];
            for (int i = 0; i < got.length; i++) got[i] = logits[i];
            for (int i = 0; i < w.length; i++) w[i] = ((Number) want.get(i)).intValue();
            assertArrayEquals(w, got);
        }
    }

    @Test
    @SuppressWarnings("unchecked")
    public void trainingRunImprovesAccuracyAndReproducesPythonBitForBit() throws Exception {
        byte[] bytes = modelBytes();
        Metadata meta = Metadata.read(DATA.resolve("model.tflite"), bytes);
        Dataset data = Dataset.read(DATA);
        Map<String, Object> run = (Map<String, Object>) expected().get("run");
        int n = meta.trainable.size(), steps = ((Number) run.get("steps")).intValue();
        double[] lr = new double[n];
        for (int t = 0; t < n; t++) lr[t] = ((Number) run.get(t == n - 1 ? "lr_head" : "lr_body")).doubleValue();
        SignSpsa trainer = new SignSpsa(0, 3, 8, lr, 16, meta.initialKernels(bytes));
        try (CApiRunner r = runner(meta)) {
            Training training = new Training(r, meta, trainer, 0);
            double before = training.accuracy(data.xTest, data.yTest, 256);
            for (int s = 0; s < steps; s++) training.step(data.xTrain, data.yTrain, 64);
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

    @Test
    public void badInputsAreRefused() throws Exception {
        byte[] bytes = modelBytes();
        Metadata meta = Metadata.read(DATA.resolve("model.tflite"), bytes);
        try (CApiRunner r = runner(meta)) {
            assertThrows(IllegalArgumentException.class, () -> r.forward(new byte[5], 1, meta.initialKernels(bytes)));
            assertThrows(IllegalArgumentException.class, () -> r.forward(new byte[meta.inputSize()], 1, new byte[0][]));
        }
        byte[] truncated = java.util.Arrays.copyOf(bytes, bytes.length / 2);
        assertThrows(java.io.IOException.class, () -> Metadata.read(DATA.resolve("model.tflite"), truncated));
    }
}
