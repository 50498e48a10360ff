package org.tflitefg.desktop;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.Map;

import org.tflitefg.core.Dataset;
import org.tflitefg.core.Metadata;
import org.tflitefg.core.SignSpsa;
import org.tflitefg.core.Training;

/**
 * Command-line trainer on the TFLite C API:
 * java ... org.tflitefg.desktop.TrainCli --lib=libtensorflowlite_c.so --data=build/java-data [--steps=500]
 * Loads <data>/model.tflite, trains its int8 kernels with Sign-m-SPSA and prints accuracy before/after.
 */
public final class TrainCli {
    private TrainCli() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> a = new HashMap<>(Map.of("steps", "500", "batch", "64", "m", "3", "eps", "8", "lr", "0.5",
                "body_lr_scale", "0.4", "precision", "w16", "seed", "0", "threads", "1", "log_every", "100"));
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (!arg.startsWith("--") || eq < 0) throw new IllegalArgumentException("arguments are --name=value, got " + arg);
            a.put(arg.substring(2, eq), arg.substring(eq + 1));
        }
        if (!a.containsKey("lib") || !a.containsKey("data"))
            throw new IllegalArgumentException("needs --lib=<libtensorflowlite_c.so> (python tools/fetch_assets.py --only=tflite_c) "
                                               + "and --data=<dir of tools/export_java_data.py>");
        Path dir = Paths.get(a.get("data"));
        Path modelPath = dir.resolve("model.tflite");
        byte[] modelBytes = Files.readAllBytes(modelPath);
        Metadata meta = Metadata.read(modelPath, modelBytes);
        Dataset data = Dataset.read(dir);
        int n = meta.trainable.size();
        double lr = Double.parseDouble(a.get("lr"));
        double[] lrs = new double[n];
        for (int t = 0; t < n; t++) lrs[t] = t == n - 1 ? lr : lr * Double.parseDouble(a.get("body_lr_scale"));
        long seed = Long.parseLong(a.get("seed"));
        SignSpsa trainer = new SignSpsa(seed, Integer.parseInt(a.get("m")), Double.parseDouble(a.get("eps")), lrs,
                a.get("precision").equals("w8") ? 8 : 16, meta.initialKernels(modelBytes));
        TfLiteC c = TfLiteC.load(a.get("lib"));
        try (CApiRunner runner = new CApiRunner(c, modelPath.toString(), meta, Integer.parseInt(a.get("threads")))) {
            Training training = new Training(runner, meta, trainer, seed);
            int steps = Integer.parseInt(a.get("steps")), batch = Integer.parseInt(a.get("batch"));
            int logEvery = Integer.parseInt(a.get("log_every"));
            System.out.printf("TFLite %s; %d training / %d test examples; %d trainable tensors%n", c.TfLiteVersion(),
                              data.yTrain.length, data.yTest.length, n);
            double before = training.accuracy(data.xTest, data.yTest, 256);
            System.out.printf("step 0: test accuracy %.4f%n", before);
            long t0 = System.nanoTime();
            for (int s = 1; s <= steps; s++) {
                double loss = training.step(data.xTrain, data.yTrain, batch);
                if (s % logEvery == 0 || s == steps)
                    System.out.printf("step %5d  loss %.4f  %.1f ms/step%n", s, loss, (System.nanoTime() - t0) / 1e6 / s);
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            double after = training.accuracy(data.xTest, data.yTest, 256);
            System.out.printf("done: test accuracy %.4f -> %.4f after %d steps, %d forward passes, %.1f s (%.1f ms/step)%n",
                              before, after, steps, trainer.forwardPasses(), seconds, 1000 * seconds / steps);
        }
    }
}
