"""Export a converted model and its task's data for the Java desktop trainer (android_demo/desktop).

  python tools/export_java_data.py --out=build/java-data     # the default task (as tools/train.py)

Writes <out>/model.tflite (+ .json metadata), <out>/data.bin with the int8 inputs (quantized as
FgModel.quantize_input does) and int32 little-endian labels, <out>/data.json describing it (with the
probe batch velocity selection watches, selection.probe_indices), and <out>/expected.json: the
Python LiteRT `forward` logits and `probe` outputs of the first test examples with the initial
kernels, which the Java test compares with the C API's, a Python reference run (its weights'
sha256, accuracies, and the sha256 of its exported model), a reference run under NEq velocity
selection (its rounds and weights' sha256) and one with the exact head (tools/train.py --exact_head:
its weights' sha256 and accuracy).
"""
import _paths  # noqa: F401

import json
import math
import pathlib
import shutil

import numpy as np
from absl import flags

import _cli
import _models

from tflite_fg import build, export, objective, selection, selective, tasks, trainer
from tflite_fg.config import HEAD_OPTIMIZERS, TrainConfig, default_head_lr, default_probe_lr
from tflite_fg.metadata import metadata_path, sha256_bytes
from tflite_fg.model import FgModel

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "build/java-data", "Output directory.")
_models.define_task_flags()
flags.adopt_module_key_flags(_models)  # so --help lists them
flags.DEFINE_integer("n_expected", 64, "Test examples whose Python logits are written.")
flags.DEFINE_integer("train_steps", 1500, "Steps of the Python reference run the Java trainer is compared with.")
flags.DEFINE_integer("select_steps", 400, "Steps of the Python reference run under velocity selection.")
flags.DEFINE_integer("exact_head_steps", 200, "Steps of the Python reference run with the exact head.")
flags.DEFINE_enum("head_optimizer", "adam", HEAD_OPTIMIZERS, "Its head optimizer (tools/train.py --head_optimizer).")
flags.DEFINE_float("head_lr", None, "Its head learning rate (tools/train.py --head_lr; default: its default for "
                   "--head_optimizer).")
flags.register_validator("head_lr", lambda v: v is None or (math.isfinite(v) and v > 0), "--head_lr must be > 0")
flags.DEFINE_integer("select_every", 100, "Its re-selection period.")
flags.DEFINE_float("budget", 0.274, "Its budget (fraction of the kernel parameters).")
flags.DEFINE_integer("probe_per_class", 2, "Training examples per class in the exported probe batch (velocity).")
flags.DEFINE_integer("n_probe_expected", 4, "Test examples whose Python probe outputs are written.")
flags.DEFINE_bool("reference_runs", True, "Run and record the Python reference runs (the Java tests need them; "
                  "an Android asset bundle does not).")
flags.DEFINE_string("cache_dir", None, "Asset cache.")


def _train(model: FgModel, parts: dict, steps: int, selector: selection.Selector | None = None,
           probe: np.ndarray | None = None, head_lr: float | None = None, head_optimizer: str = "sgd",
           body_lr: float = 0.2, block_coordinate: bool = False) -> list[np.ndarray]:
    """The plain-FF recipe (w16, m 3, eps 8, lr 0.5 head / 0.2 body, batch 64, seed 0) for `steps`,
    on all kernels or under `selector` (velocity watching the probe examples), or with the exact head
    at `head_lr` by `head_optimizer` (and the body's rate and probes given); the final int8 kernels."""
    n = len(model.meta.trainable)
    cfg = TrainConfig(seed=0, steps=steps, batch_size=64, m=3, eps_lsb=8,
                      lr=(body_lr,) * (n - 1) + (0.5 if head_lr is None else head_lr,), precision="w16",
                      exact_head=head_lr is not None, head_optimizer=head_optimizer, block_coordinate=block_coordinate)
    start, space = model.initial_params(), build.build_space(cfg)
    est = build.build_estimator(cfg, start, space, head_quant=model.head_quant() if cfg.exact_head else None)
    tx = build.build_transform(cfg)
    state = trainer.init_state(start, est, tx, space)
    loss = objective.minibatch_loss(model, parts["x_train"], parts["y_train"].astype(np.int64), cfg.seed, 64)
    run = (trainer.fit(state, loss, est, tx, cfg.seed, steps, space) if selector is None else
           selective.fit_on_graph(model, parts["x_train"][probe], state, loss,
                                  lambda support: build.build_estimator(cfg, start, space, support), tx,
                                  cfg.seed, steps, space, selector))
    for state, _ in run:
        pass
    return space.to_engine(state.params)


def reference_run(path: pathlib.Path, parts: dict) -> dict:
    """The demo's recipe for train_steps on the builtin kernels (what the C library runs; the
    frozen-prefix cache is bit-identical), with its exported model."""
    model = FgModel(path, engine="builtin")
    final = _train(model, parts, FLAGS.train_steps)
    exported = path.parent / "python_trained.tflite"
    export.export_model(exported, model.model_bytes, model.meta, final)
    return {"exported_sha256": sha256_bytes(exported.read_bytes()),
            "exported_metadata_sha256": sha256_bytes(metadata_path(exported).read_bytes()),
            "steps": FLAGS.train_steps, "lr_head": 0.5, "lr_body": 0.2, "weights_sha256": objective.weights_sha256(final),
            "train_acc": model.accuracy(parts["x_train"], parts["y_train"].astype(np.int64), final),
            "test_acc": model.accuracy(parts["x_test"], parts["y_test"].astype(np.int64), final)}


