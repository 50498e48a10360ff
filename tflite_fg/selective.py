"""Training under a neuron budget: trainer.fit in segments between re-selections.

At each round start the Selector picks the neurons (velocity reads their outputs on a fixed
validation batch, through the graph's probe signature on a device) and the estimator is rebuilt
with that support: only the selected neurons' perturbations are drawn, so only they move. The
TrainState (weights, estimator and transform state) carries over from round to round unchanged.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Sequence

import numpy as np

from tflite_fg import selection, trainer
from tflite_fg.estimators import Estimator, LossFn
from tflite_fg.model import FgModel
from tflite_fg.precision import WeightSpace
from tflite_fg.selection import Selector
from tflite_fg.updates import GradientTransformation

Masks = list[np.ndarray]


def fit_selected(
    state: trainer.TrainState, make_loss_fn: Callable[[int], LossFn],
    make_estimator: Callable[[Masks], Estimator], transform: GradientTransformation, seed: int,
    num_steps: int, space: WeightSpace, selector: Selector,
    masks_of: Callable[[Sequence[np.ndarray]], Masks],
    outputs_of: Callable[[trainer.TrainState], Sequence[np.ndarray]] | None = None,
) -> Iterator[tuple[trainer.TrainState, dict]]:
    """trainer.fit with the selector's neurons only. masks_of: channel selection -> element masks
    shaped like the kernels; outputs_of(state): neuron outputs with the state's engine weights
    (velocity only). Logs gain "selected_params" (the round's selection size)."""
    if selector.needs_outputs and outputs_of is None:
        raise ValueError(f"{selector.cfg.strategy} selection needs outputs_of (the neuron outputs)")
    estimator, every = None, selector.cfg.every
    while state.step < num_steps:
        if estimator is None or selector.due(state.step):
            outputs = outputs_of(state) if selector.needs_outputs else None
            estimator = make_estimator(masks_of(selector.select(state.step, outputs)))
        stop = min(num_steps, (state.step // every + 1) * every) if selector.cfg.dynamic else num_steps
        for state, log in trainer.fit(state, make_loss_fn, estimator, transform, seed, stop, space):
            yield state, {**log, "selected_params": selector.history[-1]["params"]}


def fit_on_graph(
    model: FgModel, xq_probe: np.ndarray, state: trainer.TrainState, make_loss_fn: Callable[[int], LossFn],
    make_estimator: Callable[[Masks], Estimator], transform: GradientTransformation, seed: int, num_steps: int,
    space: WeightSpace, selector: Selector,
) -> Iterator[tuple[trainer.TrainState, dict]]:
    """fit_selected on a converted model: masks in TFLite's kernel layouts, velocity's outputs from
    its probe signature on the int8 batch xq_probe (what the device runs)."""
    shapes, axes = [t.shape for t in model.meta.trainable], selection.tflite_axes(model.meta)
    return fit_selected(state, make_loss_fn, make_estimator, transform, seed, num_steps, space, selector,
                        lambda chosen: selection.element_masks(chosen, shapes, axes),
                        lambda s: model.neuron_outputs(xq_probe, space.to_engine(s.params)))
