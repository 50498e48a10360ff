"""Neuron selection under an update budget (converters/budget.py): budgets x strategies x {FF int8,
BP fp32} on fmnist-c, every conv and dense kernel trainable, over several training seeds.

  python tools/budget.py                      # the study: bench/results/budget.json|png, docs/budget.md
  python tools/budget.py --quick              # smoke run: 1 seed, 2 budgets, 0.1x steps (bench/results/budget-quick)

Phase 1 picks each method's learning rate per budget on a validation split (1/9 of the adaptation
set held out) with random selection; phase 2 runs every (strategy, budget) with it on the test split. Budget 1.0
trains everything whatever the strategy, so it runs once per seed ("full"). Each (method, strategy,
seed) is one unit in its own worker process, stored under bench/runs/budget and reused while nothing
that decides it changes.
"""
import _paths  # noqa: F401

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads, here and in the workers

import dataclasses
import hashlib
import json
import pathlib
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
from absl import app, flags, logging

import _cli
import _notes
import _pool
from bench_report import mean_ci
from converters import budget, suite
from converters.benchmark import Hyper
from tflite_fg import runs, selection
from tflite_fg.atomic import atomic_write

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASK = "fmnist-c"
FULL = "full"
QUICK = {"seeds": 1, "budgets": (0.151, 1.0), "scale": 0.1}

FLAGS = flags.FLAGS
flags.DEFINE_list("budgets", [str(b) for b in budget.BUDGETS], "Budgets: fractions of the conv+dense kernel parameters.")
flags.DEFINE_list("strategies", list(selection.STRATEGIES), "Selection strategies.")
flags.DEFINE_list("methods", ["ff-w16", "bp-fp32"], f"Methods ({', '.join(budget.METHODS)}).")
flags.DEFINE_integer("seeds", 3, "Training seeds (test runs per cell).")
flags.DEFINE_enum("variant", "medium", ["easy", "medium", "hard"], "fmnist-c severity.")
flags.DEFINE_integer("ff_steps", 1000, "FF steps per run.")
flags.DEFINE_integer("bp_steps", 300, "BP steps per run.")
flags.DEFINE_integer("batch_size", 64, "Mini-batch size (both methods).")
flags.DEFINE_integer("rounds", 10, "Selection rounds per run: dynamic strategies re-select every steps/rounds steps.")
flags.DEFINE_integer("probe_per_class", 5, "Velocity's fixed probe batch: training examples per class.")
flags.DEFINE_enum("init", "random", list(selection.INIT_STRATEGIES), "Velocity's strategy before it has a velocity.")
flags.DEFINE_list("ff_grid", ["0.025", "0.05", "0.1", "0.25", "0.5", "1.0"], "FF learning rates tried per budget.")
flags.DEFINE_list("bp_grid", ["1e-4", "3e-4", "1e-3", "3e-3", "1e-2"], "BP (Adam) rates tried per budget.")
flags.DEFINE_bool("quick", False, f"Smoke run: {QUICK['seeds']} seed, budgets {QUICK['budgets']}, steps x "
                  f"{QUICK['scale']}; results under budget-quick.")
flags.DEFINE_integer("jobs", 2, "Worker processes (each single-threaded); 1: run in this process.")
flags.DEFINE_string("runs_dir", str(ROOT / "bench" / "runs"), "Per-unit results (reused when unchanged).")
flags.DEFINE_string("results", str(ROOT / "bench" / "results"), "budget.json and budget.png go here.")
flags.DEFINE_string("doc", None, "The markdown report (default docs/budget.md; with --quick, <results>/budget-quick.md).")
flags.DEFINE_string("cache_dir", None, "Asset cache.")


