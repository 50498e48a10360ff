"""One benchmark cell: an adaptation problem (Episode) in one training mode, run by every method
the paper compares (method.md §1): zero-shot, BP fp32 and BP QAT (tf_keras / tfmot backprop),
FF fp32 (Sign-m-SPSA on the float Keras model) and FF int8 on the converted TFLite graph
(w16 = the paper's 16w8a, w8 = int8 only), and beside them "FF + exact head" (FF on the body, the dense
head by its exact gradient from one forward pass: tflite_fg/exact_head.py), its own rows, never FF.

Why all in one place: every method must see the same head, the same trainable layers, the same
training examples and the same mini-batches (rng.minibatch_indices(seed, step, ...)), so that
the FF-BP gap measures the estimator and the arithmetic, not the setup.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from converters import backprop, fp32_reference, pipeline
from converters.keras_compat import keras
from tflite_fg import build, objective, trainer
from tflite_fg.config import TrainConfig
from tflite_fg.model import FgModel

FF_PRECISIONS = {"ff-fp32": "fp32", "ff-w16": "w16", "ff-w8": "w8"}
EXACT_HEAD = {"ffh-w16": "w16", "ffh-w8": "w8"}  # FF on the body + the exact head (its own rows, never "FF")
BP_KINDS = {"bp-fp32": "fp32", "bp-qat": "qat"}
TRAINED_METHODS = tuple(BP_KINDS) + tuple(FF_PRECISIONS) + tuple(EXACT_HEAD)
OUTPUT_HEADROOM = pipeline.OUTPUT_HEADROOM  # the int8 graph's logits range over the calibrated one
EVAL_POINTS = 10  # test accuracy is recorded this many times along each run (for the curves)


@dataclass(frozen=True)
class Episode:
    """One adaptation problem: a float model whose head fits it (prototype or the source model's
    own), the data it trains and tests on, and what the converter records."""

    name: str
    float_model: object  # tf_keras model, BN folded (pipeline.prepare_float_model), head in place
    x_train: np.ndarray  # float32, preprocessed for float_model
    y_train: np.ndarray  # int64, 0..C-1
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    input_range: tuple[float, float]
    source: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Mode:
    """Which weights train: ``trainable`` (graph_surgery.select_trainable spec); FF may also update
    only a sparse subset of them (``mask``, ``sparsity``; BP stays dense)."""

    name: str
    trainable: str
    mask: str = "none"
    sparsity: float = 0.9

    @property
    def head_only(self) -> bool:
        return self.trainable == "last:1"


@dataclass(frozen=True)
class Hyper:
    """A method's recipe. lr is in int8 LSBs per unit of z for FF (the head's; the other trainable
    tensors get lr * body_lr_scale, as tools/train.py does) and the optimizer's rate for BP."""

    lr: float
    steps: int
    batch_size: int
    m: int = 3
    eps_lsb: float = 8
    body_lr_scale: float = 0.4
    optimizer: str = "adam"
    estimator: str = "sign_spsa"  # FF: Sign-m-SPSA, or "spsa" (magnitudes; lr then in LSB^2 per unit of loss)
    schedule: str = "constant"  # FF: learning-rate schedule over the run (TrainConfig.schedule)
    grad_average: float = 0.0  # FF: exponential average of the gradient estimates (TrainConfig.grad_average)
    head_lr: float = 0.0  # exact-head methods: the head's rate (see head_optimizer; the body keeps lr * body_lr_scale)
    block_coordinate: bool = False  # FF: each probe perturbs one tensor (TrainConfig.block_coordinate)
    head_optimizer: str = "sgd"  # exact-head methods: "sgd" (head_lr a float rate) or "adam" (int8 LSBs per step)


@dataclass
class Run:
    """What one training run measured; ``curve`` holds (step, forward_passes, wall_s, acc) points,
    wall_s counting training only (evaluations excluded)."""

    method: str
    hyper: dict
    seed: int
    final_acc: float
    forward_passes: int
    wall_s: float
    curve: list[dict]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def eval_steps(steps: int) -> set[int]:
    return {max(1, round(steps * k / EVAL_POINTS)) for k in range(1, EVAL_POINTS + 1)}


