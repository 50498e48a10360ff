"""Analytic memory of inference, forward-only training and backprop for a converted model.

  python tools/memory.py                                   # the default task's model, batch 32
  python tools/memory.py --model=my.tflite --batch=64 --modes=infer,ff-w16,bp-fp32 --optimizer=adam
  python tools/memory.py --cache=auto --n_train=200 --json=out/memory.json

Every number comes from the .tflite graph and its metadata (tflite_fg/memory.py says what each
row counts and what it leaves out); measure a real run with tflite_fg.memory.measure_added.
"""
import _paths  # noqa: F401

import pathlib
import sys

from absl import flags

import _cli

from tflite_fg import memory, runs
from tflite_fg.model import ModelError

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Converted .tflite (with <model>.json); unset: the default task's model "
                    "(Fashion-MNIST, 20 shots, last:4 trainable).")
flags.DEFINE_integer("batch", 32, "Batch size of every forward pass (and of the backprop step).", lower_bound=1)
flags.DEFINE_list("modes", list(memory.MODES), f"Comma-separated, from {', '.join(memory.MODES)}.")
flags.DEFINE_integer("m", 3, "FF: perturbations per step (Sign-m-SPSA).", lower_bound=1)
flags.DEFINE_float("sparsity", 0.0, "FF: frozen fraction of a sparse-update mask (0: no mask).")
flags.DEFINE_enum("cache", "none", memory.CACHES, "FF frozen-prefix cache, as tools/train.py --prefix_cache "
                  "(used only when the model has prefix/suffix signatures).")
flags.DEFINE_integer("n_train", 200, "FF with cache=dataset/auto: training examples whose features are cached.",
                     lower_bound=1)
flags.DEFINE_enum("optimizer", "sgd", list(memory.OPTIMIZER_SLOTS), "BP optimizer: 0, 1 or 2 float32 slots per "
                  "parameter.")
flags.DEFINE_enum("engine", "xnnpack", memory.ENGINES, "LiteRT kernels, as tools/train.py --engine (builtin convs "
                  "add im2col buffers).")
flags.DEFINE_string("json", None, "Also write the breakdown as JSON to this path.")
flags.DEFINE_string("cache_dir", None, "Asset cache, for the default model.")

ROWS = [  # (field, label)
    ("weights", "frozen weights"),
    ("trainable", "trainable weights"),
    ("master", "master / fake-quant copy"),
    ("perturbation", "z + w+/w- candidates"),
    ("gradient", "gradient + update"),
    ("optimizer_state", "optimizer slots"),
    ("masks", "sparse masks"),
    ("scratch", "int64 work arrays"),
    ("activations", "activations (peak live)"),
    ("frozen_activations", "frozen-part activations"),
    ("features", "cached features"),
    ("conv_scratch", "conv im2col + GEMM pack"),
]


def human(n: float) -> str:
    """Bytes as KiB or MiB with one decimal (plain bytes below 1 KiB)."""
    if n == 0:
        return "-"
    if abs(n) < 1024:
        return f"{n:.0f} B"
    return f"{n / 2**20:.1f} MiB" if abs(n) >= 2**20 else f"{n / 1024:.1f} KiB"


def signed(n: float) -> str:
    """A difference of bytes with its sign."""
    return ("+" if n >= 0 else "-") + human(abs(n)) if n else "0"


def _model_path() -> pathlib.Path:
    if FLAGS.model:
        return pathlib.Path(FLAGS.model)
    path = runs.default_model_path("fmnist", 20, 0, "last:4", FLAGS.cache_dir)
    if not path.exists():
        sys.exit(f"error: the default model {path} does not exist yet: run `make demo` or `python tools/convert.py` "
                 "first, or pass --model=PATH")
    return path


def _modes() -> list[str]:
    modes = [m.strip() for m in FLAGS.modes if m.strip()]
    unknown = [m for m in modes if m not in memory.MODES]
    if not modes or unknown:
        sys.exit(f"error: --modes: unknown mode {', '.join(unknown) or '(none given)'}; choose from "
                 f"{', '.join(memory.MODES)}")
    if not 0.0 <= FLAGS.sparsity < 1.0:
        sys.exit(f"error: --sparsity={FLAGS.sparsity}: the frozen fraction must be in [0, 1)")
    return modes


def table(results: dict[str, memory.MemoryBreakdown], baseline: memory.MemoryBreakdown) -> str:
    """One column per mode, one row per component (rows that are zero everywhere are left out)."""
    modes = list(results)
    width = max(12, *(len(m) + 2 for m in modes))
    head = f"{'':26s}" + "".join(f"{m:>{width}s}" for m in modes)
    lines = [head, "-" * len(head)]
    for field, label in ROWS:
        values = [getattr(results[m], field) for m in modes]
        if any(values):
            lines.append(f"{label:26s}" + "".join(f"{human(v):>{width}s}" for v in values))
    lines.append("-" * len(head))
    lines.append(f"{'total':26s}" + "".join(f"{human(results[m].total):>{width}s}" for m in modes))
    ratios = [f"x{results[m].total / baseline.total:.2f}" for m in modes]
    added = ["" if m == "infer" else signed(results[m].total - baseline.total) for m in modes]
    lines.append(f"{'ratio to inference':26s}" + "".join(f"{r:>{width}s}" for r in ratios))
    lines.append(f"{'added over inference':26s}" + "".join(f"{a:>{width}s}" for a in added))
    return "\n".join(lines)


def main(argv):
    del argv
    modes = _modes()
    path = _model_path()
    kwargs = dict(m=FLAGS.m, sparsity=FLAGS.sparsity, optimizer=FLAGS.optimizer, cache=FLAGS.cache,
                  n_train=FLAGS.n_train, engine=FLAGS.engine)
    try:
        baseline = memory.estimate(path, FLAGS.batch, "infer", **kwargs)
        results = {m: memory.estimate(path, FLAGS.batch, m, **kwargs) for m in modes}
    except (ModelError, FileNotFoundError, ValueError, KeyError) as e:
        sys.exit(f"error: {e}")
    ff = next((r for r in results.values() if r.mode.startswith("ff-")), None)
    bp = next((r for r in results.values() if r.mode.startswith("bp-")), None)
    print(f"{path}: batch {FLAGS.batch}, engine {FLAGS.engine}, model file {human(baseline.model_file)}")
    if ff is not None:
        print(f"  FF: {ff.trainable_params:,} trainable int8 weights, m={FLAGS.m}, sparsity {FLAGS.sparsity:g}, "
              f"frozen-prefix cache {ff.cache}" + (f" (n_train {FLAGS.n_train})" if ff.cache == "dataset" else ""))
    if bp is not None:
        print(f"  BP: {bp.trainable_params:,} float32 parameters (kernels + biases), optimizer {FLAGS.optimizer}")
    print(table(results, baseline))
    print("Analytic estimate (tflite_fg/memory.py); the process itself (Python, LiteRT, XNNPACK workspace) "
          "comes on top.")
    if FLAGS.json:
        out = {"model": str(path), "batch": FLAGS.batch, "settings": kwargs,
               "modes": {m: r.as_dict() for m, r in results.items()},
               "ratio_to_infer": {m: r.total / baseline.total for m, r in results.items()},
               "added_over_infer": {m: r.total - baseline.total for m, r in results.items()}}
        runs.write_json(FLAGS.json, out)
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    _cli.run(main)
