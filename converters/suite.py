"""The paper's experiments (method.md §1) on real offline data: four tasks, each a set of
variants (table rows) x training modes, episodes for validation and for test, and a small
hyper-parameter grid per method. tools/bench.py runs them; converters.benchmark runs one cell.

Validation episodes never touch a test image: few-shot tasks draw them from other data (the
Fashion-MNIST train split) or other seeds (the 200 LFW crops and the 10 sound categories are all
there is, so their validation splits are other partitions of the same pool: said in the report);
fmnist-c holds out 1/9 of the adaptation set.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from converters import benchmark, fmnist_cnn, pipeline
from converters import tasks as ctasks
from converters.benchmark import EXACT_HEAD, TRAINED_METHODS, Episode, Hyper, Mode, run_cell
from tflite_fg import assets, fmnist_c, sounds, tasks
from tflite_fg.metadata import CONVERTER_VERSION

SPLITS = ("val", "test")
VAL_SEED_OFFSET = 1000  # validation episode i uses seed 1000 + i: disjoint from test seeds 0..999


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark table: rows = variants x modes, columns = methods."""

    name: str
    what: str                      # one line for the report
    variants: tuple[str, ...]
    modes: tuple[Mode, ...]
    episodes: dict[str, int]       # split -> episodes of the full suite
    ff_steps: int
    bp_steps: int
    batch_size: int
    make_episode: Callable[[str, str, int, str | None], Episode]  # (variant, split, index, cache)
    grids: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=lambda: dict(GRIDS))

    def hyper(self, method: str, lr: float, scale: float = 1.0) -> Hyper:
        """The method's recipe at grid value lr (for the exact-head methods: the head's rate)."""
        steps = max(1, int(round((self.bp_steps if method.startswith("bp") else self.ff_steps) * scale)))
        average = GRAD_AVERAGE.get(method, 0.0)
        if method in EXACT_HEAD:
            return Hyper(lr=EXACT_HEAD_BODY_LR[method], head_lr=lr, steps=steps, batch_size=self.batch_size,
                         grad_average=average)
        return Hyper(lr=lr, steps=steps, batch_size=self.batch_size, grad_average=average)

    def mode(self, name: str) -> Mode:
        for m in self.modes:
            if m.name == name:
                return m
        raise ValueError(f"{self.name}: unknown mode {name!r}; choices: {', '.join(m.name for m in self.modes)}")


# Learning-rate grids: BP Adam rates; FF rates in int8 LSBs per unit of z (w8 rounds updates to whole
# LSBs, so it needs larger ones: docs/ablation.md); the exact-head methods' grid is the head's float
# SGD rate, their FF body keeping EXACT_HEAD_BODY_LR (the rate ff-w16 / ff-w8 choose on most rows).
# Each grid reaches one step past where the previous suite's choices sat, so no choice is at an edge.
GRIDS: dict[str, tuple[float, ...]] = {
    "bp-fp32": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    "bp-qat": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    "ff-fp32": (0.1, 0.25, 0.5, 1.0, 2.0),
    "ff-w16": (0.1, 0.25, 0.5, 1.0, 2.0),
    "ff-w8": (0.25, 0.5, 1.0, 2.0, 4.0),
    "ffh-w16": (0.01, 0.03, 0.1, 0.3, 1.0),
    "ffh-w8": (0.01, 0.03, 0.1, 0.3, 1.0),
}
EXACT_HEAD_BODY_LR = {"ffh-w16": 1.0, "ffh-w8": 2.0}
# The w8 recipe averages its gradient estimates over ~10 steps: +2.9 / +7.2 points over plain w8 in
# docs/ablation.md (levers), within 1.7 / 0.3 of w16, for which averaging changes nothing (-0.1 / -0.3).
GRAD_AVERAGE = {"ff-w8": 0.9, "ffh-w8": 0.9}


# Step caps: each run is evaluated at 10 points and validation picks the step count as well as the
# rate (tools/bench.py), so the caps only need to reach past where validation stops improving.
# 3x the budgets of the first suite (1,000 FF / 100 BP steps, fmnist-c 300), where FF was still rising.
FF_STEPS, BP_STEPS = 3000, 300


