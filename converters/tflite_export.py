"""Convert a calibrated QAT Keras model into one int8 .tflite with `forward` and `infer` signatures.

`forward(x, w_<layer>...)`: int8 batch + the int8 kernel of every trainable layer (native layout,
per-tensor scale fixed at conversion, zero point 0) -> int8 logits. Frozen weights stay constants, so
XNNPACK still runs the frozen ops. `infer(x)`: the same graph with every weight a constant.
Both are traced from the same QAT model, so they share every quantization parameter.
"""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np

from converters import qat
from converters.keras_compat import tf

X_NAME, LOGITS_NAME = "x", "logits"


def kernel_input_name(layer_name: str) -> str:
    return f"w_{layer_name}"


class _Signatures(tf.Module):
    def __init__(self, qat_model, trainable: Sequence[str]):
        super().__init__()
        self.model = qat_model
        self.trainable = list(trainable)
        x_spec = tf.TensorSpec([None, *qat_model.input_shape[1:]], tf.float32, name=X_NAME)
        self.kernel_specs, self.kernel_meta = [], []
        for name in self.trainable:
            layer = qat_model.get_layer("quant_" + name).layer
            keras_shape = tuple(getattr(layer, qat.kernel_attr(layer)).shape)
            native_shape = qat.keras_to_native(type(layer).__name__, np.zeros(keras_shape)).shape
            self.kernel_specs.append(tf.TensorSpec(native_shape, tf.float32, name=kernel_input_name(name)))
            self.kernel_meta.append((name, type(layer).__name__, keras_shape))
        self.forward = tf.function(self._forward, input_signature=[x_spec, *self.kernel_specs])
        self.infer = tf.function(self._infer, input_signature=[x_spec])

    def _forward(self, x, *kernels):
        overrides = {name: qat.native_to_keras(kind, k, shape)
                     for (name, kind, shape), k in zip(self.kernel_meta, kernels)}
        with qat.kernel_overrides(overrides):
            return {LOGITS_NAME: self.model(x, training=False)}

    def _infer(self, x):
        return {LOGITS_NAME: self.model(x, training=False)}


def convert_to_tflite(qat_model, trainable: Sequence[str]) -> bytes:
    """Both signatures, int8 in and out; no representative data needed (all ranges are fake-quant)."""
    module = _Signatures(qat_model, trainable)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "saved_model")
        tf.saved_model.save(module, path, signatures={
            "forward": module.forward.get_concrete_function(),
            "infer": module.infer.get_concrete_function(),
        })
        converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["forward", "infer"])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        return converter.convert()
