"""Learning-rate schedules: step -> multiplier of the base rate, in float64 (Java: double).

As in optax, a schedule is a plain function of the step count; scale_by_schedule puts it in a chain.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int], float]
KINDS = ("constant", "cosine", "step")


def constant() -> Schedule:
    return lambda step: 1.0


def cosine(total_steps: int, final_fraction: float = 0.0) -> Schedule:
    """1 -> final_fraction along half a cosine over total_steps, then flat (Loshchilov & Hutter 2017)."""
    if total_steps < 1 or not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"cosine needs total_steps >= 1 and 0 <= final_fraction <= 1, got {total_steps}, "
                         f"{final_fraction}")

    def schedule(step: int) -> float:
        t = min(step, total_steps) / total_steps
        return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * t))

    return schedule


def step_decay(every: int, factor: float = 0.5) -> Schedule:
    """factor ** (step // every): the classic staircase."""
    if every < 1 or not 0.0 < factor <= 1.0:
        raise ValueError(f"step schedule needs every >= 1 and 0 < factor <= 1, got {every}, {factor}")
    return lambda step: factor ** (step // every)


def make_schedule(kind: str, total_steps: int, final_fraction: float = 0.0, every: int = 1000,
                  factor: float = 0.5) -> Schedule:
    if kind == "constant":
        return constant()
    if kind == "cosine":
        return cosine(total_steps, final_fraction)
    if kind == "step":
        return step_decay(every, factor)
    raise ValueError(f"schedule must be one of {KINDS}, got {kind!r}")
