"""The training loop: one pure step and a generator over steps.

Printing, evaluation cadence and checkpoints stay in the caller (as in
nanoGPT's train.py). Every random draw derives from (seed, state.step, index),
so a run resumed from a saved TrainState continues bit-exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tflite_fg.estimators import Estimator, LossFn
from tflite_fg.precision import WeightSpace, integer_space
from tflite_fg.updates import GradientTransformation

INT8 = integer_space(8)


@dataclass(frozen=True, eq=False)
class TrainState:
    """Everything a resumed run needs (besides seed and config)."""

    params: list[np.ndarray]  # the WeightSpace's master copy (int8 kernels for w8)
    estimator_state: Any
    transform_state: Any
    step: int = 0
    forward_passes: int = 0


class OnEngine:
    """loss_fn (and its exact-head pass, when it has one) on the int8 kernels the engine runs,
    space.to_engine(master): what the estimators evaluate."""

    def __init__(self, loss_fn: LossFn, space: WeightSpace, seed: int, step: int):
        self.loss_fn, self.space, self.seed, self.step = loss_fn, space, seed, step
        if hasattr(loss_fn, "head"):
            self.head = lambda params: loss_fn.head(space.to_engine(params, seed, step))

    def __call__(self, params: Sequence[np.ndarray]) -> float:
        return self.loss_fn(self.space.to_engine(params, self.seed, self.step))


def init_state(params: Sequence[np.ndarray], estimator: Estimator, transform: GradientTransformation,
               space: WeightSpace = INT8) -> TrainState:
    """Step 0: the space's master copy of the int8 kernels (the caller's arrays are never written)."""
    params = [np.array(p, copy=True) for p in space.from_int8(params)]
    return TrainState(params, estimator.init(params), transform.init(params))


def train_step(
    state: TrainState, loss_fn: LossFn, estimator: Estimator, transform: GradientTransformation, seed: int,
    space: WeightSpace = INT8,
) -> tuple[TrainState, dict]:
    """Estimate g (2m forward passes; +1 with the exact head, whose head-only form needs only that
    one) on the master copy, transform it to updates, apply them.

    loss_fn sees space.to_engine(master): the int8 kernels the engine runs. log["loss"] is the
    mean of the losses the estimator evaluated (the perturbed ones, and the exact head's unperturbed
    one; no extra forward pass for the log).
    """
    step = state.step
    engine_loss = OnEngine(loss_fn, space, seed, step)
    grads, est_state, info = estimator.estimate(engine_loss, state.params, state.estimator_state, seed, step)
    updates, tx_state = transform.update(grads, state.transform_state, state.params)
    params = space.apply(state.params, updates)
    passes = state.forward_passes + info["forward_passes"]
    new = TrainState(params, est_state, tx_state, state.step + 1, passes)
    changed = sum(int(np.count_nonzero(a != b)) for a, b in zip(params, state.params))
    log = {"step": new.step, "loss": float(np.mean(info["losses"])), "forward_passes": passes,
           "changed_weights": changed}
    return new, log


def fit(
    state: TrainState, make_loss_fn: Callable[[int], LossFn], estimator: Estimator,
    transform: GradientTransformation, seed: int, num_steps: int, space: WeightSpace = INT8,
) -> Iterator[tuple[TrainState, dict]]:
    """Yield (state, log) after each step until state.step == num_steps (a total, so a
    resumed state runs only the remaining steps). make_loss_fn(step) binds that step's
    mini-batch, e.g. from rng.minibatch_indices(seed, step, n, batch_size)."""
    while state.step < num_steps:
        state, log = train_step(state, make_loss_fn(state.step), estimator, transform, seed, space)
        yield state, log
