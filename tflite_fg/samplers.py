"""Perturbation samplers, optax style: a NamedTuple of pure functions.

z is returned quantized (integer z_q, z = z_q * quant.Z_SCALE) and is a pure
function of (seed, step, index, tensor) and the sampler state: tensor t of
perturbation `index` at `step` reads the stream rng.stream_key(seed, step, index, t),
so it is regenerated on demand and never stored (the MeZO idea, made portable).
Base distributions (Gaussian, Rademacher, Binomial) are wrapped by the paper's
enhancements: momentum-guided sampling, kernel-wise normalization, sparse masks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from tflite_fg import quant, rng

Params = Sequence[np.ndarray]


class ShapeState(NamedTuple):
    """Stateless samplers only remember the parameter shapes they draw for."""

    shapes: tuple[tuple[int, ...], ...]


def _keep_state(state: Any, grads: Sequence[np.ndarray]) -> Any:
    return state


class Sampler(NamedTuple):
    """init(params) -> state; sample(state, seed, step, index, params=None) -> (z_q list, state);
    observe(state, grads) -> state, called once per step with the step's gradient estimate."""

    init: Callable[[Params], Any]
    sample: Callable[..., tuple[list[np.ndarray], Any]]
    observe: Callable[[Any, Sequence[np.ndarray]], Any] = _keep_state


def _shape_init(params: Params) -> ShapeState:
    return ShapeState(tuple(tuple(int(d) for d in np.shape(p)) for p in params))


def _from_uint32(draw: Callable[[np.ndarray], np.ndarray], support: Sequence[np.ndarray] | None = None) -> Sampler:
    """A stateless sampler mapping each tensor's uint32 stream element-wise to z_q.

    With a `support` (boolean masks shaped like the params: the selected neurons), tensor t reads only
    k_t = count(support_t) numbers of its stream and element j goes to the j-th selected element in
    row-major order: frozen neurons cost no draws and stay exactly zero."""
    support = None if support is None else [np.asarray(s, dtype=bool) for s in support]
    counts = None if support is None else [int(np.count_nonzero(s)) for s in support]  # draws per tensor

    def sample(state: ShapeState, seed: int, step: int, index: int,
               params: Params | None = None) -> tuple[list[np.ndarray], ShapeState]:
        if support is not None and [s.shape for s in support] != list(state.shapes):
            raise ValueError(f"support shapes {[s.shape for s in support]} do not match params {list(state.shapes)}")
        z = []
        for tensor, shape in enumerate(state.shapes):
            key = rng.stream_key(seed, step, index, tensor)
            if support is None:
                z.append(draw(rng.uint32_stream(key, int(np.prod(shape, dtype=np.int64)))).reshape(shape))
                continue
            values = draw(rng.uint32_stream(key, counts[tensor]))
            full = np.zeros(shape, values.dtype)
            full[support[tensor]] = values  # boolean assignment fills in row-major order
            z.append(full)
        return z, state

    return Sampler(_shape_init, sample)


def gaussian_q8(support: Sequence[np.ndarray] | None = None) -> Sampler:
    """N(0, 1) quantized to int8 with z_max = 3.5, sampled exactly by the integer
    inverse-CDF table quant.GAUSSIAN_THRESHOLDS (the paper's 8-bit z)."""
    return _from_uint32(quant.gaussian_q8_from_uint32, support)


def _rademacher_q8(u: np.ndarray) -> np.ndarray:
    """Top bit of the draw: 0 -> +ONE_Q, 1 -> -ONE_Q."""
    return np.where(u >> np.uint32(31), -quant.ONE_Q, quant.ONE_Q).astype(np.int8)


def rademacher(support: Sequence[np.ndarray] | None = None) -> Sampler:
    """z = +-1 (z_q = +-ONE_Q), one bit per element: the paper's alternative distribution."""
    return _from_uint32(_rademacher_q8, support)


def _binomial_q8(n: int) -> Callable[[np.ndarray], np.ndarray]:
    """z = (popcount of the top n bits - n/2) / sqrt(n/4): a centred Binomial(n, 1/2) with unit
    variance; its n + 1 values are quantized once, round(z / Dz), into a table."""
    table = np.array([round((k - n / 2) / (n / 4) ** 0.5 / quant.Z_SCALE) for k in range(n + 1)], np.int64)
    table = np.clip(table, quant.INT8_MIN, quant.INT8_MAX).astype(np.int8)

    def draw(u: np.ndarray) -> np.ndarray:
        top = (u >> np.uint32(32 - n)).astype(np.uint64)
        count = np.zeros(u.shape, np.int64)
        for b in range(n):
            count += ((top >> np.uint64(b)) & np.uint64(1)).astype(np.int64)
        return table[count]

    return draw


