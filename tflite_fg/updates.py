"""Transforms of gradient estimates into int8 weight updates, optax style.

A GradientTransformation is a NamedTuple (init, update) of pure functions with
explicit state; `chain` composes them. The plain recipe is
chain(scale_by_learning_rate(lr), round_to_int()) then WeightSpace.apply,
i.e. the paper's w_q <- w_q - round(lr * g) with the learning rate in weight
LSBs per unit of z. Schedules and stochastic rounding are further transforms
in the chain; integer_sgd is the paper's all-integer update (QZO-FF Eq. 8).
A WeightSpace (precision.py) applies the result to its master copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from tflite_fg import quant, rng
from tflite_fg.schedules import Schedule

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


class CountState(NamedTuple):
    """Steps seen so far (int64 scalar): schedules and random streams index by it."""

    count: np.ndarray


def _empty_init(params: Params) -> EmptyState:
    return EmptyState()


def _count_init(params: Params) -> CountState:
    return CountState(np.array(0, np.int64))


def _next(state: CountState) -> CountState:
    return CountState(np.array(int(state.count) + 1, np.int64))


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


def _rates(lr: float | Sequence[float]) -> Callable[[int], list[float]]:
    """Validate lr (one rate, or one per tensor) once; return n_tensors -> the per-tensor rates."""
    rates = [float(r) for r in lr] if isinstance(lr, (list, tuple)) else None
    for r in rates or [lr]:
        if not (math.isfinite(r) and r > 0):
            raise ValueError(f"lr must be finite and > 0, got {lr}")

    def rates_for(n: int) -> list[float]:
        if rates is None:
            return [float(lr)] * n
        if len(rates) != n:
            raise ValueError(f"lr has {len(rates)} entries but there are {n} tensors")
        return rates

    return rates_for


def scale_by_learning_rate(lr: float | Sequence[float]) -> GradientTransformation:
    """updates = -lr * g in float32 (lr: weight LSBs per unit of z; SGD descent sign).

    A sequence gives one rate per tensor: layers whose weight LSB is small relative to their
    sensitivity (a conv block vs the head) need fewer +-1 LSB steps to keep the random walk down."""
    rates_for, negated = _rates(lr), {}

    def update(updates: Updates, state: EmptyState, params: Params | None = None) -> tuple[Updates, EmptyState]:
        n = len(updates)
        if n not in negated:  # built once per tensor count, not per step
            negated[n] = [np.float32(-r) for r in rates_for(n)]
        neg = negated[n]
        return [n * np.asarray(u, dtype=np.float32) for n, u in zip(neg, updates)], state

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


def scale_by_schedule(schedule: Schedule) -> GradientTransformation:
    """updates *= float32(schedule(count)), count = steps seen (a learning-rate schedule)."""

    def update(updates: Updates, state: CountState, params: Params | None = None) -> tuple[Updates, CountState]:
        factor = np.float32(schedule(int(state.count)))
        return [factor * np.asarray(u, dtype=np.float32) for u in updates], _next(state)

    return GradientTransformation(_count_init, update)


def stochastic_round(seed: int) -> GradientTransformation:
    """floor(x) + 1 with probability frac(x), else floor(x): unbiased, so updates far below one
    LSB still move weights on average (what makes int8-only training progress).

    The draw for element e of tensor t at count c is u_e of
    rng.uint32_stream(stream_key(seed, c, UPDATE_ROUND_INDEX, t)); round up iff frac * 2**32 > u_e
    (frac = x - floor(x) is exact in float32, the product exact in float64).
    """

    def update(updates: Updates, state: CountState, params: Params | None = None) -> tuple[Updates, CountState]:
        out = []
        for t, u in enumerate(updates):
            x = np.asarray(u, dtype=np.float32)
            if not np.all(np.isfinite(x)):  # before the clip, which would turn +-inf into +-2**24
                raise ValueError("stochastic_round got non-finite updates")
            x = np.clip(x, -_ROUND_LIMIT, _ROUND_LIMIT)
            floor = np.floor(x)
            draws = rng.uint32_stream(rng.stream_key(seed, int(state.count), rng.UPDATE_ROUND_INDEX, t), x.size)
            up = (x - floor).astype(np.float64) * 4294967296.0 > draws.reshape(x.shape).astype(np.float64)
            out.append(floor.astype(np.int32) + up.astype(np.int32))
        return out, _next(state)

    return GradientTransformation(_count_init, update)


class TraceState(NamedTuple):
    """The running average of the gradient estimates, float32, one array per tensor."""

    average: list[np.ndarray]


def average_gradients(decay: float) -> GradientTransformation:
    """m <- decay * m + (1 - decay) * g, output m (float32, in this order of operations; Java does the same).

    Sign-m-SPSA's estimate of one step is a few random directions; averaging it over about
    1 / (1 - decay) steps cancels most of their noise while the true gradient, which changes
    slowly, adds up. The (1 - decay) factor keeps the learning rate on the same scale as without
    it (the ZO momentum of ZO-AdaMM / MeZO-momentum, as an exponential average)."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"gradient averaging decay must be in (0, 1), got {decay}")
    keep, take = np.float32(decay), np.float32(1.0 - decay)

    def init(params: Params) -> TraceState:
        return TraceState([np.zeros(np.shape(p), np.float32) for p in params])

    def update(updates: Updates, state: TraceState, params: Params | None = None) -> tuple[Updates, TraceState]:
        if len(updates) != len(state.average):
            raise ValueError(f"gradient averaging state has {len(state.average)} tensors, updates {len(updates)}")
        average = [keep * m + take * np.asarray(g, np.float32) for m, g in zip(state.average, updates)]
        return average, TraceState(average)

    return GradientTransformation(init, update)


