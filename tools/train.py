"""On-device training: Sign-m-SPSA on the int8 trainable tensors of a converted model.

  python tools/train.py                  # default task: ResNet-8 -> Fashion-MNIST, 20 shots/class
  python tools/train.py --out=runs/a     # + result.json, config.json, checkpoint.npz, trained.tflite
  python tools/train.py --out=runs/a --resume
"""
import _paths  # noqa: F401

import dataclasses
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

from tflite_fg import assets, build, checkpoint, export, objective, runs, tasks, trainer
from tflite_fg.config import DISTRIBUTIONS, ESTIMATORS, TrainConfig
from tflite_fg.model import ENGINES, FgModel

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Converted .tflite (with <model>.json); unset: the default task's model, "
                    "converted on first use.")
flags.DEFINE_string("data", None, "Own data: .npz with x_train, y_train, x_test, y_test (preprocessed float); "
                    "unset: the default Fashion-MNIST few-shot task.")
flags.DEFINE_integer("shots", 20, "Default task: labelled training images per class.")
flags.DEFINE_integer("n_test", 1000, "Default task: held-out test images.")
flags.DEFINE_integer("data_seed", 0, "Default task: seed of the support/test split.")
flags.DEFINE_string("trainable", "last:4", "Default task: trainable layers if the model must be converted.")
flags.DEFINE_integer("seed", 0, "Seed of perturbations and mini-batches.")
flags.DEFINE_integer("steps", 5000, "Training steps (each 2m forward passes).")
flags.DEFINE_integer("batch_size", 64, "Mini-batch size.")
flags.DEFINE_integer("m", 3, "Perturbations per step (Sign-m-SPSA).")
flags.DEFINE_integer("eps_lsb", 8, "Perturbation scale in weight LSBs.")
flags.DEFINE_float("lr", 1.0, "Learning rate of the last trainable tensor (the head), in weight LSBs per unit of z.")
flags.DEFINE_float("body_lr_scale", 0.4, "The other trainable tensors use lr * body_lr_scale: with round-to-"
                   "nearest, fewer +-1 LSB steps on a conv block keep its random walk down (docs/design.md).")
flags.DEFINE_enum("distribution", "gaussian", DISTRIBUTIONS, "Perturbation distribution.")
flags.DEFINE_enum("estimator", "sign_spsa", ESTIMATORS, "Gradient estimator.")
flags.DEFINE_enum("engine", "xnnpack", sorted(ENGINES), "LiteRT kernels (see docs/design.md).")
flags.DEFINE_integer("num_threads", None, "Interpreter threads (default: LiteRT's).")
flags.DEFINE_integer("eval_every", 250, "Evaluate test accuracy every N steps (0: only at the end).")
flags.DEFINE_integer("log_every", 50, "Print a progress line every N steps.")
flags.DEFINE_string("out", None, "Run directory: result.json, config.json, checkpoint.npz, trained.tflite.")
flags.DEFINE_integer("checkpoint_every", 250, "With --out: checkpoint every N steps.")
flags.DEFINE_bool("resume", False, "Continue the run in --out from its checkpoint.")
flags.DEFINE_string("cache_dir", None, "Asset cache (default $TFLITE_FG_CACHE or ~/.cache/tflite_fg).")