@dataclass(frozen=True)
class Unit:
    """One worker job: one method and strategy on one episode, at several budgets / learning rates."""

    variant: str
    split: str
    index: int
    method: str
    strategy: str
    runs: tuple[tuple[float, float], ...]  # (budget, learning rate) pairs
    steps: int
    batch_size: int
    rounds: int
    init: str
    probe_per_class: int

    def key(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def path(self, root: pathlib.Path) -> pathlib.Path:
        budgets = "_".join(f"{b:g}" for b in dict.fromkeys(b for b, _ in self.runs))
        return root / self.variant / self.method / self.strategy / f"{self.split}{self.index}-b{budgets}.json"

    def settings(self) -> list[budget.Setting]:
        every = max(1, self.steps // self.rounds)
        strategy = "static" if self.strategy == FULL else self.strategy
        return [budget.Setting(self.method, strategy, b, Hyper(lr=lr, steps=self.steps, batch_size=self.batch_size),
                               every, self.init) for b, lr in self.runs]


def _work(unit: Unit, out: str, cache: str | None) -> dict:
    lines: list[str] = []
    ep = suite.get_task(TASK).make_episode(unit.variant, unit.split, unit.index, cache)
    with tempfile.TemporaryDirectory() as tmp:
        res = budget.run_settings(ep, unit.settings(), unit.index, unit.probe_per_class, tmp, log=lines.append)
    res = {"unit": dataclasses.asdict(unit), "key": unit.key(), **res}
    runs.write_json(out, res)
    return {**res, "log": lines}


def _run(units: list[Unit], root: pathlib.Path, phase: str) -> dict[Unit, dict]:
    def describe(u: Unit, res: dict) -> str:
        accs = ", ".join(f"{r['budget']:g}@{r['hyper']['lr']:g}={r['final_acc']:.3f}" for r in res["runs"])
        return f"{u.method} {u.strategy} {u.split}{u.index}: {accs}"

    return _pool.run_units(units, root, phase, FLAGS.jobs, _work, FLAGS.cache_dir, describe)


def _floats(values: list[str], what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in values)
    except ValueError as e:
        raise app.UsageError(f"--{what}: {e}") from e


def summarize(test: dict[Unit, dict], tuned: dict, args: dict, val: dict[Unit, dict]) -> dict:
    """Per method, strategy and budget: final accuracy over seeds (mean, 95% CI, values), selected
    parameters, and whether every never-selected weight stayed bit-identical."""
    cells: dict = {}
    for u, res in test.items():
        for r in res["runs"]:
            name = FULL if r["budget"] == 1.0 else r["strategy"]
            cells.setdefault((r["method"], name, r["budget"]), []).append(r)
    table = []
    for (method, strategy, b), rs in sorted(cells.items()):
        table.append({"method": method, "strategy": strategy, "budget": b,
                      **{k: v for k, v in mean_ci([r["final_acc"] for r in rs]).items()},
                      "accs": [r["final_acc"] for r in rs], "seeds": [r["seed"] for r in rs],
                      "budget_params": rs[0]["budget_params"], "total_params": rs[0]["total_params"],
                      "selected_params": float(np.mean([s["params"] for r in rs for s in r["selections"]])),
                      "frozen_unchanged": all(r["frozen_unchanged"] for r in rs),
                      "wall_s": float(np.mean([r["wall_s"] for r in rs])),
                      "forward_passes": rs[0]["forward_passes"]})
    first = next(iter(test.values()))
    zero = [r["zero_shot_int8"] for r in test.values() if "zero_shot_int8" in r]
    return {"task": f"{TASK}/{args['variant']}", "args": args, "tuned": tuned, "cells": table,
            "zero_shot_int8": zero[0] if zero else None, "n_train": first["n_train"], "n_test": first["n_test"],
            "probe_examples": first["probe_examples"],
            "update_bytes_per_param": next((r["update_bytes_per_param"] for r in test.values()
                                            if "update_bytes_per_param" in r), {}),
            "compute_worker_s": round(sum(r["unit_s"] for r in [*test.values(), *val.values()]), 1)}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    bad = set(FLAGS.methods) - set(budget.METHODS)
    if bad:
        raise app.UsageError(f"unknown methods {sorted(bad)}; choices: {', '.join(budget.METHODS)}")
    bad = set(FLAGS.strategies) - set(selection.STRATEGIES)
    if bad:
        raise app.UsageError(f"unknown strategies {sorted(bad)}; choices: {', '.join(selection.STRATEGIES)}")
    budgets = QUICK["budgets"] if FLAGS.quick else _floats(FLAGS.budgets, "budgets")
    if not all(0 < b <= 1 for b in budgets):
        raise app.UsageError(f"--budgets must be fractions in (0, 1], got {budgets}")
    scale = QUICK["scale"] if FLAGS.quick else 1.0
    seeds = QUICK["seeds"] if FLAGS.quick else FLAGS.seeds
    steps = {m: max(FLAGS.rounds, int(round((FLAGS.bp_steps if m.startswith("bp") else FLAGS.ff_steps) * scale)))
             for m in FLAGS.methods}
    grids = {m: _floats(FLAGS.bp_grid if m.startswith("bp") else FLAGS.ff_grid, "grid") for m in FLAGS.methods}
    name = "budget" + ("-quick" if FLAGS.quick else "")
    root, out = pathlib.Path(FLAGS.runs_dir) / name, pathlib.Path(FLAGS.results)
    t0 = time.time()

    def unit(split, index, method, strategy, pairs):
        return Unit(FLAGS.variant, split, index, method, strategy, tuple(pairs), steps[method],
                    FLAGS.batch_size, FLAGS.rounds, FLAGS.init, FLAGS.probe_per_class)

    # Phase 1: per method and budget, the grid's best rate with random selection (the full budget: all)
    partial = [b for b in budgets if b < 1.0]
    val_units = [unit("val", 0, m, FULL if b == 1.0 else "random", [(b, lr) for lr in grids[m]])
                 for m in FLAGS.methods for b in budgets]
    val = _run(val_units, root, "tune")
    tuned: dict = {m: {} for m in FLAGS.methods}
    for u in val_units:
        accs = {r["hyper"]["lr"]: r["final_acc"] for r in val[u]["runs"]}
        grid = grids[u.method]
        tuned[u.method][str(u.runs[0][0])] = {"lr": max(accs, key=lambda lr: (accs[lr], -grid.index(lr))),
                                              "val_acc": accs}

    def lr(m, b):
        return tuned[m][str(b)]["lr"]

    test_units = [unit("test", s, m, st, [(b, lr(m, b)) for b in partial]) for m in FLAGS.methods
                  for st in FLAGS.strategies for s in range(seeds) if partial]
    if 1.0 in budgets:
        test_units += [unit("test", s, m, FULL, [(1.0, lr(m, 1.0))]) for m in FLAGS.methods for s in range(seeds)]
    test = _run(test_units, root, "test")
    args = {"variant": FLAGS.variant, "budgets": list(budgets), "strategies": list(FLAGS.strategies),
            "methods": list(FLAGS.methods), "seeds": seeds, "steps": steps, "batch_size": FLAGS.batch_size,
            "rounds": FLAGS.rounds, "init": FLAGS.init, "probe_per_class": FLAGS.probe_per_class}
    summary = summarize(test, tuned, args, val)
    summary["command"] = " ".join(["python tools/budget.py"] + [a for a in sys.argv[1:] if not a.startswith("--jobs")])
    runs.write_json(out / f"{name}.json", summary)
    plot(summary, out / f"{name}.png")
    doc = pathlib.Path(FLAGS.doc) if FLAGS.doc else (out / f"{name}.md" if FLAGS.quick else ROOT / "docs" / "budget.md")
    write_report(summary, doc, out / f"{name}.png")
    print(f"wrote {out / name}.json|png and {doc} ({time.time() - t0:.0f} s)")


# ---- report -------------------------------------------------------------------------------------

LABELS = {"ff-w16": "FF int8 w16", "ff-w8": "FF int8 w8", "bp-fp32": "BP fp32"}


def _cell(summary: dict, method: str, strategy: str, b: float) -> dict | None:
    name = FULL if b == 1.0 else strategy
    return next((c for c in summary["cells"] if (c["method"], c["strategy"], c["budget"]) == (method, name, b)), None)


def plot(summary: dict, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, strategies, budgets = (summary["args"][k] for k in ("methods", "strategies", "budgets"))
    fig, axes = plt.subplots(1, len(methods), figsize=(5.5 * len(methods), 4), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        for k, st in enumerate(strategies):
            pts = [(b, c) for b in budgets if (c := _cell(summary, method, st, b))]
            if pts:
                xs = [b * (1 + 0.02 * (k - 1.5)) for b, _ in pts]  # small offsets keep error bars apart
                ax.errorbar(xs, [100 * c["mean"] for _, c in pts], yerr=[100 * c["ci"] for _, c in pts],
                            marker="o", capsize=3, label=st)
        if summary["zero_shot_int8"] is not None:
            ax.axhline(100 * summary["zero_shot_int8"], color="grey", ls="--", lw=1, label="zero-shot int8")
        ax.set_xscale("log")
        ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
        ax.set_title(f"{summary['task']}: {LABELS.get(method, method)} ({summary['args']['steps'][method]} steps)")
        ax.set_xlabel("budget (fraction of conv + dense kernel parameters)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy % (mean ± 95% CI over seeds)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(c: dict | None) -> str:
    if c is None:
        return "—"
    mark = "" if c["frozen_unchanged"] else " (!)"
    return f"{100 * c['mean']:.1f} ± {100 * c['ci']:.1f}{mark}"


def write_report(summary: dict, doc: pathlib.Path, png: pathlib.Path) -> None:
    a = summary["args"]
    total = summary["cells"][0]["total_params"]
    lines = [
        "# Neuron selection under an update budget", "",
        f"Reproduce: `{summary['command']}` ({summary['compute_worker_s'] / 60:.0f} worker-min with tuning: about "
        f"{summary['compute_worker_s'] / 120:.0f} min on 2 cores).", "",
        f"Task: {summary['task']} (our Fashion-MNIST CNN, adapt on {summary['n_train']} corrupted images, test on "
        f"{summary['n_test']}); every conv and dense kernel trainable ({total:,} parameters); zero-shot int8 "
        f"{100 * summary['zero_shot_int8']:.1f}%." if summary["zero_shot_int8"] is not None else "", "",
        f"Per cell: mean ± 95% CI (Student t) of the final test accuracy over {a['seeds']} training seeds. "
        f"Steps: {', '.join(f'{LABELS.get(m, m)} {s}' for m, s in a['steps'].items())}, batch {a['batch_size']}; "
        f"dynamic strategies re-select {a['rounds']} times per run; velocity watches {summary['probe_examples']} "
        f"training images ({a['probe_per_class']} per class) and uses `{a['init']}` for its first two rounds. "
        "Learning rates were chosen per method and budget on a validation split (1/9 of the adaptation set "
        "held out), with random selection (the grid and its validation accuracies are in the JSON): " +
        "; ".join(f"{LABELS.get(m, m)} " + ", ".join(f"{float(b):g}: {t['lr']:g}" for b, t in per.items())
                  for m, per in summary["tuned"].items()) + ". "
        "A (!) would mark a cell where a never-selected weight changed (none does).", "",
        f"![accuracy vs budget]({os.path.relpath(png, doc.parent)})", "",
    ]
    header = ["budget", "params"] + [f"{LABELS.get(m, m)} {st}" for m in a["methods"] for st in a["strategies"]]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for b in a["budgets"]:
        c0 = next(c for c in summary["cells"] if c["budget"] == b)
        row = [f"{b:g}", f"{c0['budget_params']:,}"]
        for m in a["methods"]:
            for st in a["strategies"]:
                row.append(_fmt(_cell(summary, m, st, b)) if b < 1.0 or st == a["strategies"][0] else "〃")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Velocity minus the other strategies (points; mean over seeds):", "",
              "| budget | method | velocity − random | velocity − static | velocity − magnitude |", "|---|---|---|---|---|"]
    for b in [b for b in a["budgets"] if b < 1.0]:
        for m in a["methods"]:
            v = _cell(summary, m, "velocity", b)
            if v is None:
                continue
            diffs = [f"{100 * (v['mean'] - o['mean']):+.1f}" if (o := _cell(summary, m, st, b)) else "—"
                     for st in ("random", "static", "magnitude")]
            lines.append(f"| {b:g} | {LABELS.get(m, m)} | " + " | ".join(diffs) + " |")
    per = {m: v for m, v in summary["update_bytes_per_param"].items() if m in a["methods"]}
    if per:
        lines += ["", "Update memory: trainer state per trained parameter, from `tflite_fg/memory.py` on the "
                  "all-trainable graph (" + ", ".join(f"{LABELS.get(m, m)} {v:.1f} B" for m, v in per.items()) +
                  "), times the selected parameters. Frozen weights, the graph's activations and the engine are "
                  "the same at every budget and not counted; BP's kept activations shrink only when the earliest "
                  "selected layer moves up (static does that), which is not modelled here.", "",
                  "| budget | params | " + " | ".join(f"{LABELS.get(m, m)} KiB (saved)" for m in per) + " |",
                  "|---|---|" + "---|" * len(per)]
        for b in a["budgets"]:
            n = next(c for c in summary["cells"] if c["budget"] == b)["budget_params"]
            lines.append(f"| {b:g} | {n:,} | " + " | ".join(
                f"{v * n / 1024:.1f} ({v * (total - n) / 1024:.1f})" for v in per.values()) + " |")
    lines += ["", "## Discussion", "", _notes.kept_notes(doc, "(to be written after the run)"), ""]
    doc.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(doc, "\n".join(lines).encode())


if __name__ == "__main__":
    _cli.run(main)