class AdamState(NamedTuple):
    """Adam's moments (float32, one array per tensor) and b1^t, b2^t (float32 scalars, products
    carried step to step so that no runtime needs a pow that might round differently)."""

    mu: list[np.ndarray]
    nu: list[np.ndarray]
    power1: np.ndarray
    power2: np.ndarray


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7) -> GradientTransformation:
    """Adam's direction d = (mu / (1 - b1^t)) / (sqrt(nu / (1 - b2^t)) + eps) (Kingma & Ba, Alg. 1),
    in float32 in this order of operations (Java does the same).

    d is about +-1 whatever the gradient's scale, so the learning rate after it is a step in weight
    LSBs: what a head trained by its exact gradient needs, whose gradient scale varies by orders of
    magnitude between tasks and over a run (one SGD rate cannot suit both; BP's Adam rows adapt)."""
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0 and eps > 0):
        raise ValueError(f"adam needs 0 <= b1, b2 < 1 and eps > 0, got {b1}, {b2}, {eps}")
    k1, t1, k2, t2 = (np.float32(x) for x in (b1, 1.0 - b1, b2, 1.0 - b2))
    one, tiny = np.float32(1.0), np.float32(eps)

    def init(params: Params) -> AdamState:
        zeros = [np.zeros(np.shape(p), np.float32) for p in params]
        return AdamState(zeros, [z.copy() for z in zeros], np.float32(1.0), np.float32(1.0))

    def update(updates: Updates, state: AdamState, params: Params | None = None) -> tuple[Updates, AdamState]:
        if len(updates) != len(state.mu):
            raise ValueError(f"adam state has {len(state.mu)} tensors, updates {len(updates)}")
        g = [np.asarray(u, np.float32) for u in updates]
        mu = [k1 * m + t1 * x for m, x in zip(state.mu, g)]
        nu = [k2 * v + t2 * (x * x) for v, x in zip(state.nu, g)]
        p1, p2 = np.float32(state.power1) * k1, np.float32(state.power2) * k2
        c1, c2 = one - p1, one - p2
        out = [(m / c1) / (np.sqrt(v / c2) + tiny) for m, v in zip(mu, nu)]
        return out, AdamState(mu, nu, p1, p2)

    return GradientTransformation(init, update)


class SplitState(NamedTuple):
    """The states of split_head's two transforms."""

    body: Any
    head: Any


def split_head(head: GradientTransformation, body: GradientTransformation | None = None) -> GradientTransformation:
    """`head` on the last tensor, `body` (None: unchanged) on the others (optax.multi_transform's
    idea for the one split this project needs: the exact head's optimizer is not the probes')."""

    def init(params: Params) -> SplitState:
        return SplitState(body.init(params[:-1]) if body else EmptyState(), head.init(params[-1:]))

    def update(updates: Updates, state: SplitState, params: Params | None = None) -> tuple[Updates, SplitState]:
        rest, body_state = list(updates[:-1]), state.body
        if body is not None:
            rest, body_state = body.update(rest, body_state, None if params is None else params[:-1])
        last, head_state = head.update(list(updates[-1:]), state.head, None if params is None else params[-1:])
        return rest + list(last), SplitState(body_state, head_state)

    return GradientTransformation(init, update)


LR_SHIFT = 24  # Q24 learning-rate multiplier of integer_sgd: lr * Dz down to 6e-8 LSB stays representable


def integer_sgd(lr: float | Sequence[float], schedule: Schedule | None = None,
                stochastic_seed: int | None = None) -> GradientTransformation:
    """The paper's integer update u = -round((lr * Dz) * g_q) on an int8 g_q (QZO-FF Eq. 8).

    lr is in master LSBs per unit of z (Dlr / Dw of the paper), one per tensor or shared, times
    the schedule. The product is a multiply-and-shift: M_t = round(lr_t * sched(count) * Dz * 2**24)
    (float64, once per step and tensor), u = (-g_q * M_t + r) >> 24 with r = 2**23 (nearest) or
    the top 24 bits of a uniform draw of the update-rounding stream (stochastic).
    """
    rates_for = _rates(lr)
    schedule = schedule or (lambda step: 1.0)

    def update(updates: Updates, state: CountState, params: Params | None = None) -> tuple[Updates, CountState]:
        per_tensor = rates_for(len(updates))
        count, factor, out = int(state.count), schedule(int(state.count)), []
        for t, (g, r) in enumerate(zip(updates, per_tensor)):
            g = np.asarray(g)
            if not np.issubdtype(g.dtype, np.integer):
                raise TypeError(f"integer_sgd needs the integer g_q (sign_m_spsa(quantized=True)), got {g.dtype}")
            multiplier = int(round(r * factor * quant.Z_SCALE * (1 << LR_SHIFT)))
            neg = -g.astype(np.int64)
            if stochastic_seed is None:
                u = quant.round_shift(neg, multiplier, LR_SHIFT) if multiplier else np.zeros(g.shape, np.int64)
            else:
                draws = rng.uint32_stream(rng.stream_key(stochastic_seed, count, rng.UPDATE_ROUND_INDEX, t), g.size)
                u = quant.round_shift_stochastic(neg, multiplier, LR_SHIFT, draws.reshape(g.shape))
            out.append(u.astype(np.int32))
        return out, _next(state)

    return GradientTransformation(_count_init, update)
