"""Perturbation samplers, optax style: a NamedTuple of pure functions.

z is returned quantized (int8 z_q, z = z_q * quant.Z_SCALE) and is a pure
function of (seed, step, index, tensor): tensor t of perturbation `index` at
`step` reads the stream rng.stream_key(seed, step, index, t), so it is
regenerated on demand and never stored (the MeZO idea, made portable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from tflite_fg import quant, rng

Params = Sequence[np.ndarray]


class ShapeState(NamedTuple):
    """Stateless samplers only remember the parameter shapes they draw for."""

    shapes: tuple[tuple[int, ...], ...]


class Sampler(NamedTuple):
    """init(params) -> state; sample(state, seed, step, index) -> (z_q list, state)."""

    init: Callable[[Params], Any]
    sample: Callable[[Any, int, int, int], tuple[list[np.ndarray], Any]]


def _shape_init(params: Params) -> ShapeState:
    return ShapeState(tuple(tuple(int(d) for d in np.shape(p)) for p in params))


def _from_uint32(draw: Callable[[np.ndarray], np.ndarray]) -> Sampler:
    """A stateless sampler mapping each tensor's uint32 stream element-wise to z_q."""

    def sample(state: ShapeState, seed: int, step: int, index: int) -> tuple[list[np.ndarray], ShapeState]:
        z = []
        for tensor, shape in enumerate(state.shapes):
            u = rng.uint32_stream(rng.stream_key(seed, step, index, tensor), int(np.prod(shape, dtype=np.int64)))
            z.append(draw(u).reshape(shape))
        return z, state

    return Sampler(_shape_init, sample)


def gaussian_q8() -> Sampler:
    """N(0, 1) quantized to int8 with z_max = 3.5, sampled exactly by the integer
    inverse-CDF table quant.GAUSSIAN_THRESHOLDS (the paper's 8-bit z)."""
    return _from_uint32(quant.gaussian_q8_from_uint32)


def _rademacher_q8(u: np.ndarray) -> np.ndarray:
    """Top bit of the draw: 0 -> +ONE_Q, 1 -> -ONE_Q."""
    return np.where(u >> np.uint32(31), -quant.ONE_Q, quant.ONE_Q).astype(np.int8)


def rademacher() -> Sampler:
    """z = +-1 (z_q = +-ONE_Q), one bit per element: the paper's alternative distribution."""
    return _from_uint32(_rademacher_q8)
