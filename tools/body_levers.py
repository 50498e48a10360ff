"""What would make the zeroth-order body help? Variants of the default recipe's body on one suite episode.

  python tools/body_levers.py      # fmnist-c hard dec3, validation episode 0 (~3 min on one core)
  python tools/body_levers.py --variant=medium --variants=default,frozen-body,m12

One conversion, then FF + exact head w16 (the default recipe: block-coordinate Sign-m-SPSA on the body,
the head by its exact gradient and Adam) with one body setting changed per row, and "frozen-body", a
body rate so small that the head alone learns. The rows share the episode, the seed and the head, so
their difference is what the body's estimate contributes (docs/benchmarks-ft.md). Writes
bench/results/issue17-ft/body-levers-<task>-<variant>-<mode>.json and prints a table.
"""
import _paths  # noqa: F401

import dataclasses
import pathlib
import tempfile

from absl import app, flags, logging

import _cli

from converters import benchmark, suite
from tflite_fg import runs

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
# name -> changes to the suite's FF + exact head w16 recipe at body rate --lr
VARIANTS = {
    "default": {},
    "frozen-body": {"lr": 0.01},
    "m12": {"m": 12},
    "m12-lr4x": {"m": 12, "lr_factor": 4},
    "eps2": {"eps_lsb": 2},
    "eps32": {"eps_lsb": 32},
    "avg0.9-lr4x": {"grad_average": 0.9, "lr_factor": 4},
    "dense-probes-lr/3": {"block_coordinate": False, "lr_factor": 1 / 3},
    "spsa": {"estimator": "spsa", "lr": 50.0, "block_coordinate": False},
    "steps3x": {"steps_factor": 3},
}
flags.DEFINE_string("task", "fmnist-c", "Suite task (converters/suite.py).")
flags.DEFINE_string("variant", "hard", "The task's variant (row).")
flags.DEFINE_string("mode", "dec3", "A body-training mode of the task.")
flags.DEFINE_integer("index", 0, "Validation episode.", lower_bound=0)
flags.DEFINE_float("lr", 0.75, "The body's rate of the default row (the suite's choice on fmnist-c hard dec3).")
flags.DEFINE_list("variants", list(VARIANTS), f"Rows to run ({', '.join(VARIANTS)}).")
flags.DEFINE_string("out", str(ROOT / "bench" / "results" / "issue17-ft"), "Where the JSON goes.")
flags.DEFINE_string("cache_dir", None, "Asset cache.")


def _hyper(spec: suite.TaskSpec, changes: dict) -> benchmark.Hyper:
    changes = dict(changes)
    base = spec.hyper("ffh-w16", changes.pop("lr", FLAGS.lr * changes.pop("lr_factor", 1)), mode=FLAGS.mode)
    return dataclasses.replace(base, steps=base.steps * changes.pop("steps_factor", 1), **changes)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    spec = suite.get_task(FLAGS.task)
    mode = spec.mode(FLAGS.mode)
    if mode.head_only:
        raise app.UsageError(f"--mode={FLAGS.mode} trains the head only: there is no body to vary")
    if FLAGS.variant not in spec.variants:
        raise app.UsageError(f"--variant={FLAGS.variant}: {FLAGS.task} has {', '.join(spec.variants)}")
    unknown = set(FLAGS.variants) - set(VARIANTS)
    if unknown:
        raise app.UsageError(f"unknown --variants {sorted(unknown)}; choices: {', '.join(VARIANTS)}")
    ep = spec.make_episode(FLAGS.variant, "val", FLAGS.index, FLAGS.cache_dir)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        conv = benchmark.Converted(ep, mode, tmp)
        zero_shot = conv.accuracy(conv.model.initial_params())
        print(f"{ep.name} {mode.name}: zero-shot {zero_shot:.3f}, {conv.model.trainable_params} trainable weights")
        for name in FLAGS.variants:
            run = benchmark.run_ff_int8(conv, mode, _hyper(spec, VARIANTS[name]), "w16", seed=FLAGS.index,
                                        exact_head=True)
            best = max(p["acc"] for p in run.curve)
            rows[name] = {"best": best, "final": run.final_acc, "hyper": run.hyper, "curve": run.curve}
            print(f"  {name:18s} best {100 * best:.1f}  final {100 * run.final_acc:.1f}  ({run.wall_s:.0f} s)",
                  flush=True)
    out = pathlib.Path(FLAGS.out) / f"body-levers-{FLAGS.task}-{FLAGS.variant}-{FLAGS.mode}.json"
    runs.write_json(out, {"episode": ep.name, "mode": FLAGS.mode, "zero_shot": zero_shot, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    _cli.run(main)
