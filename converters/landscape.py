"""Loss-landscape runs (tflite_fg/landscape.py) on the default task: BP fp32, FF fp32, FF int8 w16
and w8, from the same start point on the same data and mini-batches, each recording its weight
trajectory in int8-LSB units; and the loss function each is judged by (the int8 graph for the int8
runs, the float model for the float ones), on the training set with the frozen part cached, so a
31 x 31 grid costs seconds.
"""
from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from converters import backprop, fp32_reference, pipeline, qat
from converters import tasks as ctasks
from converters.benchmark import Hyper, Mode, ff_config
from tflite_fg import build, landscape, objective, tasks, trainer
from tflite_fg.config import TrainConfig
from tflite_fg.model import FgModel

METHODS = ("bp-fp32", "ff-fp32", "ff-w16", "ff-w8")
MODES = {"LP": "last:1", "FT": "last:4"}  # linear probe (the head) and the demo's last block


@dataclass(frozen=True)
class Recipe:
    """One method's training (benchmark.Hyper: FF lr in int8 LSBs per unit of z, BP Adam's rate)."""

    method: str
    hyper: Hyper


@dataclass
class Setup:
    """The task, the converted int8 graph and the float model it came from, for one mode."""

    mode: str
    task: tasks.FewShotTask
    model: FgModel
    ref: fp32_reference.FloatReference
    float_model: object


def setup(mode: str, workdir: str | os.PathLike, cache: str | None = None, shots: int = 20, n_test: int = 1000,
          seed: int = 0) -> Setup:
    """The default task (ResNet-8 -> Fashion-MNIST few-shot) converted with the mode's trainable layers."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    task = tasks.load_task("fmnist", shots, n_test, seed, cache)
    path = pathlib.Path(workdir) / f"{mode}.tflite"
    pipeline.save(path, *ctasks.convert_fewshot("fmnist", task, MODES[mode], cache=cache))
    model = FgModel(path, engine="builtin", num_threads=1)
    float_model = ctasks.prototype_model(ctasks.load_backbone(cache=cache), task.x_support, task.y_support,
                                         model.meta.num_classes)
    return Setup(mode, task, model, fp32_reference.FloatReference(float_model, model.meta), float_model)


def _snapshot_steps(steps: int, snapshots: int) -> set[int]:
    return {int(round(steps * k / snapshots)) for k in range(snapshots + 1)}


def _ff_config(s: Setup, r: Recipe, precision: str, seed: int) -> TrainConfig:
    return ff_config(r.hyper, Mode(s.mode, MODES[s.mode]), precision, seed, len(s.task.y_support),
                     len(s.model.meta.trainable))


def train(s: Setup, r: Recipe, snapshots: int = 20, seed: int = 0) -> dict:
    """Train one method, keeping `snapshots` + 1 points of its trajectory (flat, int8-LSB units)."""
    x, y = s.task.x_support, s.task.y_support
    hp = r.hyper
    marks, points, steps = _snapshot_steps(hp.steps, snapshots), [], []
    t0 = time.perf_counter()

    def keep(step: int, params) -> None:
        if step in marks:
            steps.append(step)
            points.append(landscape.flatten(params))

    if r.method == "bp-fp32":
        bp = backprop.build_bp_model(s.float_model, [t.layer for t in s.model.meta.trainable], "fp32")
        tr = backprop.BackpropTrainer(bp, hp.optimizer, hp.lr)
        metas = {t.layer: t for t in s.model.meta.trainable}

        def lsb_params():
            return [qat.keras_to_native(metas[n].op, v.numpy()) / metas[n].scale
                    for n, v in zip(bp.trainable, bp.kernel_variables())]

        keep(0, lsb_params())
        for rec in tr.fit_steps(x, y, hp.steps, hp.batch_size, seed):
            keep(rec["step"], lsb_params())
    elif r.method == "ff-fp32":
        cfg = _ff_config(s, r, "fp32", seed)
        run = fp32_reference.setup_training(s.ref, cfg, x, y)
        keep(0, run.state.params)
        for state, _ in fp32_reference.fit(run):
            keep(state.step, state.params)
    elif r.method in ("ff-w16", "ff-w8"):
        cfg = _ff_config(s, r, r.method[3:], seed)
        start, space = s.model.initial_params(), build.build_space(cfg)
        est, tx = build.build_estimator(cfg, start, space), build.build_transform(cfg)
        xq = s.model.quantize_input(x)
        state = trainer.init_state(start, est, tx, space)
        keep(0, [p / space.lsb for p in state.params])
        for state, _ in trainer.fit(state, objective.minibatch_loss(s.model, xq, y, seed, cfg.batch_size),
                                    est, tx, seed, cfg.steps, space):
            keep(state.step, [p / space.lsb for p in state.params])
    else:
        raise ValueError(f"method {r.method!r}: choose one of {', '.join(METHODS)}")
    return {"steps": steps, "trajectory": np.stack(points), "train_s": time.perf_counter() - t0}


def loss_function(s: Setup, method: str) -> Callable[[list[np.ndarray]], float]:
    """The training-set loss a method is judged by, params in int8-LSB units: the int8 graph (the
    params rounded to its int8 kernels) for the int8 runs, the float model for the float ones."""
    x, y = s.task.x_support, s.task.y_support
    if method.startswith("ff-w"):
        full = objective.minibatch_loss(s.model, s.model.quantize_input(x), y, 0, len(x))(0)
        return lambda p: full([np.clip(np.rint(w), -127, 127).astype(np.int8) for w in p])
    full = s.ref.minibatch_loss(x, y, 0, len(x))(0)
    return lambda p: full([np.asarray(w, np.float32) for w in p])


def accuracy(s: Setup, method: str, params: list[np.ndarray]) -> float:
    """Test accuracy at params (int8-LSB units), judged like loss_function."""
    x, y = s.task.x_test, s.task.y_test
    if method.startswith("ff-w"):
        return s.model.accuracy(s.model.quantize_input(x), y,
                                [np.clip(np.rint(w), -127, 127).astype(np.int8) for w in params])
    return s.ref.accuracy(x, y, [np.asarray(w, np.float32) for w in params])
