"""Where a training step's time goes: the engine's invokes vs. everything the orchestrator adds.

The ideal step is 2m invokes of `forward` on the batch; the orchestrator adds perturbation
generation, candidate weights, the loss and the update. `step_profile` times real training steps
and, inside them, every call that reaches the interpreter, so the overhead is measured, not
inferred. Timing only: numbers go to tools/bench_perf.py, never into a unit test.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tflite_fg import build, objective, trainer
from tflite_fg.config import TrainConfig
from tflite_fg.model import FgModel


def seconds_per_call(fn: Callable[[], object], min_time: float = 0.3, warmup: int = 2, repeats: int = 3) -> float:
    """Best of `repeats` averages over at least `min_time` seconds each (the least-disturbed estimate)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        best = min(best, elapsed / n)
    return best


class _TimedModel:
    """Wraps the model's interpreter calls with a stopwatch (the rest of FgModel is untouched)."""

    def __init__(self, model: FgModel):
        self.model, self.engine_s = model, 0.0
        for name in ("forward", "forward_features", "features"):
            setattr(self, name, self._timed(getattr(model, name)))

    def _timed(self, fn: Callable) -> Callable:
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.engine_s += time.perf_counter() - t0
        return call

    def __getattr__(self, name):
        return getattr(self.model, name)

    # FgModel's own loss code, run against the timed forward passes
    loss = FgModel.loss
    loss_features = FgModel.loss_features


@dataclass(frozen=True)
class StepProfile:
    step_s: float          # wall time of one training step
    engine_s: float        # of which inside interpreter calls (prefix, suffix or forward)
    forward_s: float       # one unsplit `forward` invoke on the same batch, alone
    passes: int            # forward passes per step (2m, + 2 with SAM)
    cache: str             # frozen-prefix cache mode used

    @property
    def ideal_s(self) -> float:
        """2m plain forward invokes: what a step would cost with a free orchestrator and no cache."""
        return self.passes * self.forward_s

    @property
    def overhead(self) -> float:
        """Orchestrator time as a fraction of the step's own interpreter time."""
        return (self.step_s - self.engine_s) / self.engine_s

    def as_dict(self) -> dict:
        return {"step_ms": 1e3 * self.step_s, "engine_ms": 1e3 * self.engine_s, "forward_ms": 1e3 * self.forward_s,
                "ideal_ms": 1e3 * self.ideal_s, "passes": self.passes, "cache": self.cache,
                "overhead": self.overhead, "speedup_vs_ideal": self.ideal_s / self.step_s}


def step_profile(model: FgModel, xq: np.ndarray, y: np.ndarray, cfg: TrainConfig, cache: str = "auto",
                 steps: int = 20, warmup: int = 3) -> StepProfile:
    """Time `steps` real training steps of cfg (after `warmup`) on the int8 data (xq, y)."""
    timed = _TimedModel(model)
    initial = model.initial_params()
    space = build.build_space(cfg)
    estimator, transform = build.build_estimator(cfg, initial, space), build.build_transform(cfg)
    state = trainer.init_state(initial, estimator, transform, space)
    make_loss = objective.minibatch_loss(timed, xq, y, cfg.seed, cfg.batch_size, cache)  # type: ignore[arg-type]
    for state, _ in trainer.fit(state, make_loss, estimator, transform, cfg.seed, warmup, space):
        pass
    timed.engine_s, passes0, t0 = 0.0, state.forward_passes, time.perf_counter()
    for state, _ in trainer.fit(state, make_loss, estimator, transform, cfg.seed, warmup + steps, space):
        pass
    step_s = (time.perf_counter() - t0) / steps
    xb = xq[: min(cfg.batch_size, len(xq))]
    forward_s = seconds_per_call(lambda: model.forward(xb, initial))
    return StepProfile(step_s, timed.engine_s / steps, forward_s, (state.forward_passes - passes0) // steps,
                       objective.resolve_cache(model, xq, cache))
