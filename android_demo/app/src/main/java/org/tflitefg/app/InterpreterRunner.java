package org.tflitefg.app;

import java.io.File;
import java.util.HashMap;
import java.util.Map;

import org.tensorflow.lite.Interpreter;
import org.tflitefg.core.ForwardRunner;
import org.tflitefg.core.Metadata;

/** ForwardRunner on the device: Interpreter.runSignature(..., "forward") with the kernels as inputs. */
final class InterpreterRunner implements ForwardRunner {
    private final Interpreter interpreter;
    private final Metadata meta;

    InterpreterRunner(File model, Metadata meta) {
        this.interpreter = new Interpreter(model, new Interpreter.Options().setNumThreads(2));
        this.meta = meta;
    }

    @Override
    public byte[] forward(byte[] x, int batch, byte[][] kernels) {
        int[] s = meta.inputShape;  // [H, W, C]: an image model
        if (s.length != 3) throw new IllegalArgumentException("this demo handles image inputs [H, W, C]");
        byte[][][][] xb = new byte[batch][s[0]][s[1]][s[2]];  // a typed array lets runSignature resize the batch
        int i = 0;
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < s[0]; h++)
                for (int w = 0; w < s[1]; w++)
                    for (int c = 0; c < s[2]; c++) xb[b][h][w][c] = x[i++];
        Map<String, Object> inputs = new HashMap<>();
        inputs.put(meta.inputName, xb);
        for (int t = 0; t < kernels.length; t++) {
            java.nio.ByteBuffer k = java.nio.ByteBuffer.allocateDirect(kernels[t].length).order(java.nio.ByteOrder.nativeOrder());
            k.put(kernels[t]).rewind();
            inputs.put(meta.trainable.get(t).inputName, k);
        }
        byte[][] logits = new byte[batch][meta.numClasses];
        Map<String, Object> outputs = new HashMap<>();
        outputs.put(meta.outputName, logits);
        interpreter.runSignature(inputs, outputs, "forward");
        byte[] flat = new byte[batch * meta.numClasses];
        for (int b = 0; b < batch; b++) System.arraycopy(logits[b], 0, flat, b * meta.numClasses, meta.numClasses);
        return flat;
    }

    @Override
    public void close() {
        interpreter.close();
    }
}
