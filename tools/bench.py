"""The paper's experiments on real offline data (converters/suite.py): BP fp32 / BP QAT / FF fp32 /
FF int8 (w16, w8) / FF + exact head (w16, w8) against zero-shot, on four tasks, tuned on validation episodes.

  python tools/bench.py --suite=paper                          # everything; docs/benchmarks.md
  python tools/bench.py --suite=paper --quick                  # a few episodes of each, short runs
  python tools/bench.py --only=fmnist-fewshot --tasks=20       # one benchmark, 20 test tasks per row

Phase 1 runs every grid point of every method on the validation episodes and keeps, per row
(variant x mode) and method, the learning rate and the step count (one of the curve's evaluation
points) with the best mean validation accuracy. Phase 2
runs the chosen recipes on the test episodes. Each (episode, mode) is one unit, run in its own
worker process (--jobs) and stored as bench/runs/<suite>/<task>/<variant>/<mode>/<split><i>.json;
a unit whose inputs have not changed is reused, so an interrupted suite continues where it stopped.
Results: bench/results/<suite>/<task>.json, PNG curves, and the report (tools/bench_report.py).
"""
import _paths  # noqa: F401

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads, here and in the workers

import dataclasses
import json
import pathlib
import sys
import time

import numpy as np
from absl import app, flags, logging

import _cli
import _pool
from bench_report import load_summaries, summarize, write_report
from converters import suite
from converters.benchmark import TRAINED_METHODS
from tflite_fg import runs

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUITES = {"paper": tuple(suite.TASKS)}
QUICK = {"val": 1, "test": 2, "scale": 0.1}  # --quick: episodes per split and step scale

FLAGS = flags.FLAGS
flags.DEFINE_enum("suite", "paper", sorted(SUITES), "Which suite.")
flags.DEFINE_list("only", [], f"Subset of the suite's benchmarks ({', '.join(suite.TASKS)}).")
flags.DEFINE_list("modes", [], "Subset of training modes (e.g. LP).")
flags.DEFINE_list("methods", list(TRAINED_METHODS), "Trained methods (zero-shot always runs).")
flags.DEFINE_integer("ff_steps", 0, "FF steps per run (0: each benchmark's own); e.g. to see where FF converges.")
flags.DEFINE_integer("bp_steps", 0, "BP steps per run (0: each benchmark's own).")
flags.DEFINE_integer("tasks", 0, "Test tasks (episodes) per row; 0: each benchmark's full-suite number.")
flags.DEFINE_bool("quick", False, f"Smoke run: {QUICK['val']} validation / {QUICK['test']} test episodes, steps x "
                  f"{QUICK['scale']}; results under <suite>-quick.")
flags.DEFINE_integer("jobs", 2, "Worker processes (each single-threaded); 1: run in this process.")
flags.DEFINE_string("runs_dir", str(ROOT / "bench" / "runs"), "Per-unit results (reused when unchanged).")
flags.DEFINE_string("results", str(ROOT / "bench" / "results"), "Summaries and plots go to <results>/<suite>.")
flags.DEFINE_string("doc", None, "The markdown report (default docs/benchmarks.md; with --quick, "
                    "<results>/<suite>-quick/benchmarks.md).")
flags.DEFINE_string("cache_dir", None, "Asset cache.")


def _work(unit: suite.Unit, out: str, cache: str | None) -> dict:
    lines: list[str] = []
    previous = json.loads(pathlib.Path(out).read_text()) if pathlib.Path(out).exists() else None
    result = suite.run_unit(unit, cache, log=lines.append, previous=previous)
    runs.write_json(out, result)
    return {**result, "log": lines}


def _run_units(units: list[suite.Unit], root: pathlib.Path, phase: str) -> dict[suite.Unit, dict]:
    def describe(u: suite.Unit, res: dict) -> str:
        return (f"{u.task} {u.variant} {u.mode} {u.split}{u.index}: zero-shot {res['zero_shot']['int8']:.3f}; " +
                ", ".join(f"{r['method']}={r['final_acc']:.3f}" for r in res["runs"]))

    return _pool.run_units(units, root, phase, FLAGS.jobs, _work, FLAGS.cache_dir, describe)


def _selected(spec: suite.TaskSpec) -> list[str]:
    names = [m.name for m in spec.modes]
    return [m for m in names if not FLAGS.modes or m in FLAGS.modes]


def _units(spec: suite.TaskSpec, split: str, n: int, plan_for) -> list[suite.Unit]:
    return [suite.Unit(spec.name, v, m, split, i, plan_for(v, m)) for v in spec.variants for m in _selected(spec)
            for i in range(n)]


