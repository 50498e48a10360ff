"""Every way of running a step's forward passes gives its reference's logits, bit for bit."""
import numpy as np
import pytest

from tflite_fg import engines
from tflite_fg.model import FgModel


@pytest.fixture(scope="module")
def step_inputs(block_model_path, fewshot_task):
    model = FgModel(block_model_path)
    rng = np.random.default_rng(0)
    candidates = [model.initial_params()] + [
        [np.clip(p.astype(np.int16) + rng.integers(-8, 9, p.shape), -127, 127).astype(np.int8)
         for p in model.initial_params()] for _ in range(3)]
    return model.quantize_input(fewshot_task.x_test[:48]), candidates


@pytest.mark.parametrize("name", sorted(set(engines.OPTIONS) - set(engines.REFERENCE.values())))
def test_option_matches_its_reference_bit_for_bit(name, block_model_path, step_inputs):
    xq, candidates = step_inputs
    option = engines.OPTIONS[name]
    got = engines.build(name, block_model_path, num_threads=1)(xq, candidates)
    if name == "recreate-xnnpack":
        # XNNPACK runs every op here (trainable ones too), so no other option shares its rounding:
        # it agrees with the builtin reference to a few output LSB (measured on 200 test images:
        # mean |d| 1.15 LSB, max 8, argmax 98.5% equal; one feature LSB moves a logit ~7 LSB)
        ref = engines.build("signature-builtin", block_model_path, num_threads=1)(xq, candidates)
        for g, r in zip(got, ref):
            d = np.abs(g.astype(int) - r.astype(int))
            assert d.mean() <= 2.0 and d.max() <= 16
            assert (g.argmax(1) == r.argmax(1)).mean() >= 0.9
        return
    ref = engines.build(engines.REFERENCE[option.engine], block_model_path, num_threads=1)(xq, candidates)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)
    assert not np.array_equal(got[0], got[1])  # the candidates really reached the engine


def test_inplace_writes_do_not_touch_the_models_bytes(block_model_path, step_inputs):
    xq, candidates = step_inputs
    model = FgModel(block_model_path)
    before = bytes(model.model_bytes)
    engines.OPTIONS["inplace-builtin"].build(model, 1)(xq, candidates[1:])
    assert model.model_bytes == before
    np.testing.assert_array_equal(model.infer(xq), model.forward(xq, model.initial_params()))


def test_unknown_option_is_named(block_model_path):
    with pytest.raises(ValueError, match="choose one of"):
        engines.build("gpu", block_model_path)
