"""Quantization-aware conversion with tfmot, with trainable kernels quantized per tensor.

Trainable kernels get a symmetric per-tensor range fixed at conversion (zero point 0, narrow range
[-127, 127]): the paper's fixed-point scheme keeps Δw constant during training (method.md §1), and
per-tensor fake quant on a graph *input* is what the TFLite converter accepts (design.md: the
per-channel op needs Flex). Frozen layers keep tfmot's default (per-channel conv kernels).

`kernel_overrides` lets the same QAT Keras model be traced with a trainable kernel replaced by a
tensor in TFLite's native layout; that is how the `forward` signature gets kernels as inputs.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np

from converters import graph_surgery
from converters.keras_compat import keras, tf, tfmot

_quantizers = tfmot.quantization.keras.quantizers
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_registry as _registry,
)
_OVERRIDES: dict[str, "tf.Tensor"] = {}


def native_to_keras(layer_type: str, kernel, keras_shape: Sequence[int]):
    """TFLite stores CONV_2D filters OHWI, FULLY_CONNECTED weights [out, in] and DEPTHWISE_CONV_2D
    filters [1, H, W, C*mult]; Keras uses HWIO, [in, out] and [H, W, C, mult]. Feeding the native
    layout lets the converter cancel this transpose instead of inserting a TRANSPOSE op."""
    if layer_type == "Conv2D":
        return tf.transpose(kernel, (1, 2, 3, 0))
    if layer_type == "Dense":
        return tf.transpose(kernel, (1, 0))
    if layer_type == "DepthwiseConv2D":
        return tf.reshape(kernel, keras_shape)
    raise ValueError(f"unsupported trainable layer type {layer_type}")


def keras_to_native(layer_type: str, kernel: np.ndarray) -> np.ndarray:
    if layer_type == "Conv2D":
        return np.transpose(kernel, (3, 0, 1, 2))
    if layer_type == "Dense":
        return np.transpose(kernel, (1, 0))
    if layer_type == "DepthwiseConv2D":
        return kernel.reshape((1, kernel.shape[0], kernel.shape[1], -1))
    raise ValueError(f"unsupported trainable layer type {layer_type}")


@contextlib.contextmanager
def kernel_overrides(kernels: dict[str, "tf.Tensor"]) -> Iterator[None]:
    """While tracing, read these layers' kernels from the given (Keras-layout) tensors."""
    _OVERRIDES.update(kernels)
    try:
        yield
    finally:
        for name in kernels:
            _OVERRIDES.pop(name, None)


class FixedRangeKernelQuantizer(_quantizers.Quantizer):
    """Symmetric per-tensor 8-bit fake quant with a range fixed at conversion time."""

    def __init__(self, layer_name: str, abs_max: float):
        self.layer_name = layer_name
        self.abs_max = float(abs_max)

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        source = _OVERRIDES.get(self.layer_name, inputs)
        return tf.quantization.fake_quant_with_min_max_args(
            source, min=-self.abs_max, max=self.abs_max, num_bits=8, narrow_range=True)

    def get_config(self):
        return {"layer_name": self.layer_name, "abs_max": self.abs_max}

    def __eq__(self, other):
        return isinstance(other, FixedRangeKernelQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


class TrainableKernelConfig(_registry.Default8BitQuantizeConfig):
    """tfmot's default layer config with the kernel quantizer swapped for the fixed per-tensor one."""

    def __init__(self, weight_attrs, activation_attrs, quantize_output, layer_name: str, abs_max: float):
        super().__init__(weight_attrs, activation_attrs, quantize_output)
        self.layer_name, self.abs_max = layer_name, float(abs_max)
        self.weight_quantizer = FixedRangeKernelQuantizer(layer_name, abs_max)

    def get_config(self):
        return {**super().get_config(), "layer_name": self.layer_name, "abs_max": self.abs_max}


CUSTOM_OBJECTS = {
    "FixedRangeKernelQuantizer": FixedRangeKernelQuantizer,
    "TrainableKernelConfig": TrainableKernelConfig,
}


def kernel_attr(layer) -> str:
    return "depthwise_kernel" if isinstance(layer, keras.layers.DepthwiseConv2D) else "kernel"


def kernel_values(qat_model, name: str) -> tuple[str, np.ndarray]:
    """(layer type, current float kernel in Keras layout) of a trainable layer of the QAT model."""
    wrapper = qat_model.get_layer("quant_" + name)
    attr = kernel_attr(wrapper.layer)
    var = next(v for v in wrapper.weights if v.name.split("/")[-1].split(":")[0] == attr)
    return type(wrapper.layer).__name__, var.numpy()


def kernel_abs_max(layer, headroom: float) -> float:
    """Δw = abs_max/127 is fixed for the whole training run: headroom > 1 leaves room to grow."""
    w = np.abs(getattr(layer, kernel_attr(layer)).numpy()).max()
    return float(max(w, 1e-8) * headroom)


def _relu6_as_relu(layer):
    """tfmot's QuantizeAwareActivation rejects activation="relu6" on a conv/dense layer. In the int8
    graph ReLU6 is ReLU whose output range ends at 6 or below, so the QAT layer takes "relu" and
    calibrate() gives it the float model's (ReLU6) output range: the fake quant saturates where
    ReLU6 clips. Other layers are returned unchanged."""
    cfg = layer.get_config()
    if isinstance(layer, graph_surgery.WEIGHT_LAYERS) and cfg.get("activation") == "relu6":
        return type(layer).from_config({**cfg, "activation": "relu"})
    return layer


def quantize_model(model, trainable: Sequence[str], headroom: float = 1.0):
    """Annotate the trainable layers with the per-tensor config and apply tfmot's default scheme."""
    ranges = {name: kernel_abs_max(model.get_layer(name), headroom) for name in trainable}

    def annotate(layer):
        layer = _relu6_as_relu(layer)
        if layer.name in ranges:
            cfg = TrainableKernelConfig([kernel_attr(layer)], ["activation"], False, layer.name, ranges[layer.name])
            return tfmot.quantization.keras.quantize_annotate_layer(layer, quantize_config=cfg)
        return tfmot.quantization.keras.quantize_annotate_layer(layer) if not isinstance(layer, keras.layers.InputLayer) else layer

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS):
        qat = tfmot.quantization.keras.quantize_apply(annotated)
    return qat, ranges


