package org.tflitefg.core;

/**
 * The engine behind the trainer: a converted model's signatures, run with the trainable int8
 * kernels as inputs, so nothing in the engine is mutated between calls. Android implements it with
 * Interpreter.runSignature; android_demo/desktop with the TFLite C API.
 *
 * Only `forward` is required. A model split at its first trainable op also has `prefix` (the frozen
 * layers) and `suffix` (the trainable ones, bit-identical to `forward` on prefix's outputs), which
 * lets Training run the frozen part once per data set; `probe` returns each trainable layer's output
 * for NEq velocity selection (tflite_fg/model.py). A model of converter version 4 whose last
 * trainable layer is dense also returns that layer's input `head_in` from forward and suffix, which the
 * exact head reads (ExactHead).
 */
public interface ForwardRunner extends AutoCloseable {
    /** A tensor's quantization: real = scale * (q - zeroPoint). */
    record TensorQuant(double scale, int zeroPoint) {}

    /**
     * @param x       batch * prod(input_shape) int8 inputs, row-major
     * @param batch   examples in x
     * @param kernels the trainable tensors, metadata order, TFLite native layout, flat
     * @return batch * num_classes int8 logits
     */
    byte[] forward(byte[] x, int batch, byte[][] kernels);

    /** True when the model has the `prefix` and `suffix` signatures. */
    default boolean hasPrefix() {
        return false;
    }

    /** `prefix`: the frozen layers' outputs h0, h1, ... of the batch, one flat int8 array per cut
     *  tensor (batch-major, so example i's features are the i-th equal slice). */
    default byte[][] prefix(byte[] x, int batch) {
        throw new UnsupportedOperationException("this model has no 'prefix' signature");
    }

    /** `suffix`: int8 logits from prefix outputs and the kernels (bit-identical to forward). */
    default byte[] suffix(byte[][] features, int batch, byte[][] kernels) {
        throw new UnsupportedOperationException("this model has no 'suffix' signature");
    }

    /** True when the model has the `probe` signature (converter version 3 or later). */
    default boolean hasProbe() {
        return false;
    }

    /** `probe`: each trainable layer's output, dequantized in float32 as (q - zero_point) * scale
     *  (FgModel.neuron_outputs), one flat (batch, ..., channels) array per trainable tensor. */
    default float[][] neuronOutputs(byte[] x, int batch, byte[][] kernels) {
        throw new UnsupportedOperationException("this model has no 'probe' signature: reconvert it with python tools/convert.py");
    }

    /** True when forward (and suffix, where the model has it) also return `head_in`. */
    default boolean hasHeadInput() {
        return false;
    }

    /** The quantization of the `head_in` output. */
    default TensorQuant headInputQuant() {
        throw new UnsupportedOperationException(ExactHead.NO_HEAD_INPUT);
    }

    /** forward's int8 logits and `head_in` [batch, ...] of the same call: {logits, headIn}. */
    default byte[][] forwardWithHead(byte[] x, int batch, byte[][] kernels) {
        throw new UnsupportedOperationException(ExactHead.NO_HEAD_INPUT);
    }

    /** suffix's int8 logits and `head_in` of the same call: {logits, headIn}. */
    default byte[][] suffixWithHead(byte[][] features, int batch, byte[][] kernels) {
        throw new UnsupportedOperationException(ExactHead.NO_HEAD_INPUT);
    }

    @Override
    void close();
}
