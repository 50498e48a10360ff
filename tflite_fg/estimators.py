"""Forward-gradient estimators: SPSA and the paper's Sign-m-SPSA, on int8 weights.

Each probe i perturbs the anchor weights on the integer weight grid,
w+- = saturate_int8(w +- delta_i) with delta_i = round_shift(eps_lsb * z_q, M, k)
and M/2**k ~= Dz (QZO-FF Eq. 6-8, without the paper's w*1_q rescale, so w stays
exact), i.e. delta ~= eps * z in weight LSBs. Both w+ and w- are built from the
anchor each time (never by reverse perturbation, which is not exact once
values saturate) and the anchor is never written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from tflite_fg import quant
from tflite_fg.samplers import Sampler

Params = Sequence[np.ndarray]
LossFn = Callable[[Params], float]

# M / 2**k ~= Dz: maps eps_lsb * z_q (scale Dz) to weight LSBs (scale 1).
Z_MULTIPLIER, Z_SHIFT = quant.multiplier_shift(quant.Z_SCALE, 16)


class Estimator(NamedTuple):
    """init(params) -> state; estimate(loss_fn, params, state, seed, step) -> (grads, state, info)."""

    init: Callable[[Params], Any]
    estimate: Callable[[LossFn, Params, Any, int, int], tuple[list[np.ndarray], Any, dict]]


class _Probe(NamedTuple):
    z_q: list[np.ndarray]
    loss_plus: float
    loss_minus: float


def _check_eps(eps_lsb: int | Sequence[int]) -> tuple[int, ...] | int:
    values = list(eps_lsb) if isinstance(eps_lsb, (list, tuple)) else [eps_lsb]
    for e in values:
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 1:
            raise ValueError(f"eps_lsb must be integers >= 1 (weight LSBs), got {eps_lsb!r}")
    if isinstance(eps_lsb, (int, np.integer)):
        return int(eps_lsb)
    return tuple(int(e) for e in values)


def _per_tensor(eps: tuple[int, ...] | int, n: int) -> tuple[int, ...]:
    if isinstance(eps, int):
        return (eps,) * n
    if len(eps) != n:
        raise ValueError(f"eps_lsb has {len(eps)} entries but params has {n} tensors")
    return eps


def _loss(loss_fn: LossFn, params: list[np.ndarray]) -> float:
    value = float(loss_fn(params))
    if not math.isfinite(value):
        raise ValueError(f"loss_fn returned {value}; the sign of a loss difference needs finite losses")
    return value


def _probes(
    sampler: Sampler, m: int, eps: tuple[int, ...] | int,
    loss_fn: LossFn, params: Params, state: Any, seed: int, step: int,
) -> tuple[list[_Probe], Any]:
    """The m two-sided probes of one step (2m loss evaluations)."""
    eps_t = _per_tensor(eps, len(params))
    anchor = [np.asarray(w).astype(np.int64) for w in params]
    probes = []
    for index in range(m):
        z_q, state = sampler.sample(state, seed, step, index)
        if [z.shape for z in z_q] != [w.shape for w in anchor]:
            raise ValueError("sampler state shapes do not match params; re-run init(params)")
        delta = [quant.round_shift(e * z.astype(np.int64), Z_MULTIPLIER, Z_SHIFT) for e, z in zip(eps_t, z_q)]
        plus = [quant.saturate_int8(w + d) for w, d in zip(anchor, delta)]
        minus = [quant.saturate_int8(w - d) for w, d in zip(anchor, delta)]
        probes.append(_Probe(z_q, _loss(loss_fn, plus), _loss(loss_fn, minus)))
    return probes, state


def _info(probes: list[_Probe]) -> dict:
    losses = [v for p in probes for v in (p.loss_plus, p.loss_minus)]
    return {"losses": losses, "forward_passes": len(losses)}


def _check_m(m: int) -> None:
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be an integer >= 1, got {m!r}")


def sign_gradient_from_sum(s: np.ndarray, m: int) -> np.ndarray:
    """g = float32(S) * float32(Z_SCALE / m): the one float step of Sign-m-SPSA (bit-exact in Java)."""
    return np.asarray(s, dtype=np.int32).astype(np.float32) * np.float32(quant.Z_SCALE / m)


def sign_m_spsa(sampler: Sampler, m: int, eps_lsb: int | Sequence[int]) -> Estimator:
    """g = (1/m) sum_i sign(L(w + eps z_i) - L(w - eps z_i)) z_i (the paper's Sign-m-SPSA).

    Exact integer sum S = sum_i sign_i * z_q,i (int32; sign(0) = 0), then
    g = float32(S) * float32(Z_SCALE / m): Z_SCALE / m in float64, rounded once
    to float32, one float32 multiply (Java: (float) S * (float) (Z_SCALE / m)).
    """
    _check_m(m)
    eps = _check_eps(eps_lsb)

    def estimate(loss_fn: LossFn, params: Params, state: Any, seed: int, step: int):
        probes, state = _probes(sampler, m, eps, loss_fn, params, state, seed, step)
        grads = []
        for t in range(len(params)):
            s = sum(np.int32(np.sign(p.loss_plus - p.loss_minus)) * p.z_q[t].astype(np.int32) for p in probes)
            grads.append(sign_gradient_from_sum(np.asarray(s, dtype=np.int32), m))
        return grads, state, _info(probes)

    return Estimator(sampler.init, estimate)


def spsa(sampler: Sampler, m: int, eps_lsb: int | Sequence[int]) -> Estimator:
    """g = (1/m) sum_i (L+ - L-) / (2 eps) z_i: the magnitude version, for comparison.

    g is in loss per weight LSB (eps in LSBs), accumulated in float64, returned float32.
    """
    _check_m(m)
    eps = _check_eps(eps_lsb)

    def estimate(loss_fn: LossFn, params: Params, state: Any, seed: int, step: int):
        probes, state = _probes(sampler, m, eps, loss_fn, params, state, seed, step)
        eps_t = _per_tensor(eps, len(params))
        grads = []
        for t, e in enumerate(eps_t):
            acc = sum((p.loss_plus - p.loss_minus) / (2.0 * e) * (p.z_q[t].astype(np.float64) * quant.Z_SCALE)
                      for p in probes)
            grads.append((np.asarray(acc, dtype=np.float64) / m).astype(np.float32))
        return grads, state, _info(probes)

    return Estimator(sampler.init, estimate)