def _range_vars(qat_model) -> dict[str, list]:
    """Activation-range variables of each QAT layer, keyed by the wrapped float layer's name."""
    out: dict[str, list] = {}
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", None)
        key = inner.name if inner is not None else layer.name
        pairs = [v for v in layer.weights if v.name.split("/")[-1].split(":")[0].endswith(("_min", "_max"))
                 and "kernel" not in v.name]
        if pairs:
            out[key] = pairs
    return out


# TFLite's int8 pooling kernels keep the input scale; calibrating their output separately makes the
# QAT model round on a finer grid than the engine can (seen: up to 5 LSB at ResNet-8's logits).
SAME_SCALE_LAYERS = (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)


def calibrate(qat_model, float_model, representative: np.ndarray, input_range: tuple[float, float] | None = None,
              batch_size: int = 64, output_headroom: float = 1.0) -> None:
    """Post-training calibration of the QAT model's activation ranges from the float model's
    activations on representative data (tfmot's EMA from the initial ±6 would need thousands of
    steps). One training-mode call first sets the frozen kernels' LastValue ranges.

    output_headroom > 1 widens the logits' range: it is fixed at conversion from the starting
    head, and training grows the margins until the int8 logits sit at the rails, where a forward
    loss stops seeing any change (docs/benchmarks.md, vww-faces FT)."""
    qat_model(representative[:batch_size], training=True)
    names = [l.name for l in float_model.layers[1:]]
    probe = keras.Model(float_model.inputs, [float_model.get_layer(n).output for n in names])
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for i in range(0, len(representative), batch_size):
        outs = probe(representative[i:i + batch_size], training=False)
        for n, o in zip(names, outs):
            o = o.numpy()
            lo[n], hi[n] = min(lo[n], float(o.min())), max(hi[n], float(o.max()))
    out_name = float_model.layers[-1].name
    lo[out_name], hi[out_name] = lo[out_name] * output_headroom, hi[out_name] * output_headroom
    in_name = float_model.layers[0].name
    lo[in_name], hi[in_name] = (input_range if input_range is not None
                                else (float(representative.min()), float(representative.max())))
    for layer in float_model.layers[1:]:
        if isinstance(layer, SAME_SCALE_LAYERS):
            src = layer._inbound_nodes[0].inbound_layers
            lo[layer.name], hi[layer.name] = lo[src.name], hi[src.name]
    for name, variables in _range_vars(qat_model).items():
        key = in_name if name.startswith("quantize_layer") else name
        if key not in lo:
            raise ValueError(f"cannot calibrate QAT layer {name!r}: no float activation of that name")
        for v in variables:
            is_min = v.name.split("/")[-1].split(":")[0].endswith("_min")
            v.assign(min(lo[key], 0.0) if is_min else max(hi[key], 0.0))
