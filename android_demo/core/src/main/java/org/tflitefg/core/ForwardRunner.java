package org.tflitefg.core;

/**
 * One forward pass of a converted model's `forward` signature: an int8 batch and the trainable int8
 * kernels in, int8 logits out. Android implements it with Interpreter.runSignature(..., "forward");
 * android_demo/desktop with the TFLite C API. Nothing in the engine is mutated between calls.
 */
public interface ForwardRunner extends AutoCloseable {
    /**
     * @param x       batch * prod(input_shape) int8 inputs, row-major
     * @param batch   examples in x
     * @param kernels the trainable tensors, metadata order, TFLite native layout, flat
     * @return batch * num_classes int8 logits
     */
    byte[] forward(byte[] x, int batch, byte[][] kernels);

    @Override
    void close();
}
