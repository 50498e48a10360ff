"""Binds a model and a labelled int8 data set into the per-step loss the trainer asks for.

The mini-batch of step t is rng.minibatch_indices(seed, t, ...): it is regenerated from the seed,
so a resumed run (and the Java core) sees the same batches without storing an order.

Frozen-prefix caching (docs/performance.md): the 2m forward passes of a step differ only in the
trainable layers, so with a split model the frozen `prefix` runs once per data set ("dataset":
a fixed few-shot support set) or once per mini-batch ("batch"), and the 2m passes run `suffix`
only. Every mode gives bit-identical losses ("none" runs the whole `forward` every pass).
"""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np

from tflite_fg import losses, rng
from tflite_fg.exact_head import HeadBatch
from tflite_fg.model import Features, FgModel

CACHE_MODES = ("auto", "dataset", "batch", "none")
AUTO_DATASET_LIMIT_BYTES = 256 << 20  # "auto" caches the whole data set's features up to this size


def feature_bytes(model: FgModel, xq: np.ndarray) -> int:
    """Bytes of the cached features of a data set (one prefix run on one example, times n)."""
    return sum(f.nbytes for f in model.features(xq[:1])) * len(xq)


def choose_cache(cache: str, has_prefix: bool, feature_bytes_per_example: int, n: int) -> str:
    """The rule: none without prefix/suffix; auto: the whole data set when its features fit
    AUTO_DATASET_LIMIT_BYTES, else per batch (memory.estimate predicts with the same rule)."""
    if cache not in CACHE_MODES:
        raise ValueError(f"prefix cache {cache!r}: choose one of {', '.join(CACHE_MODES)}")
    if not has_prefix or cache == "none":
        return "none"
    if cache == "auto":
        return "dataset" if feature_bytes_per_example * n <= AUTO_DATASET_LIMIT_BYTES else "batch"
    return cache


def resolve_cache(model: FgModel, xq: np.ndarray, cache: str) -> str:
    """The cache mode a run over the int8 data set xq really uses."""
    needs_size = cache == "auto" and model.has_prefix
    per_example = feature_bytes(model, xq) // len(xq) if needs_size else 0
    return choose_cache(cache, model.has_prefix, per_example, len(xq))


def minibatch_loss(model: FgModel, xq: np.ndarray, y: np.ndarray, seed: int,
                   batch_size: int, cache: str = "auto") -> Callable[[int], "BatchLoss"]:
    y = model.check_labels(y, len(xq))
    if xq.dtype != np.int8:
        raise ValueError(f"training inputs must be the int8 batch from model.quantize_input, got {xq.dtype}")
    batch_size = min(batch_size, len(xq))
    cache = resolve_cache(model, xq, cache)
    cached = model.features(xq, batch_size) if cache == "dataset" else None  # prefix arena: one batch

    def make(step: int) -> BatchLoss:
        idx = rng.minibatch_indices(seed, step, len(xq), batch_size)
        if cache == "none":
            return BatchLoss(model, (xq[idx],), y[idx], cached=False)
        feats = tuple(f[idx] for f in cached) if cached is not None else model.features(xq[idx])
        return BatchLoss(model, feats, y[idx], cached=True)

    return make


class BatchLoss:
    """The loss of one mini-batch as a function of the trainable kernels (the LossFn the estimators
    probe), and `head`: the unperturbed pass that also returns the head's input (exact_head.py)."""

    def __init__(self, model: FgModel, inputs: Features, labels: np.ndarray, cached: bool):
        self.model, self.inputs, self.labels, self.cached = model, inputs, labels, cached

    def __call__(self, params: Sequence[np.ndarray]) -> float:
        if self.cached:
            return self.model.loss_features(params, self.inputs, self.labels)
        return self.model.loss(params, self.inputs[0], self.labels)

    def head(self, params: Sequence[np.ndarray]) -> HeadBatch:
        logits, head_in = self.model.head_forward(self.inputs, params, self.cached)
        loss = losses.softmax_cross_entropy(self.model.dequantize_logits(logits), self.labels)
        return HeadBatch(logits, head_in, self.labels, loss)


def weights_sha256(params: Sequence[np.ndarray]) -> str:
    """One hash over the trainable int8 tensors, in metadata order: equal runs give equal hashes."""
    h = hashlib.sha256()
    for p in params:
        h.update(np.ascontiguousarray(p, dtype=np.int8).tobytes())
    return h.hexdigest()
