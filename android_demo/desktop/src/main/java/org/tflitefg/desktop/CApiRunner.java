package org.tflitefg.desktop;

import com.sun.jna.Pointer;
import org.tflitefg.core.ForwardRunner;
import org.tflitefg.core.Metadata;

/** ForwardRunner on the real TFLite C library: the model's `forward` signature through JNA. */
public final class CApiRunner implements ForwardRunner {
    private final TfLiteC c;
    private final Metadata meta;
    private final Pointer model;
    private final Pointer interpreter;
    private final Pointer runner;
    private int allocatedBatch = -1;

    public CApiRunner(TfLiteC c, String modelPath, Metadata meta, int threads) {
        this.c = c;
        this.meta = meta;
        model = c.TfLiteModelCreateFromFile(modelPath);
        if (model == null) throw new IllegalArgumentException(modelPath + ": the TFLite C API cannot load it (corrupt or truncated?)");
        Pointer options = c.TfLiteInterpreterOptionsCreate();
        c.TfLiteInterpreterOptionsSetNumThreads(options, threads);
        interpreter = c.TfLiteInterpreterCreate(model, options);
        c.TfLiteInterpreterOptionsDelete(options);
        if (interpreter == null) throw new IllegalStateException(modelPath + ": the TFLite C API cannot build an interpreter");
        runner = c.TfLiteInterpreterGetSignatureRunner(interpreter, "forward");
        if (runner == null)
            throw new IllegalArgumentException(modelPath + " has no 'forward' training signature: convert it with python tools/convert.py");
    }

    private static void check(int status, String what) {
        if (status != TfLiteC.OK) throw new IllegalStateException(what + " failed (TfLiteStatus " + status + ")");
    }

    private void copyIn(String name, byte[] data) {
        Pointer t = c.TfLiteSignatureRunnerGetInputTensor(runner, name);
        if (t == null) throw new IllegalArgumentException("'forward' has no input " + name);
        long size = c.TfLiteTensorByteSize(t);
        if (size != data.length) throw new IllegalArgumentException(name + ": " + data.length + " bytes given, " + size + " expected");
        check(c.TfLiteTensorCopyFromBuffer(t, data, data.length), "copy into " + name);
    }

    @Override
    public byte[] forward(byte[] x, int batch, byte[][] kernels) {
        if (kernels.length != meta.trainable.size())
            throw new IllegalArgumentException(kernels.length + " kernels given, the model trains " + meta.trainable.size());
        if (batch != allocatedBatch) {
            int[] dims = new int[meta.inputShape.length + 1];
            dims[0] = batch;
            System.arraycopy(meta.inputShape, 0, dims, 1, meta.inputShape.length);
            check(c.TfLiteSignatureRunnerResizeInputTensor(runner, meta.inputName, dims, dims.length), "resize input");
            check(c.TfLiteSignatureRunnerAllocateTensors(runner), "allocate tensors");
            allocatedBatch = batch;
        }
        copyIn(meta.inputName, x);
        for (int t = 0; t < kernels.length; t++) copyIn(meta.trainable.get(t).inputName, kernels[t]);
        check(c.TfLiteSignatureRunnerInvoke(runner), "invoke 'forward'");
        Pointer out = c.TfLiteSignatureRunnerGetOutputTensor(runner, meta.outputName);
        byte[] logits = new byte[batch * meta.numClasses];
        check(c.TfLiteTensorCopyToBuffer(out, logits, logits.length), "copy logits");
        return logits;
    }

    @Override
    public void close() {
        c.TfLiteSignatureRunnerDelete(runner);
        c.TfLiteInterpreterDelete(interpreter);
        c.TfLiteModelDelete(model);
    }
}