def _choose(spec: suite.TaskSpec, results: dict[suite.Unit, dict], scale: float) -> dict:
    """Per (variant, mode, method): the grid lr and the step count (one of the curve's evaluation
    points, so early stopping is chosen on validation too) with the best mean validation accuracy;
    ties go to the fewer steps, then the first lr in grid order. Every grid point's best mean is kept
    for the report, and whether the choice sits at an edge of the grid."""
    chosen: dict = {}
    for v in spec.variants:
        for m in _selected(spec):
            rows = [r for u, r in results.items() if (u.task, u.variant, u.mode) == (spec.name, v, m)]
            head_only = spec.mode(m).head_only
            for method in FLAGS.methods:
                grid = spec.grid(method, m)
                scores = {}  # (lr, step) -> mean validation accuracy at that step
                for lr in grid:
                    curves = [run["curve"] for r in rows for run in r["runs"]
                              if run["method"] == method and suite.grid_value(method, run["hyper"], head_only) == lr]
                    for k, point in enumerate(curves[0]):
                        scores[(lr, point["step"])] = float(np.mean([c[k]["acc"] for c in curves]))
                lr, steps = max(scores, key=lambda ls: (scores[ls], -ls[1], -grid.index(ls[0])))
                hyper = dataclasses.replace(spec.hyper(method, lr, scale, m), steps=steps)
                chosen[(v, m, method)] = {
                    "lr": lr, "steps": steps, "grid_edge": len(grid) > 1 and lr in (grid[0], grid[-1]),
                    "val_acc": {g: max(a for (x, _), a in scores.items() if x == g) for g in grid},
                    "hyper": dataclasses.asdict(hyper)}
    return chosen


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    names = FLAGS.only or list(SUITES[FLAGS.suite])
    specs = [dataclasses.replace(s, ff_steps=FLAGS.ff_steps or s.ff_steps, bp_steps=FLAGS.bp_steps or s.bp_steps)
             for s in map(suite.get_task, names)]
    bad = set(FLAGS.methods) - set(TRAINED_METHODS)
    if bad:
        raise app.UsageError(f"unknown methods {sorted(bad)}; choices: {', '.join(TRAINED_METHODS)}")
    for spec in specs:
        if not _selected(spec):
            raise app.UsageError(f"{spec.name} has none of the modes {FLAGS.modes}; its modes: "
                                 f"{', '.join(m.name for m in spec.modes)}")
    suite_name = FLAGS.suite + ("-quick" if FLAGS.quick else "")
    root, out = pathlib.Path(FLAGS.runs_dir) / suite_name, pathlib.Path(FLAGS.results) / suite_name
    scale = QUICK["scale"] if FLAGS.quick else 1.0
    n_val = {s.name: QUICK["val"] if FLAGS.quick else s.episodes["val"] for s in specs}
    n_test = {s.name: FLAGS.tasks or (QUICK["test"] if FLAGS.quick else s.episodes["test"]) for s in specs}
    t0 = time.time()

    def grid(spec):
        return lambda v, m: {k: [dataclasses.asdict(spec.hyper(k, lr, scale, m)) for lr in spec.grid(k, m)]
                             for k in FLAGS.methods}

    val_units = [u for s in specs for u in _units(s, "val", n_val[s.name], grid(s))]
    val = _run_units(val_units, root, "tune")
    chosen = {s.name: _choose(s, {u: val[u] for u in val_units if u.task == s.name}, scale) for s in specs}

    def best(spec):
        return lambda v, m: {k: [chosen[spec.name][(v, m, k)]["hyper"]] for k in FLAGS.methods}

    test_units = [u for s in specs for u in _units(s, "test", n_test[s.name], best(s))]
    test = _run_units(test_units, root, "test")
    command = " ".join(["python tools/bench.py"] + [a for a in sys.argv[1:] if not a.startswith("--jobs")])
    for s in specs:
        summary = summarize(s, [test[u] for u in test_units if u.task == s.name], chosen[s.name],
                            [val[u] for u in val_units if u.task == s.name])
        runs.write_json(out / f"{s.name}.json", {**summary, "command": command})
    doc = pathlib.Path(FLAGS.doc) if FLAGS.doc else (out / "benchmarks.md" if FLAGS.quick else
                                                   ROOT / "docs" / "benchmarks.md")
    write_report(load_summaries(out), out, doc)  # every benchmark run so far, this one included
    print(f"wrote {out}/*.json|png and {doc} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    _cli.run(main)
