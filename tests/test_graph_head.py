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
