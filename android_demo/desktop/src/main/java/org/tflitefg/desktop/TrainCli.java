package org.tflitefg.desktop;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.Map;

import org.tflitefg.core.Dataset;
import org.tflitefg.core.ExactHead;
import org.tflitefg.core.Metadata;
import org.tflitefg.core.Selector;
import org.tflitefg.core.SignSpsa;
import org.tflitefg.core.Training;

/**
 * Command-line trainer on the TFLite C API:
 * java ... org.tflitefg.desktop.TrainCli --lib=libtensorflowlite_c.so --data=build/java-data [--steps=500]
 *     [--cache=true] [--select=none|static|random|magnitude|velocity --budget=0.274 --select_every=250]
 *     [--exact_head=true --head_optimizer=adam|sgd --head_lr=0.3] [--grad_average=0.9] [--block_coordinate=true]
 * Loads <data>/model.tflite, trains its int8 kernels with Sign-m-SPSA and prints accuracy before/after.
 * --cache runs the frozen prefix once for the data set (bit-identical, faster); --select trains only
 * the neurons a strategy picks under the budget (velocity watches data.json's probe batch);
 * --exact_head trains the dense head by its exact gradient (one more pass a step, the model's
 * `head_in` output) by Adam (--head_lr in int8 LSBs per step, default 0.3, w8 1) or SGD (--head_lr a float
 * rate, default 0.3), FF on the rest ("FF + exact head", not FF);
 * --grad_average averages the gradient estimates; --block_coordinate perturbs one tensor per probe,
 * cycling (tools/train.py's flags of the same names, with the same automatic defaults: the exact head by
 * Adam, SGD with a re-selecting --select; block-coordinate probes where the exact head trains a head and FF
 * a body, with --lr 0.5 times the number of probed tensors).
 */
