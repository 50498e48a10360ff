"""Training configuration: a frozen dataclass that validates itself.

Tools fill it from flags and write it as JSON (dataclasses.asdict) at the start
of a run; build.py turns it into composed objects. eps and lr are in int8 weight
LSBs in every precision mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tflite_fg import masks, schedules
from tflite_fg.precision import ARITHMETICS, ROUNDINGS

DISTRIBUTIONS = ("gaussian", "rademacher", "binomial")
ESTIMATORS = ("sign_spsa", "spsa")
PRECISIONS = ("w8", "w16", "fp32")
HEAD_OPTIMIZERS = ("sgd", "adam")


def default_head_lr(optimizer: str, precision: str) -> float:
    """The exact head's rate (tools/train.py's default, the suite's where the body trains too): SGD's
    float-space 0.3; Adam's step of 0.3 int8 LSB, or 1 for w8, whose updates round to whole LSBs so
    that a smaller step is lost (docs/ablation.md, levers: 66.5 / 85.1% for w16 at 0.3 against 65.4 /
    81.8% at 1 and 63.2 / 80.1% at 3; w8 at 1: 65.6 / 84.4%)."""
    if optimizer == "sgd":
        return 0.3
    return 1.0 if precision == "w8" else 0.3


def default_probe_lr(block_coordinate: bool, probed_tensors: int) -> float:
    """Sign-m-SPSA's rate (tools/train.py's default --lr): 0.5; with block-coordinate probes each of the
    n probed tensors takes about 1/n of a step's probes, so n times that (docs/ablation.md, levers:
    3x on the demo's three conv kernels was best)."""
    return 0.5 * (probed_tensors if block_coordinate else 1)
MASTER_LSB = {"w8": 1, "w16": 256}