def selective_run(path: pathlib.Path, parts: dict, probe: np.ndarray) -> dict:
    """The same recipe under NEq velocity selection (tools/train.py --select=velocity): the probe
    signature's outputs on the exported probe batch decide each round's neurons."""
    model = FgModel(path, engine="builtin")
    sel_cfg = selection.SelectionConfig("velocity", FLAGS.budget, FLAGS.select_every, "random", seed=0)
    selector = selection.tflite_selector(sel_cfg, model.meta, model.initial_params())
    final = _train(model, parts, FLAGS.select_steps, selector, probe)
    return {"steps": FLAGS.select_steps, "budget": sel_cfg.budget, "every": sel_cfg.every, "init": sel_cfg.init,
            "mu": sel_cfg.mu, "history": selector.history, "weights_sha256": objective.weights_sha256(final),
            "test_acc": model.accuracy(parts["x_test"], parts["y_test"].astype(np.int64), final)}


def exact_head_run(path: pathlib.Path, parts: dict) -> dict:
    """tools/train.py's default recipe: block-coordinate FF on the body (lr 1.5 x 0.4), the head by
    its exact gradient from one more pass a step (the model's head_in output) and Adam."""
    model = FgModel(path, engine="builtin")
    head_lr = FLAGS.head_lr if FLAGS.head_lr is not None else default_head_lr(FLAGS.head_optimizer, "w16")
    body_lr = default_probe_lr(True, len(model.meta.trainable) - 1) * 0.4  # x tools/train.py's --body_lr_scale
    final = _train(model, parts, FLAGS.exact_head_steps, head_lr=head_lr, head_optimizer=FLAGS.head_optimizer,
                   body_lr=body_lr, block_coordinate=True)
    return {"steps": FLAGS.exact_head_steps, "lr_body": body_lr, "block_coordinate": True,
            "head_lr": head_lr, "head_optimizer": FLAGS.head_optimizer,
            "head_quant": list(model.head_quant()), "weights_sha256": objective.weights_sha256(final),
            "test_acc": model.accuracy(parts["x_test"], parts["y_test"].astype(np.int64), final)}


def main(argv):
    del argv
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    src = _models.default_model("fmnist", FLAGS.shots, FLAGS.data_seed, FLAGS.trainable, FLAGS.cache_dir)
    shutil.copyfile(src, out / "model.tflite")
    shutil.copyfile(metadata_path(src), metadata_path(out / "model.tflite"))
    t = tasks.load_task("fmnist", FLAGS.shots, FLAGS.n_test, FLAGS.data_seed, FLAGS.cache_dir)
    model = FgModel(out / "model.tflite")
    parts = {"x_train": model.quantize_input(t.x_support), "y_train": t.y_support.astype("<i4"),
             "x_test": model.quantize_input(t.x_test), "y_test": t.y_test.astype("<i4")}
    probe = selection.probe_indices(t.y_support, FLAGS.probe_per_class, 0)
    header, offset = {"input_shape": list(model.meta.input_shape), "n_train": len(t.y_support),
                      "n_test": len(t.y_test), "probe_indices": probe.tolist(), "parts": {}}, 0
    with open(out / "data.bin", "wb") as f:
        for name, arr in parts.items():
            data = np.ascontiguousarray(arr).tobytes()
            header["parts"][name] = {"offset": offset, "bytes": len(data), "dtype": str(arr.dtype)}
            f.write(data)
            offset += len(data)
    (out / "data.json").write_text(json.dumps(header, indent=1) + "\n")
    xq, k = parts["x_test"][:FLAGS.n_expected], model.initial_params()
    expected = {"n": len(xq), "zero_shot_acc": model.accuracy(parts["x_test"], t.y_test, k)}
    for engine in ("builtin", "xnnpack"):
        expected[engine] = FgModel(out / "model.tflite", engine=engine).forward(xq, k).astype(int).ravel().tolist()
    builtin = FgModel(out / "model.tflite", engine="builtin")
    outputs = builtin.neuron_outputs(parts["x_test"][:FLAGS.n_probe_expected], k)
    expected["neuron_outputs"] = {"n": FLAGS.n_probe_expected, "values": [o.ravel().tolist() for o in outputs]}
    if FLAGS.reference_runs:
        expected["run"] = reference_run(out / "model.tflite", parts)
        expected["selective_run"] = selective_run(out / "model.tflite", parts, probe)
        expected["exact_head_run"] = exact_head_run(out / "model.tflite", parts)
    (out / "expected.json").write_text(json.dumps(expected) + "\n")
    print(f"wrote {out}: model, {len(t.y_support)} training / {len(t.y_test)} test examples, "
          f"expected logits of {len(xq)}; zero-shot {expected['zero_shot_acc']:.4f}")


if __name__ == "__main__":
    _cli.run(main)
