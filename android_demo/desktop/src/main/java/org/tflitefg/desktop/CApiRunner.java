package org.tflitefg.desktop;

import java.util.HashSet;
import java.util.Set;

import com.sun.jna.Pointer;
import org.tflitefg.core.ForwardRunner;
import org.tflitefg.core.Metadata;

/** ForwardRunner on the real TFLite C library through JNA: the model's `forward`, `prefix`/`suffix`
 *  and `probe` signatures, with the trainable kernels as inputs, and the `head_in` output of forward
 *  and suffix for the exact head (converter version 4). */
public final class CApiRunner implements ForwardRunner {
    private final TfLiteC c;
    private final Metadata meta;
    private final Set<String> kernelInputs = new HashSet<>();
    private final Pointer model;
    private final Pointer interpreter;
    private final Signature forward;
    private final Signature prefix;
    private final Signature suffix;
    private final Signature probe;
    private final String[] cuts;  // prefix's outputs = suffix's feature inputs: h0, h1, ... in number order
    private final boolean headInput;
    static final String HEAD_IN = "head_in";  // tflite_fg.model.HEAD_IN

    /** One signature runner: its input and output names, resized to the batch when it changes. */
    private final class Signature {
        final String key;
        final Pointer runner;
        final String[] inputs;
        final String[] outputs;
        int allocatedBatch = -1;

        Signature(String key, Pointer runner) {
            this.key = key;
            this.runner = runner;
            inputs = new String[(int) c.TfLiteSignatureRunnerGetInputCount(runner)];
            for (int i = 0; i < inputs.length; i++) inputs[i] = c.TfLiteSignatureRunnerGetInputName(runner, i);
            outputs = new String[(int) c.TfLiteSignatureRunnerGetOutputCount(runner)];
            for (int i = 0; i < outputs.length; i++) outputs[i] = c.TfLiteSignatureRunnerGetOutputName(runner, i);
        }

        /** Every input that is not a kernel has the batch as its first dimension. */
        void batch(int batch) {
            if (batch == allocatedBatch) return;
            for (String name : inputs) {
                if (kernelInputs.contains(name)) continue;
                Pointer t = c.TfLiteSignatureRunnerGetInputTensor(runner, name);
                int[] dims = new int[c.TfLiteTensorNumDims(t)];
                for (int d = 1; d < dims.length; d++) dims[d] = c.TfLiteTensorDim(t, d);
                dims[0] = batch;
                check(c.TfLiteSignatureRunnerResizeInputTensor(runner, name, dims, dims.length), key + ": resize " + name);
            }
            check(c.TfLiteSignatureRunnerAllocateTensors(runner), key + ": allocate tensors");
            allocatedBatch = batch;
        }

        void in(String name, byte[] data) {
            Pointer t = c.TfLiteSignatureRunnerGetInputTensor(runner, name);
            if (t == null) throw new IllegalArgumentException("'" + key + "' has no input " + name);
            long size = c.TfLiteTensorByteSize(t);
            if (size != data.length) throw new IllegalArgumentException(name + ": " + data.length + " bytes given, " + size + " expected");
            check(c.TfLiteTensorCopyFromBuffer(t, data, data.length), "copy into " + name);
        }

        void kernels(byte[][] kernels) {
            if (kernels.length != meta.trainable.size())
                throw new IllegalArgumentException(kernels.length + " kernels given, the model trains " + meta.trainable.size());
            for (int t = 0; t < kernels.length; t++) in(meta.trainable.get(t).inputName, kernels[t]);
        }

        void invoke() {
            check(c.TfLiteSignatureRunnerInvoke(runner), "invoke '" + key + "'");
        }

        Pointer out(String name) {
            return c.TfLiteSignatureRunnerGetOutputTensor(runner, name);
        }

        byte[] outBytes(String name) {
            Pointer t = out(name);
            byte[] data = new byte[(int) c.TfLiteTensorByteSize(t)];
            check(c.TfLiteTensorCopyToBuffer(t, data, data.length), "copy " + name);
            return data;
        }

        void close() {
            c.TfLiteSignatureRunnerDelete(runner);
        }
    }

    public CApiRunner(TfLiteC c, String modelPath, Metadata meta, int threads) {
        this.c = c;
        this.meta = meta;
        for (Metadata.Trainable t : meta.trainable) kernelInputs.add(t.inputName);
        model = c.TfLiteModelCreateFromFile(modelPath);
        if (model == null) throw new IllegalArgumentException(modelPath + ": the TFLite C API cannot load it (corrupt or truncated?)");
        Pointer options = c.TfLiteInterpreterOptionsCreate();
        c.TfLiteInterpreterOptionsSetNumThreads(options, threads);
        interpreter = c.TfLiteInterpreterCreate(model, options);
        c.TfLiteInterpreterOptionsDelete(options);
        if (interpreter == null) throw new IllegalStateException(modelPath + ": the TFLite C API cannot build an interpreter");
        forward = signature("forward");
        if (forward == null)
            throw new IllegalArgumentException(modelPath + " has no 'forward' training signature: convert it with python tools/convert.py");
        Signature p = signature("prefix"), s = signature("suffix");
        boolean split = p != null && s != null;
        prefix = split ? p : null;
        suffix = split ? s : null;
        if (!split && p != null) p.close();
        if (!split && s != null) s.close();
        probe = signature("probe");
        cuts = split ? p.outputs.clone() : new String[0];
        headInput = java.util.List.of(forward.outputs).contains(HEAD_IN)
                && (suffix == null || java.util.List.of(suffix.outputs).contains(HEAD_IN));
        java.util.Arrays.sort(cuts, java.util.Comparator.comparingInt(n -> Integer.parseInt(n.substring(1))));  // as FgModel
    }