def grid_value(method: str, hyper: dict) -> float:
    """The grid coordinate of a run's recipe (Hyper as a dict)."""
    return hyper["head_lr"] if method in EXACT_HEAD else hyper["lr"]


def _seed(split: str, index: int) -> int:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; choices: {SPLITS}")
    return index + (VAL_SEED_OFFSET if split == "val" else 0)


@functools.lru_cache(maxsize=4)
def _backbone(name: str, cache: str | None):
    return ctasks.load_backbone(name, cache)


# ---- fmnist-fewshot: ResNet-8 (CIFAR-10) -> Fashion-MNIST, 5-way 5-shot, 15 queries per class ----

def _fmnist_episode(variant: str, split: str, index: int, cache: str | None) -> Episode:
    t = tasks.load_fmnist_episode(5, 5, 15, _seed(split, index), "train" if split == "val" else "test", cache)
    model = ctasks.prototype_model(_backbone("resnet8", cache), t.x_support, t.y_support, 5)
    return Episode(f"fmnist-fewshot/{variant}/{split}{index}", model, t.x_support, t.y_support, t.x_test, t.y_test,
                   t.classes, tasks.INPUT_RANGE, {"backbone": "resnet8", "classes": list(t.classes)})


# ---- vww-faces: MobileNetV1 VWW (person / non-person) -> LFW faces vs non-faces, ProtoNet head ----
# Its own head calls every upscaled 25x25 crop "non_person" (zero-shot 50%, and 100 BP steps do not
# move it), so the head is the prototype one here too; source_head_accuracy() reports the former.

def source_head_accuracy(cache: str | None = None) -> float:
    """The VWW model's own person / non-person head on all 200 LFW crops (faces = person)."""
    x, y = tasks.lfw_faces()
    bb = tasks.get_backbone("mobilenetv1_vww")
    model = pipeline.prepare_float_model(_backbone("mobilenetv1_vww", cache))
    logits = model.predict(tasks.data.to_rgb(x, bb.pixel_scale, bb.pixel_offset, bb.input_size), verbose=0)
    return float(np.mean(logits.argmax(1) == y))


def _vww_episode(variant: str, split: str, index: int, cache: str | None) -> Episode:
    t = tasks.load_vww_faces(int(variant.lstrip("k")), _seed(split, index))
    model = ctasks.prototype_model(_backbone("mobilenetv1_vww", cache), t.x_support, t.y_support, 2)
    return Episode(f"vww-faces/{variant}/{split}{index}", model, t.x_support, t.y_support, t.x_test, t.y_test,
                   t.classes, tasks.VWW_INPUT_RANGE, {"backbone": "mobilenetv1_vww"})


# ---- fmnist-c: our CNN (clean Fashion-MNIST) -> 15 corruptions, adapt on 90%, test on 10% ----

@functools.lru_cache(maxsize=3)
def _fmnist_c_split(severity: str, cache: str | None):
    return fmnist_c.load_fmnist_c(severity, n_images=10_000, seed=0, cache=cache)


@functools.lru_cache(maxsize=1)
def _fmnist_cnn(cache: str | None):
    return pipeline.prepare_float_model(fmnist_cnn.load_or_train(cache))


def _fmnist_c_episode(variant: str, split: str, index: int, cache: str | None) -> Episode:
    """Test episode i: the whole adaptation set, training seed i. Validation: 8/9 of it trains and
    the other 1/9 validates (a seeded split), so tuning never sees the 10% test part."""
    s = _fmnist_c_split(variant, cache)
    x_tr, y_tr, x_te, y_te = s.x_adapt, s.y_adapt, s.x_test, s.y_test
    if split == "val":
        order = np.random.default_rng(_seed(split, index)).permutation(len(y_tr))
        cut = len(order) * 8 // 9
        x_tr, y_tr, x_te, y_te = x_tr[order[:cut]], y_tr[order[:cut]], x_tr[order[cut:]], y_tr[order[cut:]]
    return Episode(f"fmnist-c/{variant}/{split}{index}", _fmnist_cnn(cache), x_tr, y_tr, x_te, y_te,
                   tuple(fmnist_c.CLASSES), fmnist_c.INPUT_RANGE, {"model": "fmnist_cnn", "severity": variant})


