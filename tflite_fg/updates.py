"""Transforms of gradient estimates into int8 weight updates, optax style.

A GradientTransformation is a NamedTuple (init, update) of pure functions with
explicit state; `chain` composes them. The plain recipe is
chain(scale_by_learning_rate(lr), round_to_int()) then apply_updates_int8,
i.e. the paper's w_q <- w_q - round(lr * g) with the learning rate in weight
LSBs per unit of z. Schedules, momentum, stochastic rounding or masks are
further transforms in the chain, not flags.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from tflite_fg import quant

Params = Sequence[np.ndarray]
Updates = list[np.ndarray]

# Magnitude cap before the int cast: exact in float32 and far beyond the int8 range.
_ROUND_LIMIT = float(1 << 24)


class EmptyState(NamedTuple):
    """State of a stateless transform."""


class GradientTransformation(NamedTuple):
    """init(params) -> state; update(updates, state, params) -> (updates, state)."""

    init: Callable[[Params], Any]
    update: Callable[[Updates, Any, Params | None], tuple[Updates, Any]]


def _empty_init(params: Params) -> EmptyState:
    return EmptyState()


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply transforms in order; the state is the tuple of their states."""

    def init(params: Params) -> tuple:
        return tuple(t.init(params) for t in transforms)

    def update(updates: Updates, state: tuple, params: Params | None = None) -> tuple[Updates, tuple]:
        if len(state) != len(transforms):
            raise ValueError(f"chain state has {len(state)} entries for {len(transforms)} transforms")
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def scale_by_learning_rate(lr: float | Sequence[float]) -> GradientTransformation:
    """updates = -lr * g in float32 (lr: weight LSBs per unit of z; SGD descent sign).

    A sequence gives one rate per tensor: layers whose weight LSB is small relative to their
    sensitivity (a conv block vs the head) need fewer +-1 LSB steps to keep the random walk down."""
    rates = [float(r) for r in lr] if isinstance(lr, (list, tuple)) else None
    for r in rates or [lr]:
        if not (math.isfinite(r) and r > 0):
            raise ValueError(f"lr must be finite and > 0, got {lr}")
    neg_rates = None if rates is None else [np.float32(-r) for r in rates]
    neg_lr = np.float32(-lr) if rates is None else None

    def update(updates: Updates, state: EmptyState, params: Params | None = None) -> tuple[Updates, EmptyState]:
        if neg_rates is None:
            return [neg_lr * np.asarray(u, dtype=np.float32) for u in updates], state
        if len(neg_rates) != len(updates):
            raise ValueError(f"lr has {len(neg_rates)} entries but there are {len(updates)} tensors")
        return [n * np.asarray(u, dtype=np.float32) for n, u in zip(neg_rates, updates)], state

    return GradientTransformation(_empty_init, update)


def round_to_int() -> GradientTransformation:
    """Round to nearest, ties to even (np.rint; Java Math.rint), to int32.

    Values are first clipped to +-2**24 (any |update| > 254 saturates int8 anyway),
    so the cast is always defined. Non-finite updates raise ValueError.
    """

    def update(updates: Updates, state: EmptyState, params: Params | None = None) -> tuple[Updates, EmptyState]:
        out = []
        for u in updates:
            u = np.asarray(u)
            if not np.all(np.isfinite(u)):
                raise ValueError("round_to_int got non-finite updates")
            out.append(np.rint(np.clip(u, -_ROUND_LIMIT, _ROUND_LIMIT)).astype(np.int32))
        return out, state

    return GradientTransformation(_empty_init, update)


def apply_updates_int8(params: Params, updates: Updates) -> list[np.ndarray]:
    """New int8 params saturate_int8(w + u); integer updates only (round first)."""
    if len(params) != len(updates):
        raise ValueError(f"{len(params)} params but {len(updates)} updates")
    new = []
    for w, u in zip(params, updates):
        u = np.asarray(u)
        if not np.issubdtype(u.dtype, np.integer):
            raise TypeError(f"apply_updates_int8 needs integer updates (add round_to_int), got {u.dtype}")
        if u.shape != np.shape(w):
            raise ValueError(f"update shape {u.shape} does not match param shape {np.shape(w)}")
        new.append(quant.saturate_int8(np.asarray(w).astype(np.int64) + u.astype(np.int64)))
    return new
