"""Training configuration: a frozen dataclass that validates itself.

Tools fill it from flags and write it as JSON (dataclasses.asdict) at the start
of a run; build.py turns it into composed objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DISTRIBUTIONS = ("gaussian", "rademacher")
ESTIMATORS = ("sign_spsa", "spsa")


def _int_at_least(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """seed/steps/batch_size/m/eps_lsb (weight LSBs) / lr (weight LSBs per unit of z)."""

    seed: int = 0
    steps: int
    batch_size: int
    m: int = 3
    eps_lsb: int = 1
    lr: float | tuple[float, ...]  # one rate, or one per trainable tensor (metadata order)
    distribution: str = "gaussian"
    estimator: str = "sign_spsa"

    def __post_init__(self) -> None:
        _int_at_least("seed", self.seed, 0)
        if self.seed >= 1 << 64:
            raise ValueError(f"seed must be < 2**64, got {self.seed!r}")
        _int_at_least("steps", self.steps, 1)
        _int_at_least("batch_size", self.batch_size, 1)
        _int_at_least("m", self.m, 1)
        _int_at_least("eps_lsb", self.eps_lsb, 1)
        if self.eps_lsb > 127:
            raise ValueError(f"eps_lsb must be <= 127 (the int8 range), got {self.eps_lsb!r}")
        for r in self.lr if isinstance(self.lr, tuple) else (self.lr,):
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not (math.isfinite(r) and r > 0):
                raise ValueError(f"lr must be a finite number > 0 (or a tuple of them), got {self.lr!r}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