# ---- sounds-fewshot: DS-CNN keyword spotting -> sonic-pi sample categories, 5-way 1-shot ----

@functools.lru_cache(maxsize=1)
def _sound_set(cache: str | None):
    assets.ensure_assets(cache, which=("sounds",))
    return sounds.load_sounds(cache)


def _sounds_episode(variant: str, split: str, index: int, cache: str | None) -> Episode:
    t = sounds.sounds_episode(_sound_set(cache), ways=5, shots=1, seed=_seed(split, index))
    model = ctasks.prototype_model(ctasks.load_source_model(sounds.MODEL_NAME, cache), t.x_support, t.y_support, 5)
    return Episode(f"sounds-fewshot/{variant}/{split}{index}", model, t.x_support, t.y_support, t.x_test, t.y_test,
                   tuple(t.classes), sounds.INPUT_RANGE, {"model": "ds-cnn kws", "classes": list(t.classes)})


TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    TaskSpec("fmnist-fewshot", "MLPerf Tiny ResNet-8 (CIFAR-10) -> Fashion-MNIST test split, 5-way 5-shot, "
             "15 queries per class, ProtoNet head", ("5w5s",),
             (Mode("LP", "last:1"), Mode("FT", "last:4")), {"val": 3, "test": 100}, FF_STEPS, BP_STEPS, 64, _fmnist_episode),
    TaskSpec("vww-faces", "MLPerf Tiny MobileNetV1 VWW (person / non-person) -> scikit-image LFW "
             "faces vs non-faces, k shots per class, the rest test, ProtoNet head", ("k10", "k20"),
             (Mode("LP", "last:1"), Mode("FT", "last:3")), {"val": 2, "test": 20}, FF_STEPS, BP_STEPS, 64, _vww_episode),
    TaskSpec("fmnist-c", "our CNN (clean Fashion-MNIST train) -> Fashion-MNIST test with 15 corruptions, "
             "adapt on 90%, test on 10%, per severity", ("easy", "medium", "hard"),
             (Mode("dec1", "last:1"), Mode("dec3", "last:3"), Mode("dec3-sparse90", "last:3", "topk", 0.9)),
             {"val": 1, "test": 3}, FF_STEPS, 3 * BP_STEPS, 64, _fmnist_c_episode),
    TaskSpec("sounds-fewshot", "MLPerf Tiny DS-CNN keyword spotting -> Debian sonic-pi-samples categories, "
             "5-way 1-shot, ProtoNet head", ("5w1s",),
             (Mode("LP", "last:1"), Mode("FT-full", "all")), {"val": 3, "test": 100}, FF_STEPS, BP_STEPS, 64, _sounds_episode),
]}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choices: {', '.join(TASKS)}")
    return TASKS[name]


@dataclass(frozen=True)
class Unit:
    """One worker job: one episode in one mode, with the hypers to run per method."""

    task: str
    variant: str
    mode: str
    split: str
    index: int
    plan: dict[str, list[dict]]  # method -> [Hyper as dict]

    def key(self) -> str:
        """Changes whenever anything that decides the result changes (reuse finished units)."""
        spec = json.dumps({**dataclasses.asdict(self), "converter_version": CONVERTER_VERSION,
                           "output_headroom": benchmark.OUTPUT_HEADROOM}, sort_keys=True)
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    def __hash__(self) -> int:  # the plan is a dict; the key covers every field
        return hash(self.key())

    def path(self, root: str | os.PathLike) -> str:
        return os.path.join(root, self.task, self.variant, self.mode, f"{self.split}{self.index}.json")


def run_unit(unit: Unit, cache: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Build the unit's episode and run its cell (training seed = episode index)."""
    t0 = time.perf_counter()
    spec = get_task(unit.task)
    ep = spec.make_episode(unit.variant, unit.split, unit.index, cache)
    plan = {m: [Hyper(**h) for h in hs] for m, hs in unit.plan.items()}
    unknown = set(plan) - set(TRAINED_METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}")
    cell = run_cell(ep, spec.mode(unit.mode), plan, seed=unit.index, log=log)
    return {"unit": dataclasses.asdict(unit), "key": unit.key(), **cell, "unit_s": round(time.perf_counter() - t0, 1)}