def record_point(curve: list[dict], step: int, passes: int, wall: float, acc: float) -> None:
    curve.append({"step": step, "forward_passes": passes, "wall_s": round(wall, 4), "acc": acc})


class Converted:
    """The episode's int8 graph (converted once per episode and mode) and its test-set features."""

    def __init__(self, ep: Episode, mode: Mode, workdir: str | os.PathLike):
        cfg = pipeline.ConvertConfig(trainable=mode.trainable, input_range=ep.input_range,
                                     output_headroom=OUTPUT_HEADROOM,
                                     class_names=ep.class_names, source={**ep.source, "episode": ep.name})
        t0 = time.perf_counter()
        model_bytes, self.meta = pipeline.convert_keras_model(ep.float_model, cfg, ep.x_train)
        self.convert_s = time.perf_counter() - t0
        self.path = pathlib.Path(workdir) / f"{mode.name}.tflite"
        pipeline.save(self.path, model_bytes, self.meta)
        self.model = FgModel(self.path, engine="xnnpack", num_threads=1)
        self.xq_train = self.model.quantize_input(ep.x_train)
        self.y_train = self.model.check_labels(ep.y_train, len(ep.x_train))
        self.y_test = self.model.check_labels(ep.y_test, len(ep.x_test))
        self._test_features = self.model.features(self.model.quantize_input(ep.x_test))

    def accuracy(self, engine_params: list[np.ndarray]) -> float:
        """Test accuracy of the trainable layers on the cached test features (bit-identical to forward)."""
        n, hits = len(self.y_test), 0
        for i in range(0, n, 256):
            feats = tuple(f[i:i + 256] for f in self._test_features)
            hits += int((self.model.forward_features(feats, engine_params).argmax(1) == self.y_test[i:i + 256]).sum())
        return hits / n


def ff_config(hp: Hyper, mode: Mode, precision: str, seed: int, n_train: int, n_tensors: int,
              exact_head: bool = False) -> TrainConfig:
    lr = (hp.lr * hp.body_lr_scale,) * (n_tensors - 1) + ((hp.head_lr if exact_head else hp.lr),)
    eps = int(hp.eps_lsb) if float(hp.eps_lsb).is_integer() else hp.eps_lsb
    return TrainConfig(seed=seed, steps=hp.steps, batch_size=min(hp.batch_size, n_train), m=hp.m, eps_lsb=eps,
                       lr=lr, precision=precision, mask=mode.mask, sparsity=mode.sparsity, exact_head=exact_head,
                       grad_average=hp.grad_average, schedule=hp.schedule, estimator=hp.estimator,
                       block_coordinate=hp.block_coordinate,
                       head_optimizer=hp.head_optimizer if exact_head else "sgd")


def timed_ff_loop(states: Iterator[tuple[trainer.TrainState, dict]], steps: int,
             evaluate: Callable[[trainer.TrainState], float]) -> tuple[list[dict], trainer.TrainState, float]:
    curve, wall, marks, state = [], 0.0, eval_steps(steps), None
    t0 = time.perf_counter()
    for state, _ in states:
        if state.step in marks:
            wall += time.perf_counter() - t0
            record_point(curve, state.step, state.forward_passes, wall, evaluate(state))
            t0 = time.perf_counter()
    return curve, state, wall


def run_ff_int8(conv: Converted, mode: Mode, hp: Hyper, precision: str, seed: int, exact_head: bool = False) -> Run:
    """Sign-m-SPSA on the int8 graph through the LiteRT interpreter (the on-device path); with
    exact_head, the head's gradient in closed form from the same engine (tflite_fg.exact_head)."""
    model = conv.model
    cfg = ff_config(hp, mode, precision, seed, len(conv.xq_train), len(model.meta.trainable), exact_head)
    start = model.initial_params()
    space = build.build_space(cfg)
    est = build.build_estimator(cfg, start, space, head_quant=model.head_quant() if exact_head else None)
    tx = build.build_transform(cfg)
    make_loss = objective.minibatch_loss(model, conv.xq_train, conv.y_train, seed, cfg.batch_size)
    state = trainer.init_state(start, est, tx, space)
    curve, state, wall = timed_ff_loop(trainer.fit(state, make_loss, est, tx, seed, cfg.steps, space), cfg.steps,
                                  lambda s: conv.accuracy(space.to_engine(s.params)))
    return Run(f"ff{'h' if exact_head else ''}-{precision}", dataclasses.asdict(hp), seed, curve[-1]["acc"],
               state.forward_passes, wall, curve)