def binomial(n: int = 4, support: Sequence[np.ndarray] | None = None) -> Sampler:
    """Centred, unit-variance Binomial(n, 1/2) from the top n bits of each draw (the paper's
    other distribution; n = 4 gives z in {-2, -1, 0, 1, 2} with weights 1:4:6:4:1)."""
    if not 1 <= n <= 32:
        raise ValueError(f"binomial n must be in [1, 32], got {n}")
    return _from_uint32(_binomial_q8(n), support)


class MomentumState(NamedTuple):
    inner: Any
    history: list[np.ndarray]   # the previous step's gradient, int8 on the scale Dz
    steps_seen: np.ndarray       # int64 scalar


def _q15(x: float) -> int:
    return int(round(x * (1 << 15)))


def momentum_beta(step: int, beta_min: float, decay_steps: int) -> float:
    """beta = 1 (pure random) at step 0, linearly down to beta_min at decay_steps, then flat."""
    if decay_steps <= 0:
        return beta_min
    return 1.0 - (1.0 - beta_min) * min(step, decay_steps) / decay_steps


def momentum_guided(base: Sampler, alpha: float = 0.5, beta_min: float = 0.5,
                    decay_steps: int = 1000) -> Sampler:
    """The paper's momentum-guided sampling: z1 ~ N(0, sqrt(a) I), z2 ~ N(z_prev, sqrt(1-a) I),
    z = b z1 + (1 - b) z2, with z_prev the previous step's gradient and b following momentum_beta.

    In integers: z_q = (c1 z1_q + c2 z_prev_q + c3 z2_q + 2**14) >> 15 with the Q15 coefficients
    c1 = b sqrt(a), c2 = 1 - b, c3 = (1 - b) sqrt(1 - a); z1, z2 are two base draws (index and
    index + rng.SECOND_DRAW). z_q is int16 (it can exceed the int8 range by the history term).
    """
    if not (0.0 < alpha < 1.0 and 0.0 <= beta_min <= 1.0):
        raise ValueError(f"momentum needs 0 < alpha < 1 and 0 <= beta_min <= 1, got {alpha}, {beta_min}")

    def init(params: Params) -> MomentumState:
        return MomentumState(base.init(params), [np.zeros(np.shape(p), np.int8) for p in params],
                             np.array(0, np.int64))

    def sample(state: MomentumState, seed: int, step: int, index: int, params: Params | None = None):
        z1, inner = base.sample(state.inner, seed, step, index, params)
        beta = momentum_beta(int(state.steps_seen), beta_min, decay_steps)
        c1, c2, c3 = _q15(beta * alpha ** 0.5), _q15(1.0 - beta), _q15((1.0 - beta) * (1.0 - alpha) ** 0.5)
        if c2 == 0 and c3 == 0:
            z = [quant.round_shift(a.astype(np.int64) * c1, 1, 15) for a in z1]
        else:
            z2, inner = base.sample(inner, seed, step, index + rng.SECOND_DRAW, params)
            z = [quant.round_shift(a.astype(np.int64) * c1 + h.astype(np.int64) * c2 + b.astype(np.int64) * c3, 1, 15)
                 for a, h, b in zip(z1, state.history, z2)]
        return [np.clip(a, -32767, 32767).astype(np.int16) for a in z], state._replace(inner=inner)

    def observe(state: MomentumState, grads: Sequence[np.ndarray]) -> MomentumState:
        history = [_gradient_to_zq(g) for g in grads]
        return MomentumState(base.observe(state.inner, grads), history, np.array(int(state.steps_seen) + 1, np.int64))

    return Sampler(init, sample, observe)


def _gradient_to_zq(g: np.ndarray) -> np.ndarray:
    """A gradient on the scale Dz as int8 z_q (integer ones are taken as already quantized)."""
    g = np.asarray(g)
    if np.issubdtype(g.dtype, np.integer):
        return np.clip(g, quant.INT8_MIN, quant.INT8_MAX).astype(np.int8)
    return np.clip(np.rint(g.astype(np.float64) / quant.Z_SCALE), quant.INT8_MIN, quant.INT8_MAX).astype(np.int8)


