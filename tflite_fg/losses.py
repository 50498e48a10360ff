"""Classification losses on the engine's logits (float32, numerically stable)."""

from __future__ import annotations

import numpy as np


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels)
    if logits.ndim != 2 or 0 in logits.shape or labels.shape != (logits.shape[0],):
        raise ValueError(f"need logits [B, C] (B, C >= 1) and labels [B], got {logits.shape} and {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must be in [0, {logits.shape[1]}), got range [{labels.min()}, {labels.max()}]")
    return logits, labels


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log softmax(logits)[label], via log-sum-exp around the row max
    (no overflow for large logits), computed in float32."""
    logits, labels = _check(logits, labels)
    shifted = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(shifted), axis=1, dtype=np.float32))
    nll = lse - shifted[np.arange(labels.size), labels]
    return float(np.mean(nll, dtype=np.float32))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax (first on ties) equals the label."""
    logits, labels = _check(logits, labels)
    return float(np.mean(np.argmax(logits, axis=1) == labels))
