import math

import numpy as np
import pytest

from tflite_fg import losses


def reference_ce(logits, labels):
    x = np.asarray(logits, np.float64)
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def test_matches_float64_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 10)).astype(np.float32) * 3
    labels = rng.integers(0, 10, 16)
    assert losses.softmax_cross_entropy(logits, labels) == pytest.approx(reference_ce(logits, labels), rel=1e-5)


def test_uniform_logits_give_log_c_and_large_logits_are_stable():
    assert losses.softmax_cross_entropy(np.zeros((3, 7), np.float32), np.array([0, 3, 6])) == pytest.approx(
        math.log(7), rel=1e-6)
    big = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]], np.float32)  # exp(1e4) would overflow
    assert losses.softmax_cross_entropy(big, np.array([0, 0])) == pytest.approx(1e4 / 2, rel=1e-6)


def test_accuracy():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]], np.float32)
    assert losses.accuracy(logits, np.array([1, 1, 0])) == pytest.approx(2 / 3)  # tie -> first index


@pytest.mark.parametrize("logits,labels", [
    (np.zeros((2, 3)), np.array([0, 3])), (np.zeros((2, 3)), np.array([0])),
    (np.zeros(3), np.array([0])), (np.zeros((0, 3)), np.zeros(0, int)),
])
def test_bad_inputs(logits, labels):
    with pytest.raises(ValueError):
        losses.softmax_cross_entropy(logits, labels)
