package org.tflitefg.app;

import java.io.File;
import java.lang.reflect.Array;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;
import org.tflitefg.core.ForwardRunner;
import org.tflitefg.core.Metadata;

/**
 * ForwardRunner on the device: Interpreter.runSignature with the kernels as inputs, for `forward`,
 * `prefix`/`suffix` and `probe` (the same signatures android_demo/desktop runs through the C API).
 * Batch inputs and outputs are typed arrays [batch, ...] so runSignature resizes the batch; the
 * kernels are direct ByteBuffers of their fixed size.
 */
final class InterpreterRunner implements ForwardRunner {
    private final Interpreter interpreter;
    private final Metadata meta;
    private final List<String> signatures;
    private final String[] cuts;  // prefix's outputs = suffix's feature inputs: h0, h1, ... in number order

    InterpreterRunner(File model, Metadata meta) {
        this.interpreter = new Interpreter(model, new Interpreter.Options().setNumThreads(2));
        this.meta = meta;
        this.signatures = Arrays.asList(interpreter.getSignatureKeys());
        if (!signatures.contains("forward"))
            throw new IllegalArgumentException(model + " has no 'forward' training signature: convert it with python tools/convert.py");
        cuts = hasPrefix() ? interpreter.getSignatureOutputs("prefix").clone() : new String[0];
        Arrays.sort(cuts, Comparator.comparingInt(n -> Integer.parseInt(n.substring(1))));
    }

    /** Per-example dimensions of a signature tensor (its shape without the batch). */
    private static int[] perExample(Tensor t) {
        int[] s = t.shape();
        return Arrays.copyOfRange(s, 1, s.length);
    }

    /** A [batch, dims...] byte array, holding `flat` row-major unless it is null. */
    private static Object shaped(byte[] flat, int batch, int[] dims) {
        int[] all = new int[dims.length + 1];
        all[0] = batch;
        System.arraycopy(dims, 0, all, 1, dims.length);
        Object a = Array.newInstance(byte.class, all);
        if (flat != null) copy(a, flat, new int[] {0}, true);
        return a;
    }

    /** Walks a nested byte array row-major, copying from `flat` (in) or into it (out). */
    private static void copy(Object a, byte[] flat, int[] pos, boolean in) {
        if (a instanceof byte[]) {
            byte[] row = (byte[]) a;
            if (in) System.arraycopy(flat, pos[0], row, 0, row.length);
            else System.arraycopy(row, 0, flat, pos[0], row.length);
            pos[0] += row.length;
            return;
        }
        for (int i = 0; i < Array.getLength(a); i++) copy(Array.get(a, i), flat, pos, in);
    }

    /** Runs signature `key`: batch inputs (flat, name -> bytes), the kernels, and the named outputs flat. */
    private Map<String, byte[]> run(String key, Map<String, byte[]> batchInputs, int batch, byte[][] kernels, String[] outputs) {
        Map<String, Object> in = new HashMap<>();
        for (Map.Entry<String, byte[]> e : batchInputs.entrySet())
            in.put(e.getKey(), shaped(e.getValue(), batch, perExample(interpreter.getInputTensorFromSignature(e.getKey(), key))));
        if (kernels != null) {
            if (kernels.length != meta.trainable.size())
                throw new IllegalArgumentException(kernels.length + " kernels given, the model trains " + meta.trainable.size());
            for (int t = 0; t < kernels.length; t++) {
                ByteBuffer k = ByteBuffer.allocateDirect(kernels[t].length).order(ByteOrder.nativeOrder());
                k.put(kernels[t]).rewind();
                in.put(meta.trainable.get(t).inputName, k);
            }
        }
        Map<String, Object> out = new HashMap<>();
        for (String name : outputs)
            out.put(name, shaped(null, batch, perExample(interpreter.getOutputTensorFromSignature(name, key))));
        interpreter.runSignature(in, out, key);
        Map<String, byte[]> flat = new HashMap<>();
        for (String name : outputs) {
            Object a = out.get(name);
            int n = batch;
            for (int d : perExample(interpreter.getOutputTensorFromSignature(name, key))) n *= d;
            byte[] f = new byte[n];
            copy(a, f, new int[] {0}, false);
            flat.put(name, f);
        }
        return flat;
    }

    @Override
    public byte[] forward(byte[] x, int batch, byte[][] kernels) {
        return run("forward", Map.of(meta.inputName, x), batch, kernels, new String[] {meta.outputName}).get(meta.outputName);
    }

    @Override
    public boolean hasPrefix() {
        return signatures.contains("prefix") && signatures.contains("suffix");
    }

    @Override
    public byte[][] prefix(byte[] x, int batch) {
        Map<String, byte[]> out = run("prefix", Map.of(meta.inputName, x), batch, null, cuts);
        byte[][] features = new byte[cuts.length][];
        for (int k = 0; k < cuts.length; k++) features[k] = out.get(cuts[k]);
        return features;
    }

    @Override
    public byte[] suffix(byte[][] features, int batch, byte[][] kernels) {
        Map<String, byte[]> in = new HashMap<>();
        for (int k = 0; k < cuts.length; k++) in.put(cuts[k], features[k]);
        return run("suffix", in, batch, kernels, new String[] {meta.outputName}).get(meta.outputName);
    }

    @Override
    public boolean hasProbe() {
        return signatures.contains("probe");
    }

    @Override
    public float[][] neuronOutputs(byte[] x, int batch, byte[][] kernels) {
        String[] names = new String[kernels.length];
        for (int t = 0; t < names.length; t++) names[t] = "n" + t;  // converters/graph_probe.neuron_output_name
        Map<String, byte[]> out = run("probe", Map.of(meta.inputName, x), batch, kernels, names);
        float[][] values = new float[names.length][];
        for (int t = 0; t < names.length; t++) {
            Tensor.QuantizationParams q = interpreter.getOutputTensorFromSignature(names[t], "probe").quantizationParams();
            byte[] v = out.get(names[t]);
            float zero = q.getZeroPoint(), scale = q.getScale();
            values[t] = new float[v.length];
            for (int e = 0; e < v.length; e++) values[t][e] = ((float) v[e] - zero) * scale;
        }
        return values;
    }

    @Override
    public void close() {
        interpreter.close();
    }
}
