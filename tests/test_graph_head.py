"""graph_head on the real converted ResNet-8: head_in is added once, only for a dense head."""
from __future__ import annotations

import pytest

from converters import graph_head
from tflite_fg.model import HEAD_IN, FgModel


def test_converted_model_exposes_head_in_and_refuses_a_second_one(block_model_path):
    model = FgModel(block_model_path)
    for key in ("forward", "suffix", "probe"):
        assert HEAD_IN in model.interpreter.get_signature_list()[key]["outputs"]
    assert HEAD_IN not in model.interpreter.get_signature_list()["infer"]["outputs"]
    with pytest.raises(ValueError, match="already has"):
        graph_head.add_head_input(model.model_bytes, model.meta.trainable[-1].input_name)


def test_a_conv_kernel_is_not_a_head(block_model_path):
    model = FgModel(block_model_path)
    with pytest.raises(ValueError, match="FULLY_CONNECTED"):
        graph_head.add_head_input(model.model_bytes, model.meta.trainable[0].input_name)
    with pytest.raises(ValueError, match="no signature takes"):
        graph_head.add_head_input(model.model_bytes, "w_nonexistent")


def test_a_dense_layer_that_does_not_write_the_logits_gets_no_head_input(tmp_path):
    """A trainable dense layer followed by a frozen one (or with a fused ReLU) is not the head: the
    closed-form gradient would be wrong there, so no head_in, and the exact head is refused."""
    import numpy as np

    from converters import pipeline
    from converters.keras_compat import keras

    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))
    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    path = tmp_path / "m.tflite"
    cfg = pipeline.ConvertConfig(trainable=["hidden"], input_range=(-5.0, 5.0))
    model_bytes, meta = pipeline.convert_keras_model(model, cfg, x)
    assert not graph_head.produces_logits(model_bytes, meta.trainable[-1].input_name)
    pipeline.save(path, model_bytes, meta)
    fg = FgModel(path)
    assert not fg.has_head_input
    with pytest.raises(ValueError, match="head_in"):
        fg.head_quant()
    with pytest.raises(ValueError, match="does not write"):
        graph_head.add_head_input(model_bytes, meta.trainable[-1].input_name)
