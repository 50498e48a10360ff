"""Binds a model and a labelled int8 data set into the per-step loss the trainer asks for.

The mini-batch of step t is rng.minibatch_indices(seed, t, ...): it is regenerated from the seed,
so a resumed run (and the Java core) sees the same batches without storing an order.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np

from tflite_fg import rng
from tflite_fg.estimators import LossFn
from tflite_fg.model import FgModel


def minibatch_loss(model: FgModel, xq: np.ndarray, y: np.ndarray, seed: int,
                   batch_size: int) -> Callable[[int], LossFn]:
    y = model.check_labels(y, len(xq))
    if xq.dtype != np.int8:
        raise ValueError(f"training inputs must be the int8 batch from model.quantize_input, got {xq.dtype}")
    batch_size = min(batch_size, len(xq))

    def make(step: int) -> LossFn:
        idx = rng.minibatch_indices(seed, step, len(xq), batch_size)
        xb, yb = xq[idx], y[idx]
        return lambda params: model.loss(params, xb, yb)

    return make


def weights_sha256(params: Sequence[np.ndarray]) -> str:
    """One hash over the trainable int8 tensors, in metadata order: equal runs give equal hashes."""
    h = hashlib.sha256()
    for p in params:
        h.update(np.ascontiguousarray(p, dtype=np.int8).tobytes())
    return h.hexdigest()
