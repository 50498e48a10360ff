"""Sparse-update masks (the paper's enhancement 4): which weights of each tensor may change.

Masks are boolean arrays shaped like the params and are computed once, from the initial
weights (or the seed), so a resumed run rebuilds the same masks. `sparsity` is the fraction
of each tensor that stays frozen (0.9: 90% frozen); ties are broken by flat index, so
every mask is deterministic and reproducible in Java.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tflite_fg import rng

Params = Sequence[np.ndarray]
KINDS = ("none", "topk", "random", "threshold")


def _keep_count(size: int, sparsity: float) -> int:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1) (the frozen fraction), got {sparsity}")
    return max(1, size - int(np.floor(sparsity * size)))


def _keep_smallest(keys: np.ndarray, keep: int, shape: tuple[int, ...]) -> np.ndarray:
    order = np.argsort(keys, kind="stable")
    mask = np.zeros(keys.size, dtype=bool)
    mask[order[:keep]] = True
    return mask.reshape(shape)


def topk_magnitude(params: Params, sparsity: float) -> list[np.ndarray]:
    """Keep the (1 - sparsity) largest |w| of each tensor (ties: lower flat index first)."""
    return [_keep_smallest(-np.abs(np.asarray(w, np.float64)).ravel(), _keep_count(np.size(w), sparsity), np.shape(w))
            for w in params]


def random_mask(params: Params, sparsity: float, seed: int) -> list[np.ndarray]:
    """Keep a uniformly random (1 - sparsity) fraction of each tensor: the elements with the
    smallest draws of rng.uint32_stream(stream_key(seed, 0, MASK_INDEX, tensor))."""
    out = []
    for t, w in enumerate(params):
        u = rng.uint32_stream(rng.stream_key(seed, 0, rng.MASK_INDEX, t), np.size(w)).astype(np.int64)
        out.append(_keep_smallest(u, _keep_count(np.size(w), sparsity), np.shape(w)))
    return out


def threshold_mask(params: Params, threshold_lsb: float, lsb: float = 1.0) -> list[np.ndarray]:
    """Keep weights with |w| >= threshold (in int8 LSBs); tensors that would be empty keep their largest."""
    if not threshold_lsb >= 0:
        raise ValueError(f"mask threshold must be >= 0 int8 LSBs, got {threshold_lsb}")
    out = []
    for w in params:
        a = np.abs(np.asarray(w, np.float64)) / lsb
        mask = a >= threshold_lsb
        if not mask.any():
            mask = _keep_smallest(-a.ravel(), 1, a.shape)
        out.append(mask)
    return out


def make_masks(kind: str, params: Params, sparsity: float, seed: int, threshold_lsb: float = 0.0,
               lsb: float = 1.0) -> list[np.ndarray] | None:
    """The masks of a config (None for "none")."""
    if kind == "none":
        return None
    if kind == "topk":
        return topk_magnitude(params, sparsity)
    if kind == "random":
        return random_mask(params, sparsity, seed)
    if kind == "threshold":
        return threshold_mask(params, threshold_lsb, lsb)
    raise ValueError(f"mask must be one of {KINDS}, got {kind!r}")


def frozen_fraction(masks: Sequence[np.ndarray]) -> float:
    total = sum(m.size for m in masks)
    return 1.0 - sum(int(np.count_nonzero(m)) for m in masks) / total
