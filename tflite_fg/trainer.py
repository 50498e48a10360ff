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
from tflite_fg.updates import GradientTransformation, apply_updates_int8


@dataclass(frozen=True, eq=False)
class TrainState:
    """Everything a resumed run needs (besides seed and config)."""

    params: list[np.ndarray]
    estimator_state: Any
    transform_state: Any
    step: int = 0
    forward_passes: int = 0


def init_state(params: Sequence[np.ndarray], estimator: Estimator, transform: GradientTransformation) -> TrainState:
    """Step 0 over copies of the int8 params (the caller's arrays are never written)."""
    for i, p in enumerate(params):
        if np.asarray(p).dtype != np.int8:
            raise TypeError(f"params[{i}] must be int8 (quantize first), got {np.asarray(p).dtype}")
    params = [np.array(p, copy=True) for p in params]
    return TrainState(params, estimator.init(params), transform.init(params))


def train_step(
    state: TrainState, loss_fn: LossFn, estimator: Estimator, transform: GradientTransformation, seed: int,
) -> tuple[TrainState, dict]:
    """Estimate g (2m forward passes), transform it to integer updates, apply them saturating.

    log["loss"] is the mean of the 2m perturbed losses (free; no extra forward pass).
    """
    grads, est_state, info = estimator.estimate(loss_fn, state.params, state.estimator_state, seed, state.step)
    updates, tx_state = transform.update(grads, state.transform_state, state.params)
    params = apply_updates_int8(state.params, updates)
    passes = state.forward_passes + info["forward_passes"]
    new = TrainState(params, est_state, tx_state, state.step + 1, passes)
    changed = sum(int(np.count_nonzero(a != b)) for a, b in zip(params, state.params))
    log = {"step": new.step, "loss": float(np.mean(info["losses"])), "forward_passes": passes,
           "changed_weights": changed}
    return new, log


def fit(
    state: TrainState, make_loss_fn: Callable[[int], LossFn], estimator: Estimator,
    transform: GradientTransformation, seed: int, num_steps: int,
) -> Iterator[tuple[TrainState, dict]]:
    """Yield (state, log) after each step until state.step == num_steps (a total, so a
    resumed state runs only the remaining steps). make_loss_fn(step) binds that step's
    mini-batch, e.g. from rng.minibatch_indices(seed, step, n, batch_size)."""
    while state.step < num_steps:
        state, log = train_step(state, make_loss_fn(state.step), estimator, transform, seed)
        yield state, log