def run_ff_fp32(ep: Episode, conv: Converted, mode: Mode, hp: Hyper, seed: int) -> Run:
    """The same estimator on the float Keras model (the paper's "FF fp")."""
    ref = fp32_reference.FloatReference(ep.float_model, conv.meta)
    cfg = ff_config(hp, mode, "fp32", seed, len(ep.x_train), len(conv.meta.trainable))
    run = fp32_reference.setup_training(ref, cfg, ep.x_train, ep.y_train)
    curve, state, wall = timed_ff_loop(fp32_reference.fit(run), cfg.steps,
                                  lambda s: ref.accuracy(ep.x_test, ep.y_test, s.params))
    return Run("ff-fp32", dataclasses.asdict(hp), seed, curve[-1]["acc"], state.forward_passes, wall, curve)


def run_bp(ep: Episode, mode: Mode, hp: Hyper, kind: str, seed: int) -> Run:
    """Backprop on the same trainable layers (dense even when FF is masked)."""
    bp = backprop.build_bp_model(ep.float_model, mode.trainable, kind, representative=ep.x_train,
                                 input_range=ep.input_range)
    tr = backprop.BackpropTrainer(bp, hp.optimizer, hp.lr)
    marks, curve = eval_steps(hp.steps), []
    for r in tr.fit_steps(ep.x_train, ep.y_train, hp.steps, hp.batch_size, seed):
        if r["step"] in marks:
            record_point(curve, r["step"], r["forward_passes"], r["wall_s"], tr.accuracy(ep.x_test, ep.y_test))
    return Run(f"bp-{kind}", dataclasses.asdict(hp), seed, curve[-1]["acc"], tr.forward_passes, curve[-1]["wall_s"],
               curve)


def float_accuracy(ep: Episode) -> float:
    logits = ep.float_model.predict(ep.x_test, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == ep.y_test))


def run_cell(ep: Episode, mode: Mode, plan: dict[str, list[Hyper]], seed: int = 0,
             log: Callable[[str], None] = print) -> dict:
    """Zero-shot (float and int8), then every (method, hyper) of ``plan``
    ({method in TRAINED_METHODS: [Hyper, ...]}) on this episode and mode."""
    unknown = set(plan) - set(TRAINED_METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choices: {', '.join(TRAINED_METHODS)}")
    with tempfile.TemporaryDirectory() as tmp:
        conv = Converted(ep, mode, tmp)
        out = {"episode": ep.name, "mode": dataclasses.asdict(mode), "n_train": len(ep.y_train),
               "n_test": len(ep.y_test), "trainable_params": conv.model.trainable_params,
               "convert_s": round(conv.convert_s, 2), "zero_shot": {"fp32": float_accuracy(ep),
                                                                    "int8": conv.accuracy(conv.model.initial_params())},
               "runs": []}
        for method, hypers in plan.items():
            for hp in hypers:
                if method in EXACT_HEAD:
                    run = run_ff_int8(conv, mode, hp, EXACT_HEAD[method], seed, exact_head=True)
                elif method in FF_PRECISIONS and method != "ff-fp32":
                    run = run_ff_int8(conv, mode, hp, FF_PRECISIONS[method], seed)
                elif method == "ff-fp32":
                    run = run_ff_fp32(ep, conv, mode, hp, seed)
                else:
                    run = run_bp(ep, mode, hp, BP_KINDS[method], seed)
                    keras.backend.clear_session()
                head = f" head_lr={hp.head_lr:g} ({hp.head_optimizer})" if hp.head_lr else ""
                log(f"  {ep.name} {mode.name} {method} lr={hp.lr:g}{head}: {out['zero_shot']['int8']:.3f} -> "
                    f"{run.final_acc:.3f} ({run.forward_passes} passes, {run.wall_s:.1f} s)")
                out["runs"].append(run.as_dict())
    return out