public final class TrainCli {
    private TrainCli() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> a = new HashMap<>(Map.of("steps", "500", "batch", "64", "m", "3", "eps", "8", "lr", "",
                "body_lr_scale", "0.4", "precision", "w16", "seed", "0", "threads", "1", "log_every", "100"));
        a.putAll(Map.of("cache", "true", "select", "none", "budget", "0.274", "select_every", "250", "select_init", "random",
                        "select_mu", "0.5", "exact_head", "false", "head_lr", "", "grad_average", "0",
                        "block_coordinate", ""));
        a.put("head_optimizer", "");
        java.util.Set<String> known = new java.util.TreeSet<>(a.keySet());
        known.addAll(java.util.List.of("lib", "data"));
        java.util.Set<String> given = new java.util.HashSet<>();
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (!arg.startsWith("--") || eq < 0) throw new IllegalArgumentException("arguments are --name=value, got " + arg);
            String name = arg.substring(2, eq);
            if (!known.contains(name)) throw new IllegalArgumentException("unknown flag --" + name + "; known: " + known);
            a.put(name, arg.substring(eq + 1));
            given.add(name);
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
        boolean exactHead = Boolean.parseBoolean(a.get("exact_head"));
        for (String f : java.util.List.of("head_lr", "head_optimizer"))
            if (!exactHead && given.contains(f))
                throw new IllegalArgumentException("--" + f + " only applies with --exact_head=true (plain FF trains the head with --lr)");
        boolean reselecting = a.get("select").equals("random") || a.get("select").equals("velocity");
        String headOptimizer = !a.get("head_optimizer").isEmpty() ? a.get("head_optimizer") : reselecting ? "sgd" : "adam";
        if (reselecting && headOptimizer.equals("adam"))
            throw new IllegalArgumentException("--head_optimizer=adam keeps its moments over every weight, so after a --select="
                    + a.get("select") + " re-selection the weights it froze would keep moving: use --select=static or magnitude");
        if (!headOptimizer.equals("adam") && !headOptimizer.equals("sgd"))
            throw new IllegalArgumentException("--head_optimizer must be adam or sgd, got " + headOptimizer);
        double headLr = a.get("head_lr").isEmpty()  // config.default_head_lr
                ? (headOptimizer.equals("adam") && a.get("precision").equals("w8") ? 1.0 : 0.3)
                : Double.parseDouble(a.get("head_lr"));
        // tools/train.py's automatic defaults: block-coordinate probes where the exact head trains a head and
        // FF a body, and --lr 0.5 times the number of probed tensors with them (config.default_probe_lr)
        boolean block = a.get("block_coordinate").isEmpty() ? exactHead && n > 1 : Boolean.parseBoolean(a.get("block_coordinate"));
        double lr = !a.get("lr").isEmpty() ? Double.parseDouble(a.get("lr")) : 0.5 * (block ? n - (exactHead ? 1 : 0) : 1);
        double[] lrs = new double[n];
        for (int t = 0; t < n; t++) lrs[t] = lr * Double.parseDouble(a.get("body_lr_scale"));
        lrs[n - 1] = exactHead ? headLr : lr;  // tools/train.py's _config
        long seed = Long.parseLong(a.get("seed"));
        TfLiteC c = TfLiteC.load(a.get("lib"));
        try (CApiRunner runner = new CApiRunner(c, modelPath.toString(), meta, Integer.parseInt(a.get("threads")))) {
            SignSpsa.Options options = new SignSpsa.Options().gradAverage(Double.parseDouble(a.get("grad_average")))
                    .blockCoordinate(block);
            if (exactHead) options.exactHead(ExactHead.Quant.of(meta, runner)).headAdam(headOptimizer.equals("adam"));
            SignSpsa trainer = new SignSpsa(seed, Integer.parseInt(a.get("m")), Double.parseDouble(a.get("eps")), lrs,
                    a.get("precision").equals("w8") ? 8 : 16, meta.initialKernels(modelBytes), options);
            Training training = new Training(runner, meta, trainer, seed, data.xTrain, data.yTrain,
                                             Boolean.parseBoolean(a.get("cache")));
            Selector selector = null;
            if (!a.get("select").equals("none")) {
                selector = Selector.forModel(meta, meta.initialKernels(modelBytes), a.get("select"),
                        Double.parseDouble(a.get("budget")), Integer.parseInt(a.get("select_every")), a.get("select_init"),
                        Double.parseDouble(a.get("select_mu")), seed);
                if (selector.needsOutputs() && data.probe.length == 0)
                    throw new IllegalArgumentException("--select=velocity needs data.json's probe_indices: re-export with tools/export_java_data.py");
                training.select(selector, data.probeInputs(meta.inputSize()), data.probe.length);
            }
            int steps = Integer.parseInt(a.get("steps")), batch = Integer.parseInt(a.get("batch"));
            int logEvery = Integer.parseInt(a.get("log_every"));
            System.out.printf("TFLite %s; %d training / %d test examples; %d trainable tensors; %s; %s%n", c.TfLiteVersion(),
                              data.yTrain.length, data.yTest.length, n,
                              training.cached() ? "frozen prefix cached" : "whole forward every pass",
                              exactHead ? "FF + exact head (" + headOptimizer + " at " + headLr + ")" : "FF");
            double before = training.accuracy(data.xTest, data.yTest, 256);
            System.out.printf("step 0: test accuracy %.4f%n", before);
            long t0 = System.nanoTime();
            for (int s = 1; s <= steps; s++) {
                double loss = training.step(batch);
                if (s % logEvery == 0 || s == steps)
                    System.out.printf("step %5d  loss %.4f  %.1f ms/step%n", s, loss, (System.nanoTime() - t0) / 1e6 / s);
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            if (selector != null)
                for (Selector.Round r : selector.history())
                    System.out.printf("selection at step %d by %s: %d of %d kernel weights, neurons per layer %s%n", r.step, r.by,
                                      r.params, selector.layout().totalParams(), java.util.Arrays.toString(r.perLayer));
            double after = training.accuracy(data.xTest, data.yTest, 256);
            System.out.printf("done: test accuracy %.4f -> %.4f after %d steps, %d forward passes, %.1f s (%.1f ms/step)%n",
                              before, after, steps, trainer.forwardPasses(), seconds, 1000 * seconds / steps);
        }
    }
}
