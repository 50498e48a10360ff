"""Neuron selection under an update budget (method.md §2), for FF int8 and for BP fp32 on one episode.

The episode's network is converted with every conv and dense kernel trainable ("all"): the budget
is a fraction of all of them, and the selection (tflite_fg/selection.py) decides which output
channels may change. FF int8 draws perturbations for the selected neurons only and reads velocity's
neuron outputs from the graph's `probe` signature (what a device would do); BP fp32 masks the
gradient and the optimizer's update of the same float network and reads the same layers' outputs
from Keras. Both see the same mini-batches (rng.minibatch_indices), the same probe batch and, for
the random strategy, the same neurons.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from converters import backprop
from converters.benchmark import (Converted, Episode, Hyper, Mode, eval_steps, ff_config, record_point,
                                  timed_ff_loop)
from converters.keras_compat import keras
from tflite_fg import build, memory, objective, selection, selective, trainer

ALL = Mode("all", "all")
BUDGETS = (0.088, 0.151, 0.274, 0.5, 1.0)
METHODS = ("ff-w16", "ff-w8", "bp-fp32")
FF_PRECISIONS = {"ff-w16": "w16", "ff-w8": "w8"}


@dataclass(frozen=True)
class Setting:
    """One run: method, strategy, budget, and how often dynamic strategies re-select."""

    method: str
    strategy: str
    budget: float
    hyper: Hyper
    every: int
    init: str = "random"

    def selection_config(self, seed: int) -> selection.SelectionConfig:
        return selection.SelectionConfig(self.strategy, self.budget, self.every, self.init, seed=seed)


def _result(setting: Setting, seed: int, selector: selection.Selector, curve: list[dict], passes: int,
            wall: float, frozen_unchanged: bool) -> dict:
    return {"method": setting.method, "strategy": setting.strategy, "budget": setting.budget, "seed": seed,
            "hyper": dataclasses.asdict(setting.hyper), "every": setting.every, "init": setting.init,
            "final_acc": curve[-1]["acc"], "forward_passes": passes, "wall_s": wall, "curve": curve,
            "budget_params": selector.budget, "total_params": selector.layout.total_params,
            "selections": selector.history, "frozen_unchanged": frozen_unchanged}


def _never_selected_unchanged(before: list[np.ndarray], after: list[np.ndarray], ever: list[np.ndarray]) -> bool:
    return all(np.array_equal(b[~m], a[~m]) for b, a, m in zip(before, after, ever))


def run_ff(conv: Converted, x_probe: np.ndarray, setting: Setting, seed: int) -> dict:
    """Sign-m-SPSA on the int8 graph, perturbing only the selected neurons."""
    model = conv.model
    if not model.has_probe and setting.strategy == "velocity":
        raise ValueError(f"{conv.path}: velocity needs the probe signature; reconvert the model")
    cfg = ff_config(setting.hyper, ALL, FF_PRECISIONS[setting.method], seed, len(conv.xq_train),
                    len(model.meta.trainable))
    start = model.initial_params()
    selector = selection.tflite_selector(setting.selection_config(seed), model.meta, start)
    space, tx = build.build_space(cfg), build.build_transform(cfg)
    ever = [np.zeros(t.shape, bool) for t in model.meta.trainable]

    def make_estimator(support: list[np.ndarray]):
        for e, s in zip(ever, support):
            e |= s
        return build.build_estimator(cfg, start, space, support)

    states = selective.fit_on_graph(
        model, model.quantize_input(x_probe), trainer.init_state(start, build.build_estimator(cfg, start, space), tx, space),
        objective.minibatch_loss(model, conv.xq_train, conv.y_train, seed, cfg.batch_size), make_estimator, tx,
        seed, cfg.steps, space, selector)
    curve, state, wall = timed_ff_loop(states, cfg.steps, lambda s: conv.accuracy(space.to_engine(s.params)))
    unchanged = _never_selected_unchanged(start, space.to_engine(state.params), ever)
    return _result(setting, seed, selector, curve, state.forward_passes, wall, unchanged)


def run_bp(ep: Episode, x_probe: np.ndarray, setting: Setting, seed: int) -> dict:
    """Adam on the float network, gradient and update masked to the selected neurons."""
    bp = backprop.build_bp_model(ep.float_model, ALL.trainable, "fp32")
    tr = backprop.BackpropTrainer(bp, setting.hyper.optimizer, setting.hyper.lr)
    axes, start = bp.channel_axes(), [v.numpy() for v in bp.kernel_variables()]
    shapes = [w.shape for w in start]
    lay = selection.layout(bp.trainable, shapes, axes)
    selector = selection.Selector(setting.selection_config(seed), lay,
                                  selection.channel_magnitude(start, axes, [1.0] * len(start)))
    ever = [np.zeros(s, bool) for s in shapes]
    marks, curve, steps, every = eval_steps(setting.hyper.steps), [], setting.hyper.steps, setting.every
    wall = 0.0
    while tr.steps < steps:
        if selector.due(tr.steps):
            outputs = bp.neuron_outputs(x_probe) if selector.needs_outputs else None
            masks = selection.element_masks(selector.select(tr.steps, outputs), shapes, axes)
            ever = [e | m for e, m in zip(ever, masks)]
            tr.set_update_masks(masks)
        stop = min(steps, (tr.steps // every + 1) * every) if selector.cfg.dynamic else steps
        for r in tr.fit_steps(ep.x_train, ep.y_train, stop - tr.steps, setting.hyper.batch_size, seed):
            if r["step"] in marks:
                record_point(curve, r["step"], r["forward_passes"], wall + r["wall_s"], tr.accuracy(ep.x_test, ep.y_test))
        wall += r["wall_s"]
    unchanged = _never_selected_unchanged(start, [v.numpy() for v in bp.kernel_variables()], ever)
    return _result(setting, seed, selector, curve, tr.forward_passes, wall, unchanged)


def update_memory(model_path: str, batch: int, m: int = 3) -> dict[str, float]:
    """Bytes of trainer state per trained parameter (memory.estimate on the all-trainable graph):
    what each parameter left out of the budget saves. Frozen weights, activations and the engine
    are not counted here (channel selection does not shrink them, except BP activations when the
    earliest selected layer moves up: not modelled)."""
    fields = ("trainable", "master", "perturbation", "gradient", "optimizer_state")
    out = {}
    for mode, opt in (("ff-w16", "sgd"), ("ff-w8", "sgd"), ("bp-fp32", "adam")):
        b = memory.estimate(model_path, batch, mode, m=m, optimizer=opt)
        out[mode] = sum(getattr(b, f) for f in fields) / b.trainable_params
    return out


def run_settings(ep: Episode, settings: list[Setting], seed: int, probe_per_class: int, workdir: str,
                 log=print) -> dict:
    """Every setting on one episode and seed: the graph is converted once (FF), BP builds its own."""
    t0 = time.perf_counter()
    x_probe = selection.probe_batch(ep.x_train, ep.y_train, probe_per_class, seed)
    conv = Converted(ep, ALL, workdir) if any(s.method in FF_PRECISIONS for s in settings) else None
    out = {"episode": ep.name, "seed": seed, "n_train": len(ep.y_train), "n_test": len(ep.y_test),
           "probe_examples": len(x_probe), "runs": []}
    if conv is not None:
        out["zero_shot_int8"] = conv.accuracy(conv.model.initial_params())
        out["update_bytes_per_param"] = update_memory(str(conv.path), settings[0].hyper.batch_size)
    for s in settings:
        run = run_ff(conv, x_probe, s, seed) if s.method in FF_PRECISIONS else run_bp(ep, x_probe, s, seed)
        if s.method not in FF_PRECISIONS:
            keras.backend.clear_session()
        log(f"  {ep.name} {s.method} {s.strategy} budget={s.budget:g} lr={s.hyper.lr:g}: {run['final_acc']:.3f} "
            f"({run['budget_params']} of {run['total_params']} params budget, {run['wall_s']:.1f} s)")
        out["runs"].append(run)
    out["unit_s"] = round(time.perf_counter() - t0, 1)
    return out