# Kernel-wise normalization reference: a layer whose weights have an RMS of 32 int8 LSBs
# (a Gaussian kernel quantized with its max at ~4 sigma) keeps its perturbation scale.
NORM_REF_LSB = 32
_NORM_REF_Z = round(quant.Z_MAX * NORM_REF_LSB)  # 112: Dz * 32 = 112 / 127 exactly


def kernel_norm_factor_q16(w_sq_sum: int, z_sq_sum: int, lsb: float = 1.0) -> int:
    """F = ||w|| / (||z|| * Dz * NORM_REF_LSB) in Q16, with ||w|| in int8 LSBs (w / lsb) and
    ||z|| in z_q units; exact integer sqrt for integer weights (Dz * 32 = 112/127)."""
    if z_sq_sum <= 0:
        return 0
    if float(lsb).is_integer():
        num = int(w_sq_sum) * (1 << 32) * quant.INT8_MAX ** 2
        den = int(lsb) ** 2 * int(z_sq_sum) * _NORM_REF_Z ** 2
        return math.isqrt(num // den)
    ratio = float(w_sq_sum) / (lsb ** 2 * z_sq_sum) / (quant.Z_SCALE * NORM_REF_LSB) ** 2
    return int(np.floor(np.sqrt(ratio) * 65536.0))


def kernel_normalized(base: Sampler, lsb: float = 1.0) -> Sampler:
    """The paper's kernel-wise normalization z_i <- z_i / ||z_i|| * ||w_i|| per tensor, with the
    unit fixed so that a layer of weight RMS NORM_REF_LSB is unchanged: layers whose weights are
    small relative to their LSB get proportionally smaller probes and updates.
    z_q <- (z_q * F + 2**15) >> 16 (int32), F from kernel_norm_factor_q16."""

    def sample(state: Any, seed: int, step: int, index: int, params: Params | None = None):
        if params is None:
            raise ValueError("kernel-wise normalization needs the current params")
        z, state = base.sample(state, seed, step, index, params)
        out = []
        for w, zt in zip(params, z):
            wa = np.asarray(w)
            w_sq = int(np.sum(wa.astype(np.int64) ** 2)) if np.issubdtype(wa.dtype, np.integer) \
                else float(np.sum(wa.astype(np.float64) ** 2))
            factor = kernel_norm_factor_q16(w_sq, int(np.sum(zt.astype(np.int64) ** 2)), lsb)
            out.append(quant.round_shift(zt.astype(np.int64) * factor, 1, 16).astype(np.int32))
        return out, state

    return Sampler(base.init, sample, base.observe)


def masked(base: Sampler, masks: Sequence[np.ndarray]) -> Sampler:
    """Sparse update: z is zero outside the boolean masks, so frozen weights are never perturbed
    and their gradient (hence update) is exactly zero."""
    masks = [np.asarray(m, dtype=bool) for m in masks]

    def sample(state: Any, seed: int, step: int, index: int, params: Params | None = None):
        z, state = base.sample(state, seed, step, index, params)
        if [a.shape for a in z] != [m.shape for m in masks]:
            raise ValueError(f"mask shapes {[m.shape for m in masks]} do not match params {[a.shape for a in z]}")
        return [np.where(m, a, 0).astype(a.dtype) for a, m in zip(z, masks)], state

    return Sampler(base.init, sample, base.observe)


def block_coordinate(base: Sampler, support: Sequence[np.ndarray] | None = None) -> Sampler:
    """Block-coordinate perturbation (issue 17's variance lever): probe `index` at `step` perturbs
    one tensor only, the ((step + index) mod n)-th of the n tensors that may train (those with
    support), so one tensor's loss change is not drowned by another's and m = n probes cover
    every tensor once per step. Each tensor then takes 1 of the m probes' signs: its update is
    about 1/m of the dense one, so the learning rate scales with m (docs/ablation.md)."""
    active = None if support is None else [t for t, s in enumerate(support) if np.any(s)]

    def sample(state: Any, seed: int, step: int, index: int, params: Params | None = None):
        z, state = base.sample(state, seed, step, index, params)
        tensors = active if active is not None else list(range(len(z)))
        chosen = tensors[(step + index) % len(tensors)] if tensors else -1
        return [a if t == chosen else np.zeros_like(a) for t, a in enumerate(z)], state

    return Sampler(base.init, sample, base.observe)