def _load_data(model: FgModel):
    if FLAGS.data:
        with np.load(FLAGS.data, allow_pickle=False) as d:
            x_tr, y_tr, x_te, y_te = (d[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        name = pathlib.Path(FLAGS.data).stem
    else:
        t = tasks.load_fmnist_fewshot(FLAGS.shots, FLAGS.n_test, FLAGS.data_seed, FLAGS.cache_dir)
        x_tr, y_tr, x_te, y_te = t.x_support, t.y_support, t.x_test, t.y_test
        name = f"fmnist-fewshot-k{FLAGS.shots}"
    return (name, model.quantize_input(x_tr), model.check_labels(y_tr, len(x_tr)),
            model.quantize_input(x_te), model.check_labels(y_te, len(x_te)))


def _model_path() -> pathlib.Path:
    if FLAGS.model:
        return pathlib.Path(FLAGS.model)
    assets.ensure_assets(FLAGS.cache_dir, log=print)
    path = runs.default_model_path(FLAGS.shots, FLAGS.data_seed, FLAGS.trainable, FLAGS.cache_dir)
    if not path.exists():
        print(f"converting the default model to {path} (once) ...")
        from converters import pipeline, tasks as ctasks  # TensorFlow only on this path
        task = tasks.load_fmnist_fewshot(FLAGS.shots, 1, FLAGS.data_seed, FLAGS.cache_dir)
        pipeline.save(path, *ctasks.convert_fmnist_fewshot(task, FLAGS.trainable, cache=FLAGS.cache_dir))
    return path


def main(argv):
    del argv
    model_path = _model_path()
    model = FgModel(model_path, engine=FLAGS.engine, num_threads=FLAGS.num_threads)
    n = len(model.meta.trainable)
    lr = (FLAGS.lr * FLAGS.body_lr_scale,) * (n - 1) + (FLAGS.lr,)
    cfg = TrainConfig(seed=FLAGS.seed, steps=FLAGS.steps, batch_size=FLAGS.batch_size, m=FLAGS.m,
                      eps_lsb=FLAGS.eps_lsb, lr=lr, distribution=FLAGS.distribution, estimator=FLAGS.estimator)
    task, x_tr, y_tr, x_te, y_te = _load_data(model)
    estimator, transform = build.build_estimator(cfg), build.build_transform(cfg)
    out = pathlib.Path(FLAGS.out) if FLAGS.out else None
    ckpt = out / "checkpoint.npz" if out else None
    run_meta = {"model_sha256": model.meta.model_sha256, "task": task,
                "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "steps"},
                "param_shapes": [list(t.shape) for t in model.meta.trainable]}
    zero_shot = model.accuracy(x_te, y_te, model.initial_params())
    if FLAGS.resume:
        if ckpt is None or not ckpt.exists():
            raise app.UsageError("--resume needs --out=DIR holding checkpoint.npz")
        try:
            state, _ = checkpoint.load_checkpoint(ckpt, run_meta)
        except checkpoint.CheckpointError as e:
            sys.exit(f"CheckpointError: {e}")
        print(f"resumed from {ckpt} at step {state.step}")
    else:
        state = trainer.init_state(model.initial_params(), estimator, transform)
    if out:
        runs.write_json(out / "config.json", {**dataclasses.asdict(cfg), "model": str(model_path), "task": task,
                                              "engine": FLAGS.engine})
    print(f"task {task}: {len(y_tr)} training / {len(y_te)} test examples; {model.trainable_params} trainable "
          f"int8 weights in {len(model.meta.trainable)} tensors; engine {FLAGS.engine}")
    print(f"step 0: zero-shot test accuracy {zero_shot:.4f}")
    make_loss = objective.minibatch_loss(model, x_tr, y_tr, cfg.seed, cfg.batch_size)
    t0, curve = time.time(), []
    for state, log in trainer.fit(state, make_loss, estimator, transform, cfg.seed, cfg.steps):
        step = state.step
        line = f"step {step:5d}  loss {log['loss']:.4f}  changed {log['changed_weights']:5d}  " \
               f"fwd {state.forward_passes:7d}  {time.time() - t0:6.1f}s"
        if (FLAGS.eval_every and step % FLAGS.eval_every == 0) or step == cfg.steps:
            acc = model.accuracy(x_te, y_te, state.params)
            curve.append({"step": step, "forward_passes": state.forward_passes, "test_acc": acc,
                          "wall_s": time.time() - t0})
            print(f"{line}  test acc {acc:.4f}", flush=True)
        elif step % FLAGS.log_every == 0:
            print(line, flush=True)
        if ckpt and (step % FLAGS.checkpoint_every == 0 or step == cfg.steps):
            checkpoint.save_checkpoint(ckpt, state, run_meta)
    wall = time.time() - t0
    final = model.accuracy(x_te, y_te, state.params)
    result = {"task": task, "model": str(model_path), "method": f"ff-int8-{cfg.estimator}-m{cfg.m}",
              "engine": FLAGS.engine, "trainable_params": model.trainable_params, "zero_shot_acc": zero_shot,
              "final_acc": final, "train_acc": model.accuracy(x_tr, y_tr, state.params), "steps": state.step,
              "forward_passes": state.forward_passes, "wall_s": round(wall, 2),
              "peak_rss_mb": round(runs.peak_rss_mb(), 1), "seed": cfg.seed,
              "weights_sha256": objective.weights_sha256(state.params), "curve": curve,
              "config": dataclasses.asdict(cfg)}
    print(f"done: test accuracy {zero_shot:.4f} (prototype zero-shot) -> {final:.4f} after {state.step} steps, "
          f"{state.forward_passes} forward passes, {wall:.1f}s; weights sha256 {result['weights_sha256'][:16]}")
    if out:
        exported = out / "trained.tflite"
        export.export_model(exported, model.model_bytes, model.meta, state.params)
        result["exported_model"] = str(exported)
        runs.write_json(out / "result.json", result)
        print(f"wrote {out / 'result.json'} and the deployable {exported}")


if __name__ == "__main__":
    app.run(main)
