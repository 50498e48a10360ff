"""Precision modes: how the trainer stores, perturbs and updates the trainable tensors.

A WeightSpace is the one place that knows the number format of the master copy:
- w8: the int8 kernels themselves, nothing else kept (the engine's own weights);
- w16: an int16 master copy with 2**8 master LSBs per int8 LSB (the paper's 16w8a); the
  engine receives its int8 rounding (to nearest, or stochastic with common random numbers
  for every probe of a step);
- fp32 (converters/fp32_reference.py): float32 weights in int8-LSB units, for the paper's
  "FF fp" baseline.
eps and lr are always given in int8 LSBs, so one set of flags means the same in every mode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from tflite_fg import quant, rng

Params = Sequence[np.ndarray]
ARITHMETICS = ("anchored", "paper")
ROUNDINGS = ("nearest", "stochastic")

# M / 2**k ~= Dz: maps eps * z_q (scale Dz) to weight LSBs (scale 1).
Z_MULTIPLIER, Z_SHIFT = quant.multiplier_shift(quant.Z_SCALE, 16)


class WeightSpace(NamedTuple):
    """from_int8(kernels) -> master; perturb(master, z_q, eps, sign) -> master;
    perturb_pair(master, z_q, eps) -> (w+, w-), sharing the work of the two signs;
    apply(master, integer or float updates) -> master; to_engine(master, seed, step) -> what the
    loss function receives (seed None: deterministic, for evaluation and export)."""

    name: str
    lsb: float                      # master units per int8 LSB
    from_int8: Callable[[Params], list[np.ndarray]]
    perturb: Callable[[Params, Sequence[np.ndarray], Sequence[float], int], list[np.ndarray]]
    perturb_pair: Callable[[Params, Sequence[np.ndarray], Sequence[float]], tuple[list[np.ndarray], list[np.ndarray]]]
    apply: Callable[[Params, Sequence[np.ndarray]], list[np.ndarray]]
    to_engine: Callable[..., list[np.ndarray]]
    integer: bool = True


def _pair_by_signs(perturb: Callable) -> Callable:
    """perturb_pair from perturb, for spaces where the two signs share nothing worth caching."""
    return lambda params, z_q, eps_lsb: (perturb(params, z_q, eps_lsb, 1), perturb(params, z_q, eps_lsb, -1))


@functools.lru_cache(maxsize=16)
def _engine_draws(seed: int, step: int, tensor: int, size: int) -> np.ndarray:
    """The step's stochastic-rounding draws of one tensor: shared by all 2m probes of the step, so
    they are generated once per step, not once per forward pass (read-only)."""
    u = rng.uint32_stream(rng.stream_key(seed, step, rng.ENGINE_ROUND_INDEX, tensor), size)
    u.flags.writeable = False
    return u


def master_eps(eps_lsb: float, lsb: int) -> int:
    """eps in master LSBs; it must be a whole number >= 1 of them."""
    eps = eps_lsb * lsb
    if not (eps >= 1 and float(eps).is_integer()):
        raise ValueError(f"eps_lsb={eps_lsb} is not a whole number >= 1 of master LSBs (1/{lsb} int8 LSB)")
    return int(eps)


def _check_int_updates(params: Params, updates: Sequence[np.ndarray]) -> None:
    if len(params) != len(updates):
        raise ValueError(f"{len(params)} params but {len(updates)} updates")
    for w, u in zip(params, updates):
        u = np.asarray(u)
        if not np.issubdtype(u.dtype, np.integer):
            raise TypeError(f"integer weights need integer updates (round first), got {u.dtype}")
        if u.shape != np.shape(w):
            raise ValueError(f"update shape {u.shape} does not match param shape {np.shape(w)}")


def integer_space(bits: int = 8, arithmetic: str = "anchored", engine_rounding: str = "nearest") -> WeightSpace:
    """Integer master weights of `bits` (8 or 16) on the grid Dw / 2**(bits - 8).

    arithmetic "anchored": w+- = sat(w +- round(eps z)), the anchor exact (w is never rescaled);
    "paper": w+- = ((w 1_q +- eps_q z_q) M) >> k exactly as QZO-FF Eq. 6 (see quant.perturb_paper).
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic must be one of {ARITHMETICS}, got {arithmetic!r}")
    if engine_rounding not in ROUNDINGS:
        raise ValueError(f"engine_rounding must be one of {ROUNDINGS}, got {engine_rounding!r}")
    shift = bits - 8
    lsb = 1 << shift

    def from_int8(kernels: Params) -> list[np.ndarray]:
        for i, k in enumerate(kernels):
            if np.asarray(k).dtype != np.int8:
                raise TypeError(f"params[{i}] must be int8 (quantize first), got {np.asarray(k).dtype}")
        return [quant.saturate(np.asarray(k).astype(np.int64) << shift, bits) for k in kernels]

    def _delta(z: np.ndarray, e: float) -> np.ndarray:
        return quant.round_shift(master_eps(e, lsb) * np.asarray(z).astype(np.int64), Z_MULTIPLIER, Z_SHIFT)

    def perturb(params: Params, z_q: Sequence[np.ndarray], eps_lsb: Sequence[float], sign: int) -> list[np.ndarray]:
        if arithmetic == "paper":
            return [quant.perturb_paper(w, z, master_eps(e, lsb), sign, bits, Z_MULTIPLIER, Z_SHIFT)
                    for w, z, e in zip(params, z_q, eps_lsb)]
        return [quant.saturate(np.asarray(w).astype(np.int64) + sign * _delta(z, e), bits)
                for w, z, e in zip(params, z_q, eps_lsb)]

    def perturb_pair(params: Params, z_q: Sequence[np.ndarray], eps_lsb: Sequence[float]):
        if arithmetic == "paper":  # the reference formula, as written, per sign
            return perturb(params, z_q, eps_lsb, 1), perturb(params, z_q, eps_lsb, -1)
        plus, minus = [], []
        for w, z, e in zip(params, z_q, eps_lsb):
            w64, delta = np.asarray(w).astype(np.int64), _delta(z, e)
            plus.append(quant.saturate(w64 + delta, bits))
            minus.append(quant.saturate(w64 - delta, bits))
        return plus, minus

    def apply(params: Params, updates: Sequence[np.ndarray]) -> list[np.ndarray]:
        _check_int_updates(params, updates)
        return [quant.saturate(np.asarray(w).astype(np.int64) + np.asarray(u).astype(np.int64), bits)
                for w, u in zip(params, updates)]

    def to_engine(params: Params, seed: int | None = None, step: int = 0) -> list[np.ndarray]:
        if shift == 0:
            return list(params)
        out = []
        for t, w in enumerate(params):
            if engine_rounding == "stochastic" and seed is not None:
                u = _engine_draws(int(seed), int(step), t, int(np.size(w)))
                q = quant.round_shift_stochastic(np.asarray(w), 1, shift, u.reshape(np.shape(w)))
            else:
                q = quant.round_shift(np.asarray(w), 1, shift)
            out.append(quant.saturate_int8(q))
        return out

    name = f"w{bits}" + ("-paper" if arithmetic == "paper" else "") + \
        ("-sr" if engine_rounding == "stochastic" and shift else "")
    return WeightSpace(name, float(lsb), from_int8, perturb, perturb_pair, apply, to_engine)


def float_space(bits_name: str = "fp32") -> WeightSpace:
    """float32 weights in int8-LSB units (w / Dw): the float baseline with the same eps/lr units.
    The loss function scales by Dw itself; no rounding anywhere."""

    def from_int8(kernels: Params) -> list[np.ndarray]:
        return [np.asarray(k, dtype=np.float32).copy() for k in kernels]

    def perturb(params: Params, z_q: Sequence[np.ndarray], eps_lsb: Sequence[float], sign: int) -> list[np.ndarray]:
        return [(np.asarray(w, np.float32) + np.float32(sign * e * quant.Z_SCALE) * np.asarray(z, np.float32))
                for w, z, e in zip(params, z_q, eps_lsb)]

    def apply(params: Params, updates: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(params) != len(updates):
            raise ValueError(f"{len(params)} params but {len(updates)} updates")
        return [np.asarray(w, np.float32) + np.asarray(u, np.float32) for w, u in zip(params, updates)]

    def to_engine(params: Params, seed: int | None = None, step: int = 0) -> list[np.ndarray]:
        return list(params)

    return WeightSpace(bits_name, 1.0, from_int8, perturb, _pair_by_signs(perturb), apply, to_engine, integer=False)
