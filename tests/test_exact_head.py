"""The exact head on the real converted ResNet-8 and real Fashion-MNIST images: its integer gradient
against the float formula, the head_in outputs, training that improves, bit-exact repetition."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tflite_fg import build, exact_head, objective, trainer
from tflite_fg.config import TrainConfig
from tflite_fg.model import FgModel


@pytest.fixture(scope="module")
def block_model(block_model_path):
    return FgModel(block_model_path)


@pytest.fixture(scope="module")
def head_model(head_model_path):
    return FgModel(head_model_path)


def test_softmax_error_is_softmax_minus_onehot():
    rng = np.random.default_rng(0)
    logits = rng.integers(-128, 128, (64, 10)).astype(np.int8)
    labels = rng.integers(0, 10, 64)
    scale = 0.1
    e = exact_head.softmax_error(logits, labels, exact_head.softmax_table(scale))
    z = logits.astype(np.float64) * scale
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(64), labels] -= 1
    assert np.abs(e / 2.0 ** exact_head.ERROR_BITS - p).max() < 2e-4
    assert e.dtype == np.int64


def test_head_outputs_agree_with_forward(block_model, fewshot_task):
    xq = block_model.quantize_input(fewshot_task.x_support[:32])
    params = block_model.initial_params()
    logits, head_in = block_model.head_forward(block_model.features(xq), params)
    np.testing.assert_array_equal(logits, block_model.forward(xq, params))
    logits_full, head_in_full = block_model.head_forward((xq,), params, cached=False)
    np.testing.assert_array_equal(logits, logits_full)
    np.testing.assert_array_equal(head_in, head_in_full)
    assert head_in.dtype == np.int8 and head_in.reshape(32, -1).shape[1] == params[-1].shape[1]


@pytest.mark.parametrize("which", ["block", "head"])
def test_integer_gradient_matches_the_float_formula(which, block_model, head_model, fewshot_task):
    """dL/dW / s_w^2 = (softmax - onehot)^T x / (B s_w), from the dequantized engine values."""
    model = block_model if which == "block" else head_model
    xq = model.quantize_input(fewshot_task.x_support[:64])
    y = fewshot_task.y_support[:64]
    params = model.initial_params()
    logits, head_in = model.head_forward(model.features(xq), params)
    quant = model.head_quant()
    g = exact_head.head_gradient(exact_head.HeadBatch(logits, head_in, y, 0.0), quant,
                                 exact_head.softmax_table(quant.output_scale))
    z = model.dequantize_logits(logits).astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    x = (head_in.reshape(len(y), -1).astype(np.float64) - quant.input_zero_point) * quant.input_scale
    expected = p.T @ x / len(y) / quant.kernel_scale
    assert g.shape == params[-1].shape and g.dtype == np.float32
    assert np.abs(g - expected).max() < 1e-3 * np.abs(expected).max()


class _Recording(objective.BatchLoss):
    """A BatchLoss that keeps every head kernel it was evaluated with: (step, probe or head pass, kernel)."""

    seen: list = []

    def __call__(self, params):
        self.seen.append((self.step, "probe", np.array(params[-1])))
        return super().__call__(params)

    def head(self, params):
        self.seen.append((self.step, "head", np.array(params[-1])))
        return super().head(params)


def _train(model, task, steps, exact=True, seed=0, precision="w16", record=False):
    n = len(model.meta.trainable)
    cfg = TrainConfig(seed=seed, steps=steps, batch_size=32, m=2, lr=(0.4,) * (n - 1) + (0.3 if exact else 1.0,),
                      precision=precision, exact_head=exact)
    start = model.initial_params()
    space = build.build_space(cfg)
    est = build.build_estimator(cfg, start, space, head_quant=model.head_quant() if exact else None)
    tx = build.build_transform(cfg)
    xq = model.quantize_input(task.x_support)
    make = objective.minibatch_loss(model, xq, task.y_support, seed, cfg.batch_size)
    if record:
        def make_recording(step, inner=make):
            loss = inner(step)
            recording = _Recording(loss.model, loss.inputs, loss.labels, loss.cached)
            recording.step = step
            return recording
        make = make_recording
    state = trainer.init_state(start, est, tx, space)
    for state, log in trainer.fit(state, make, est, tx, seed, steps, space):
        pass
    return space.to_engine(state.params), log


def test_exact_head_alone_learns_and_repeats_bit_for_bit(head_model, fewshot_task):
    xq_test = head_model.quantize_input(fewshot_task.x_test)
    before = head_model.accuracy(xq_test, fewshot_task.y_test, head_model.initial_params())
    params, log = _train(head_model, fewshot_task, 150)
    after = head_model.accuracy(xq_test, fewshot_task.y_test, params)
    assert log["forward_passes"] == 150  # one pass per step: no probes when only the head trains
    assert after > before + 0.02, (before, after)
    again, _ = _train(head_model, fewshot_task, 150)
    assert objective.weights_sha256(again) == objective.weights_sha256(params)


def test_exact_head_with_ff_body_leaves_the_head_out_of_the_probes(block_model, fewshot_task):
    _Recording.seen.clear()
    params, log = _train(block_model, fewshot_task, 3, record=True)
    assert log["forward_passes"] == 3 * (2 * 2 + 1)
    start = block_model.initial_params()
    assert all(np.any(p != s) for p, s in zip(params, start))  # body (FF) and head (exact) both move
    calls = _Recording.seen
    assert [(step, kind) for step, kind, _ in calls] == [(s, k) for s in range(3) for k in ["probe"] * 4 + ["head"]]
    for step in range(3):  # every probe of a step sees the head the step's head pass sees: never perturbed
        heads = [kernel for s, _, kernel in calls if s == step]
        assert all(np.array_equal(h, heads[-1]) for h in heads)
    assert not np.array_equal(calls[0][2], calls[-1][2])  # while the head itself trains between steps


def test_config_refuses_exact_head_without_an_integer_anchored_head():
    base = TrainConfig(steps=1, batch_size=1, lr=1.0, exact_head=True, precision="w16")
    for bad in ({"precision": "fp32"}, {"arithmetic": "paper"}):
        with pytest.raises(ValueError, match="exact_head"):
            dataclasses.replace(base, **bad)
