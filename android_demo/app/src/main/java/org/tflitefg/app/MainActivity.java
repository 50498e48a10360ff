package org.tflitefg.app;

import android.app.Activity;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.widget.Button;
import android.widget.LinearLayout;
import android.widget.ScrollView;
import android.widget.TextView;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import org.tflitefg.core.Checkpoint;
import org.tflitefg.core.Dataset;
import org.tflitefg.core.Export;
import org.tflitefg.core.Metadata;
import org.tflitefg.core.SignSpsa;
import org.tflitefg.core.Training;

/**
 * A thin layer over core/: pick one of the bundled converted models with its labelled samples
 * (asset folders written by python tools/export_java_data.py --out=android_demo/app/src/main/assets/<name>),
 * train on the device with progress, evaluate, save/restore the trained tensors, export the deployable model.
 */
public final class MainActivity extends Activity {
    private static final int STEPS_PER_TAP = 200;
    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final Handler ui = new Handler(Looper.getMainLooper());
    private TextView log;
    private File modelFile;
    private byte[] modelBytes;
    private String metadataJson;
    private Metadata meta;
    private Dataset data;
    private SignSpsa trainer;
    private Training training;
    private InterpreterRunner runner;
    private String bundle;

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        LinearLayout root = new LinearLayout(this);
        root.setOrientation(LinearLayout.VERTICAL);
        log = new TextView(this);
        List<String> bundles = bundles();
        for (String b : bundles) {  // pick a bundled converted model
            Button pick = new Button(this);
            pick.setText("Model: " + b);
            pick.setOnClickListener(v -> worker.execute(() -> load(b)));
            root.addView(pick);
        }
        for (String label : new String[] {"Train " + STEPS_PER_TAP + " steps", "Evaluate", "Save", "Restore", "Export"}) {
            Button b = new Button(this);
            b.setText(label);
            b.setOnClickListener(v -> run(label));
            root.addView(b);
        }
        ScrollView scroll = new ScrollView(this);
        scroll.addView(log);
        root.addView(scroll);
        setContentView(root);
        if (bundles.isEmpty()) say("no bundled model: run python tools/export_java_data.py --out=android_demo/app/src/main/assets/<name>");
        else worker.execute(() -> load(bundles.get(0)));
    }

    /** Asset folders holding a model.tflite (each written by tools/export_java_data.py). */
    private List<String> bundles() {
        List<String> out = new ArrayList<>();
        try {
            for (String dir : getAssets().list(""))
                if (Arrays.asList(getAssets().list(dir)).contains("model.tflite")) out.add(dir);
        } catch (IOException e) {
            say("cannot list the bundled models: " + e.getMessage());
        }
        return out;
    }

    private void say(String line) {
        ui.post(() -> log.append(line + "\n"));
    }

    private byte[] asset(String name) throws IOException {
        try (InputStream in = getAssets().open(name)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) out.write(buf, 0, n);
            return out.toByteArray();
        }
    }

    /** Loads bundle `name` (its model, metadata and labelled samples) and starts a fresh run on it. */
    private void load(String name) {
        try {
            if (runner != null) runner.close();
            training = null;
            bundle = name;
            modelBytes = asset(name + "/model.tflite");
            metadataJson = new String(asset(name + "/model.tflite.json"), StandardCharsets.UTF_8);
            meta = Metadata.parse(metadataJson);
            if (!meta.modelSha256.equals(Metadata.sha256(modelBytes)))
                throw new IOException(name + "/model.tflite does not match its metadata (sha256): re-export the bundle");
            modelFile = new File(getFilesDir(), name + ".tflite");
            Files.write(modelFile.toPath(), modelBytes);
            data = Dataset.parse(new String(asset(name + "/data.json"), StandardCharsets.UTF_8), asset(name + "/data.bin"));
            int n = meta.trainable.size();
            double[] lr = new double[n];
            for (int t = 0; t < n; t++) lr[t] = t == n - 1 ? 0.5 : 0.2;  // the demo's recipe
            trainer = new SignSpsa(0, 3, 8, lr, 16, meta.initialKernels(modelBytes));
            runner = new InterpreterRunner(modelFile, meta);
            training = new Training(runner, meta, trainer, 0, data.xTrain, data.yTrain, true);  // frozen prefix once
            say(String.format("%s: %d trainable tensors; %d labelled samples, %d test; %s", name,
                              n, data.yTrain.length, data.yTest.length,
                              training.cached() ? "frozen layers cached" : "whole forward every pass"));
            say(String.format("zero-shot test accuracy %.4f", training.accuracy(data.xTest, data.yTest, 100)));
        } catch (Exception e) {
            say("cannot load the bundled model or data " + name + ": " + e.getMessage());
        }
    }

    private void run(String action) {
        worker.execute(() -> {
            try {
                if (training == null) throw new IllegalStateException("the model did not load");
                File ckpt = new File(getFilesDir(), bundle + ".ckpt");
                if (action.startsWith("Train")) {
                    long t0 = System.nanoTime();
                    for (int s = 1; s <= STEPS_PER_TAP; s++) {
                        double loss = training.step(64);
                        if (s % 20 == 0) say(String.format("step %d  loss %.4f", trainer.step(), loss));
                    }
                    say(String.format("%.0f ms/step", (System.nanoTime() - t0) / 1e6 / STEPS_PER_TAP));
                } else if (action.equals("Evaluate")) {
                    say(String.format("test accuracy %.4f", training.accuracy(data.xTest, data.yTest, 100)));
                } else if (action.equals("Save")) {
                    Checkpoint.save(ckpt.toPath(), meta.modelSha256, trainer);
                    say("saved step " + trainer.step());
                } else if (action.equals("Restore")) {
                    Checkpoint.restore(ckpt.toPath(), meta.modelSha256, trainer);
                    say("restored step " + trainer.step());
                } else {
                    File out = new File(getExternalFilesDir(null), bundle + "-trained.tflite");
                    Export.exportModel(out.toPath(), modelBytes, metadataJson, meta, trainer.engine());
                    say("exported " + out);
                }
            } catch (Exception e) {
                say(action + " failed: " + e.getMessage());
            }
        });
    }

    @Override
    protected void onDestroy() {
        worker.shutdown();
        if (runner != null) runner.close();
        super.onDestroy();
    }
}
