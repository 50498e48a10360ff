"""Forward-gradient estimators: SPSA and the paper's Sign-m-SPSA, and the sharpness-aware wrapper.

Each probe i perturbs the anchor weights through the WeightSpace (precision.py),
w+- = space.perturb(w, z_i, eps, +-1); for int8 weights with the default "anchored"
arithmetic that is w+- = saturate_int8(w +- delta_i), delta_i = round_shift(eps * z_q, M, k),
M/2**k ~= Dz, i.e. delta ~= eps * z in weight LSBs. Both w+ and w- are built from the
anchor each time (never by reverse perturbation, which is not exact once values saturate)
and the anchor is never written. eps is in int8 LSBs in every precision mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from tflite_fg import quant, rng
from tflite_fg.precision import Z_MULTIPLIER, Z_SHIFT, WeightSpace, integer_space, master_eps  # noqa: F401
from tflite_fg.samplers import Sampler

Params = Sequence[np.ndarray]
LossFn = Callable[[Params], float]

class Estimator(NamedTuple):
    """init(params) -> state; estimate(loss_fn, params, state, seed, step) -> (grads, state, info)."""

    init: Callable[[Params], Any]
    estimate: Callable[[LossFn, Params, Any, int, int], tuple[list[np.ndarray], Any, dict]]


class _Probe(NamedTuple):
    z_q: list[np.ndarray]
    loss_plus: float
    loss_minus: float


def _check_eps(eps_lsb: float | Sequence[float], space: WeightSpace) -> tuple[float, ...] | float:
    values = list(eps_lsb) if isinstance(eps_lsb, (list, tuple)) else [eps_lsb]
    for e in values:
        if isinstance(e, bool) or not isinstance(e, (int, float, np.integer, np.floating)) or not e > 0:
            raise ValueError(f"eps_lsb must be > 0 (int8 weight LSBs), got {eps_lsb!r}")
        if space.integer:
            master_eps(e, int(space.lsb))
    if not isinstance(eps_lsb, (list, tuple)):
        return float(eps_lsb)
    return tuple(float(e) for e in values)


def _per_tensor(eps: tuple[float, ...] | float, n: int) -> tuple[float, ...]:
    if isinstance(eps, float):
        return (eps,) * n
    if len(eps) != n:
        raise ValueError(f"eps_lsb has {len(eps)} entries but params has {n} tensors")
    return eps


def _loss(loss_fn: LossFn, params: list[np.ndarray]) -> float:
    value = float(loss_fn(params))
    if not math.isfinite(value):
        raise ValueError(f"loss_fn returned {value}; the sign of a loss difference needs finite losses")
    return value


def _probe(sampler: Sampler, space: WeightSpace, eps_t: tuple[float, ...], loss_fn: LossFn, params: Params,
           state: Any, seed: int, step: int, index: int) -> tuple[_Probe, Any]:
    """One two-sided probe along perturbation `index` (2 loss evaluations)."""
    z_q, state = sampler.sample(state, seed, step, index, params)
    if [z.shape for z in z_q] != [np.shape(w) for w in params]:
        raise ValueError("sampler state shapes do not match params; re-run init(params)")
    plus, minus = space.perturb_pair(params, z_q, eps_t)
    return _Probe(z_q, _loss(loss_fn, plus), _loss(loss_fn, minus)), state


def _probes(
    sampler: Sampler, space: WeightSpace, m: int, eps: tuple[float, ...] | float,
    loss_fn: LossFn, params: Params, state: Any, seed: int, step: int, info: dict,
) -> Iterator[_Probe]:
    """The m two-sided probes of one step (2m loss evaluations), one at a time, so that only one
    perturbation is alive (callers fold each into their sum); the sampler's final state and the
    losses are left in `info`."""
    eps_t = _per_tensor(eps, len(params))
    info.update(losses=[], forward_passes=0, sampler_state=state)
    for index in range(m):
        probe, state = _probe(sampler, space, eps_t, loss_fn, params, state, seed, step, index)
        info["losses"] += [probe.loss_plus, probe.loss_minus]
        info["forward_passes"] += 2
        info["sampler_state"] = state
        yield probe


def _check_m(m: int) -> None:
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be an integer >= 1, got {m!r}")


def sign_gradient_from_sum(s: np.ndarray, m: int) -> np.ndarray:
    """g = float32(S) * float32(Z_SCALE / m): the one float step of Sign-m-SPSA (bit-exact in Java)."""
    return np.asarray(s, dtype=np.int32).astype(np.float32) * np.float32(quant.Z_SCALE / m)


def sign_m_spsa(sampler: Sampler, m: int, eps_lsb: float | Sequence[float],
                space: WeightSpace | None = None, quantized: bool = False) -> Estimator:
    """g = (1/m) sum_i sign(L(w + eps z_i) - L(w - eps z_i)) z_i (the paper's Sign-m-SPSA).

    Exact integer sum S = sum_i sign_i * z_q,i (int32; sign(0) = 0), then either
    g = float32(S) * float32(Z_SCALE / m): Z_SCALE / m in float64, rounded once
    to float32, one float32 multiply (Java: (float) S * (float) (Z_SCALE / m)); or, with
    quantized=True, the paper's 8-bit g_q = round(S / m) on the scale Dz (QZO-FF Eq. 7).
    """
    _check_m(m)
    space = space or integer_space(8)
    eps = _check_eps(eps_lsb, space)

    def estimate(loss_fn: LossFn, params: Params, state: Any, seed: int, step: int):
        sums, info = [np.zeros(np.shape(w), np.int32) for w in params], {}
        for p in _probes(sampler, space, m, eps, loss_fn, params, state, seed, step, info):
            sign = np.sign(p.loss_plus - p.loss_minus)
            for s, z in zip(sums, p.z_q if sign else ()):
                if sign > 0:
                    s += z
                else:
                    s -= z
        grads = [quant.sign_gradient_q8(np.clip(s, -127 * m, 127 * m), m) if quantized
                 else sign_gradient_from_sum(s, m) for s in sums]
        return grads, sampler.observe(info.pop("sampler_state"), grads), info

    return Estimator(sampler.init, estimate)


def spsa(sampler: Sampler, m: int, eps_lsb: float | Sequence[float], space: WeightSpace | None = None) -> Estimator:
    """g = (1/m) sum_i (L+ - L-) / (2 eps) z_i: the magnitude version, for comparison.

    g is in loss per weight LSB (eps in LSBs), accumulated in float64, returned float32.
    """
    _check_m(m)
    space = space or integer_space(8)
    eps = _check_eps(eps_lsb, space)

    def estimate(loss_fn: LossFn, params: Params, state: Any, seed: int, step: int):
        eps_t = _per_tensor(eps, len(params))
        sums, info = [np.zeros(np.shape(w), np.float64) for w in params], {}
        for p in _probes(sampler, space, m, eps, loss_fn, params, state, seed, step, info):
            for acc, z, e in zip(sums, p.z_q, eps_t):
                acc += (p.loss_plus - p.loss_minus) / (2.0 * e) * (z.astype(np.float64) * quant.Z_SCALE)
        grads = [(acc / m).astype(np.float32) for acc in sums]
        return grads, sampler.observe(info.pop("sampler_state"), grads), info

    return Estimator(sampler.init, estimate)


def sharpness_aware(inner: Estimator, sampler: Sampler, eps_lsb: float | Sequence[float], rho: float = 1.0,
                    space: WeightSpace | None = None) -> Estimator:
    """The paper's sharpness-aware perturbation: before the QZO-FF step, one extra probe along
    z_a (index rng.ASCENT_INDEX) moves to the neighbour w' = w + sign(L+ - L-) rho eps z_a on the
    uphill side, and the inner estimator's gradient is taken at w' and applied to w (SAM,
    Foret et al. 2021, with a zeroth-order ascent). Costs 2 extra forward passes per step."""
    space = space or integer_space(8)
    eps = _check_eps(eps_lsb, space)
    if not rho > 0:
        raise ValueError(f"sharpness-aware rho must be > 0 (in units of eps), got {rho}")

    def estimate(loss_fn: LossFn, params: Params, state: Any, seed: int, step: int):
        eps_t = _per_tensor(eps, len(params))
        probe, _ = _probe(sampler, space, eps_t, loss_fn, params, state, seed, step, rng.ASCENT_INDEX)
        uphill = 1 if probe.loss_plus >= probe.loss_minus else -1
        neighbour = space.perturb(params, probe.z_q, tuple(e * rho for e in eps_t), uphill)
        grads, state, info = inner.estimate(loss_fn, neighbour, state, seed, step)
        losses = [probe.loss_plus, probe.loss_minus] + info["losses"]
        return grads, state, {**info, "losses": losses, "forward_passes": info["forward_passes"] + 2}

    return Estimator(inner.init, estimate)