def _int_at_least(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _number_in(name: str, value: object, low: float, high: float, low_open: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and (value > low if low_open else value >= low) and value <= high
    if not ok:
        raise ValueError(f"{name} must be a number in {'(' if low_open else '['}{low}, {high}], got {value!r}")


def _one_of(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run. Defaults are the plain recipe: w8, anchored arithmetic, Gaussian
    Sign-m-SPSA, round-to-nearest, constant lr, no enhancement."""

    seed: int = 0
    steps: int
    batch_size: int
    m: int = 3
    eps_lsb: float = 1        # perturbation scale, int8 LSBs (w8: integer; w16: multiple of 1/256)
    lr: float | tuple[float, ...]  # int8 LSBs per unit of z; one, or one per trainable tensor
    distribution: str = "gaussian"
    estimator: str = "sign_spsa"
    precision: str = "w8"
    arithmetic: str = "anchored"      # "paper": QZO-FF Eq. 6-8 exactly (integer g_q and lr)
    update_rounding: str = "nearest"  # or "stochastic" (unbiased, seeded)
    engine_rounding: str = "nearest"  # w16: how the master copy is rounded for the engine
    momentum_alpha: float = 0.0       # > 0: momentum-guided sampling
    momentum_beta_min: float = 0.5
    momentum_decay_steps: int = 1000
    grad_average: float = 0.0        # > 0: exponential average of the gradient estimates (updates.average_gradients)
    sam_rho: float = 0.0              # > 0: sharpness-aware ascent of rho * eps before each step
    kernel_norm: bool = False
    block_coordinate: bool = False    # each probe perturbs one tensor (samplers.block_coordinate)
    exact_head: bool = False          # the head's gradient in closed form (exact_head.py), FF on the rest
    head_optimizer: str = "sgd"       # exact head: "sgd" (its lr: a float-space rate) or "adam" (lr: int8 LSBs/step)
    mask: str = "none"
    sparsity: float = 0.9             # frozen fraction for topk / random masks
    mask_threshold_lsb: float = 8.0   # threshold masks keep |w| >= this
    schedule: str = "constant"
    schedule_final: float = 0.0       # cosine: final multiplier
    schedule_every: int = 1000        # step: period
    schedule_factor: float = 0.5      # step: factor per period

    def __post_init__(self) -> None:
        _int_at_least("seed", self.seed, 0)
        if self.seed >= 1 << 64:
            raise ValueError(f"seed must be < 2**64, got {self.seed!r}")
        _int_at_least("steps", self.steps, 1)
        _int_at_least("batch_size", self.batch_size, 1)
        _int_at_least("m", self.m, 1)
        _one_of("precision", self.precision, PRECISIONS)
        _number_in("eps_lsb", self.eps_lsb, 0, 127, low_open=True)
        lsb = MASTER_LSB.get(self.precision)
        if lsb and not float(self.eps_lsb * lsb).is_integer():
            raise ValueError(f"eps_lsb must be a multiple of 1/{lsb} int8 LSB for {self.precision}, got "
                             f"{self.eps_lsb!r}" + (" (w8 perturbs by whole LSBs)" if lsb == 1 else ""))
        for r in self.lr if isinstance(self.lr, tuple) else (self.lr,):
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not (math.isfinite(r) and r > 0):
                raise ValueError(f"lr must be a finite number > 0 (or a tuple of them), got {self.lr!r}")
        _one_of("distribution", self.distribution, DISTRIBUTIONS)
        _one_of("estimator", self.estimator, ESTIMATORS)
        _one_of("arithmetic", self.arithmetic, ARITHMETICS)
        if self.arithmetic == "paper" and (self.estimator != "sign_spsa" or self.precision == "fp32"):
            raise ValueError("arithmetic='paper' is the integer Sign-m-SPSA recipe: it needs estimator "
                             f"'sign_spsa' and an integer precision, got {self.estimator!r}, {self.precision!r}")
        _one_of("update_rounding", self.update_rounding, ROUNDINGS)
        _one_of("engine_rounding", self.engine_rounding, ROUNDINGS)
        if self.engine_rounding == "stochastic" and self.precision != "w16":
            raise ValueError(f"engine_rounding='stochastic' rounds the w16 master copy; precision is {self.precision!r}")
        if self.update_rounding == "stochastic" and self.precision == "fp32":
            raise ValueError("update_rounding='stochastic' needs an integer precision (fp32 updates are not rounded)")
        _number_in("momentum_alpha", self.momentum_alpha, 0, 1)
        if self.momentum_alpha == 1:
            raise ValueError("momentum_alpha must be < 1 (0 turns momentum-guided sampling off), got 1")
        if self.momentum_alpha and self.estimator != "sign_spsa":
            raise ValueError("momentum_alpha > 0 (momentum-guided sampling) needs estimator 'sign_spsa', whose "
                             f"gradient is on the scale of z; got {self.estimator!r}")
        _number_in("momentum_beta_min", self.momentum_beta_min, 0, 1)
        _int_at_least("momentum_decay_steps", self.momentum_decay_steps, 0)
        _number_in("grad_average", self.grad_average, 0, 0.999)
        if self.grad_average and self.arithmetic == "paper":
            raise ValueError("grad_average averages float gradient estimates; arithmetic='paper' keeps the "
                             "paper's 8-bit integer g_q")
        _number_in("sam_rho", self.sam_rho, 0, 16)
        if self.sam_rho and lsb and not float(self.sam_rho * self.eps_lsb * lsb).is_integer():
            raise ValueError(f"sam_rho * eps_lsb must be a whole number of master LSBs, got {self.sam_rho!r}")
        if not isinstance(self.kernel_norm, bool):
            raise ValueError(f"kernel_norm must be True or False, got {self.kernel_norm!r}")
        if not isinstance(self.block_coordinate, bool):
            raise ValueError(f"block_coordinate must be True or False, got {self.block_coordinate!r}")
        if not isinstance(self.exact_head, bool):
            raise ValueError(f"exact_head must be True or False, got {self.exact_head!r}")
        if self.exact_head and (self.precision == "fp32" or self.arithmetic == "paper"):
            raise ValueError("exact_head trains the int8 head with the anchored arithmetic: it needs precision "
                             f"w8 or w16 and arithmetic 'anchored', got {self.precision!r}, {self.arithmetic!r}")
        _one_of("head_optimizer", self.head_optimizer, HEAD_OPTIMIZERS)
        if self.head_optimizer != "sgd" and not self.exact_head:
            raise ValueError(f"head_optimizer={self.head_optimizer!r} is the exact head's optimizer: it needs "
                             "exact_head=True")
        _one_of("mask", self.mask, masks.KINDS)
        _number_in("sparsity", self.sparsity, 0, 0.999)
        _number_in("mask_threshold_lsb", self.mask_threshold_lsb, 0, 127)
        _one_of("schedule", self.schedule, schedules.KINDS)
        _number_in("schedule_final", self.schedule_final, 0, 1)
        _int_at_least("schedule_every", self.schedule_every, 1)
        _number_in("schedule_factor", self.schedule_factor, 0, 1, low_open=True)