    private Signature signature(String key) {
        Pointer r = c.TfLiteInterpreterGetSignatureRunner(interpreter, key);
        return r == null ? null : new Signature(key, r);
    }

    private static void check(int status, String what) {
        if (status != TfLiteC.OK) throw new IllegalStateException(what + " failed (TfLiteStatus " + status + ")");
    }

    @Override
    public byte[] forward(byte[] x, int batch, byte[][] kernels) {
        runForward(x, batch, kernels);
        return forward.outBytes(meta.outputName);
    }

    private void runForward(byte[] x, int batch, byte[][] kernels) {
        forward.batch(batch);
        forward.in(meta.inputName, x);
        forward.kernels(kernels);
        forward.invoke();
    }

    @Override
    public boolean hasHeadInput() {
        return headInput;
    }

    @Override
    public TensorQuant headInputQuant() {
        if (!headInput) return ForwardRunner.super.headInputQuant();
        TfLiteC.QuantizationParams q = c.TfLiteTensorQuantizationParams(forward.out(HEAD_IN));
        return new TensorQuant(q.scale, q.zero_point);
    }

    @Override
    public byte[][] forwardWithHead(byte[] x, int batch, byte[][] kernels) {
        if (!headInput) return ForwardRunner.super.forwardWithHead(x, batch, kernels);
        runForward(x, batch, kernels);
        return new byte[][] {forward.outBytes(meta.outputName), forward.outBytes(HEAD_IN)};
    }

    @Override
    public boolean hasPrefix() {
        return prefix != null;
    }

    @Override
    public byte[][] prefix(byte[] x, int batch) {
        if (prefix == null) return ForwardRunner.super.prefix(x, batch);
        prefix.batch(batch);
        prefix.in(meta.inputName, x);
        prefix.invoke();
        byte[][] out = new byte[cuts.length][];
        for (int k = 0; k < cuts.length; k++) out[k] = prefix.outBytes(cuts[k]);
        return out;
    }

    @Override
    public byte[] suffix(byte[][] features, int batch, byte[][] kernels) {
        if (suffix == null) return ForwardRunner.super.suffix(features, batch, kernels);
        runSuffix(features, batch, kernels);
        return suffix.outBytes(meta.outputName);
    }

    @Override
    public byte[][] suffixWithHead(byte[][] features, int batch, byte[][] kernels) {
        if (suffix == null || !headInput) return ForwardRunner.super.suffixWithHead(features, batch, kernels);
        runSuffix(features, batch, kernels);
        return new byte[][] {suffix.outBytes(meta.outputName), suffix.outBytes(HEAD_IN)};
    }

    private void runSuffix(byte[][] features, int batch, byte[][] kernels) {
        if (features.length != cuts.length)
            throw new IllegalArgumentException(features.length + " feature tensors given, 'suffix' reads " + cuts.length);
        suffix.batch(batch);
        for (int k = 0; k < cuts.length; k++) suffix.in(cuts[k], features[k]);
        suffix.kernels(kernels);
        suffix.invoke();
    }

    @Override
    public boolean hasProbe() {
        return probe != null;
    }

    @Override
    public float[][] neuronOutputs(byte[] x, int batch, byte[][] kernels) {
        if (probe == null) return ForwardRunner.super.neuronOutputs(x, batch, kernels);
        probe.batch(batch);
        probe.in(meta.inputName, x);
        probe.kernels(kernels);
        probe.invoke();
        float[][] out = new float[kernels.length][];
        for (int t = 0; t < kernels.length; t++) {
            String name = "n" + t;  // converters/graph_probe.neuron_output_name
            TfLiteC.QuantizationParams q = c.TfLiteTensorQuantizationParams(probe.out(name));
            byte[] v = probe.outBytes(name);
            float zero = q.zero_point;
            out[t] = new float[v.length];
            for (int e = 0; e < v.length; e++) out[t][e] = ((float) v[e] - zero) * q.scale;
        }
        return out;
    }

    @Override
    public void close() {
        for (Signature s : new Signature[] {forward, prefix, suffix, probe}) if (s != null) s.close();
        c.TfLiteInterpreterDelete(interpreter);
        c.TfLiteModelDelete(model);
    }
}
