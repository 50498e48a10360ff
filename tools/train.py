"""On-device training: Sign-m-SPSA on the int8 trainable tensors of a converted model; by default the
dense head takes its exact cross-entropy gradient from one more forward pass (tflite_fg/exact_head.py).

  python tools/train.py                  # default task: ResNet-8 -> Fashion-MNIST, 20 shots/class
  python tools/train.py --noexact_head   # plain FF (Sign-m-SPSA) on the head too
  python tools/train.py --out=runs/a     # + result.json, config.json, checkpoint.npz, trained.tflite
  python tools/train.py --out=runs/a --resume
  python tools/train.py --precision=w16 --arithmetic=paper      # the paper's 16w8a QZO-FF recipe
  python tools/train.py --precision=w8 --update_rounding=stochastic --mask=topk --sparsity=0.9
  python tools/train.py --precision=fp32                         # "FF fp": float Keras model (TensorFlow)
  python tools/train.py --select=velocity --budget=0.274         # NEq velocity picks 27% of the weights
"""
import _paths  # noqa: F401

import dataclasses
import math
import pathlib
import re
import shlex
import sys
import time
from typing import Callable, NamedTuple

import numpy as np
from absl import app, flags

import _cli
import _models

from tflite_fg import (build, checkpoint, datafile, export, masks, objective, runs, schedules, selection,
                       selective, tasks, trainer)
from tflite_fg.config import DISTRIBUTIONS, ESTIMATORS, HEAD_OPTIMIZERS, PRECISIONS, default_head_lr, default_probe_lr, TrainConfig
from tflite_fg.model import ENGINES, FgModel
from tflite_fg.precision import ARITHMETICS, ROUNDINGS

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Converted .tflite (with <model>.json); unset: the default task's model, "
                    "converted on first use.")
flags.DEFINE_enum("task", "fmnist", tasks.TASKS, "Default task (when --data is unset): fmnist or digits few-shot.")
flags.DEFINE_string("data", None, "Own data: .npz with x_train, y_train, x_test, y_test (preprocessed float); "
                    "unset: the default Fashion-MNIST few-shot task.")
_models.define_task_flags()
flags.adopt_module_key_flags(_models)  # so --help lists them
flags.DEFINE_integer("seed", 0, "Seed of perturbations and mini-batches.", lower_bound=0)
flags.DEFINE_integer("steps", 5000, "Training steps (each 2m forward passes, +1 with the exact head; "
                     "1 for a head-only model with the exact head).", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Mini-batch size.", lower_bound=1)
flags.DEFINE_integer("m", 3, "Perturbations per step (Sign-m-SPSA).", lower_bound=1)
flags.DEFINE_float("eps_lsb", 8, "Perturbation scale in int8 weight LSBs (w8: whole LSBs; w16: multiples "
                   "of 1/256).")
flags.DEFINE_float("lr", None, "Sign-m-SPSA learning rate in int8 LSBs per unit of z: of the head under --noexact_head "
                   "(the other tensors get lr * body_lr_scale; with the exact head, which has --head_lr, only those). "
                   "Default: 0.5, times the number of probed tensors with block-coordinate probes (each of n "
                   "tensors takes about 1/n of a step's probes; 1.5 for the demo's block). w8 with "
                   "round-to-nearest needs about twice as much: smaller updates round to zero.")
flags.DEFINE_float("body_lr_scale", 0.4, "The other trainable tensors use lr * body_lr_scale: with round-to-"
                   "nearest, fewer +-1 LSB steps on a conv block keep its random walk down (docs/design.md).")
flags.DEFINE_enum("distribution", "gaussian", DISTRIBUTIONS, "Perturbation distribution.")
flags.DEFINE_enum("estimator", "sign_spsa", ESTIMATORS, "Gradient estimator.")
flags.DEFINE_enum("precision", "w16", PRECISIONS, "Master weights: w8 (the int8 kernels only), w16 (int16 master "
                  "copy, engine gets its int8 rounding: the paper's 16w8a), fp32 (float Keras model, TensorFlow).")
flags.DEFINE_enum("arithmetic", "anchored", ARITHMETICS, "anchored: w +- round(eps z), float32 lr; paper: QZO-FF "
                  "Eq. 6-8 exactly ((w 1_q +- eps_q z_q) M >> k, 8-bit g_q, integer lr multiply-shift).")
flags.DEFINE_enum("update_rounding", "nearest", ROUNDINGS, "Rounding of the weight update to the master grid.")
flags.DEFINE_enum("engine_rounding", "nearest", ROUNDINGS, "w16: rounding of the master copy for the engine.")
flags.DEFINE_float("momentum_alpha", 0.0, "Momentum-guided sampling alpha (0: off).")
flags.DEFINE_float("momentum_beta_min", 0.5, "Momentum-guided sampling: final beta (1 = purely random).")
flags.DEFINE_integer("momentum_decay_steps", 1000, "Momentum-guided sampling: steps for beta to go 1 -> min.",
                     lower_bound=0)
flags.DEFINE_float("grad_average", 0.0, "Exponential average of the gradient estimates over about 1/(1-x) steps "
                   "(0: off).", lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_float("sam_rho", 0.0, "Sharpness-aware ascent step in units of eps (0: off; +2 forward passes/step).")
flags.DEFINE_bool("block_coordinate", None, "Each probe perturbs one trainable tensor, cycling (each tensor takes "
                  "about 1/n of a step's probes, hence the larger default --lr). Default: on where the exact head "
                  "trains the head and Sign-m-SPSA a body (the default recipe: docs/ablation.md, levers); "
                  "--noblock_coordinate: every probe perturbs every tensor.")
flags.DEFINE_bool("kernel_norm", False, "Kernel-wise normalization of perturbations: z_i / ||z_i|| * ||w_i||.")
flags.DEFINE_bool("exact_head", None, "Train the last (dense) layer with its exact cross-entropy gradient from "
                  "one extra forward pass (integer arithmetic, no backward graph) and the rest by Sign-m-SPSA: "
                  "reported as 'ffh', not plain FF. Default: on wherever it applies (w8/w16, anchored arithmetic, "
                  "a model whose last trainable layer is dense, converter version >= 4); --noexact_head: plain FF.")
flags.DEFINE_enum("head_optimizer", None, HEAD_OPTIMIZERS, "The exact head's optimizer: adam (--head_lr is then "
                  "a step in int8 weight LSBs: Adam's update is about +-1 per step) or sgd (--head_lr is a float-space "
                  "SGD rate). Default: adam; sgd with a re-selecting --select (random, velocity), after which "
                  "Adam's moments would keep moving the weights a re-selection froze.")
flags.DEFINE_float("head_lr", None, "The exact head's learning rate (see --head_optimizer). Default: adam "
                   f"{default_head_lr('adam', 'w16'):g} (w8: {default_head_lr('adam', 'w8'):g}, its smallest step "
                   f"that does not round away), sgd {default_head_lr('sgd', 'w16'):g}.")
flags.DEFINE_enum("mask", "none", masks.KINDS, "Sparse update mask over the trainable weights.")
flags.DEFINE_float("sparsity", 0.9, "topk/random masks: fraction of each tensor frozen.")
flags.DEFINE_float("mask_threshold_lsb", 8.0, "threshold mask: train weights with |w| >= this (int8 LSBs).")
flags.DEFINE_enum("select", "none", ("none", *selection.STRATEGIES), "Neuron selection under --budget "
                  "(docs/budget.md): which output channels of the trainable tensors may change.")
flags.DEFINE_float("budget", 0.274, "--select: fraction of the trainable kernel parameters that may change.")
flags.DEFINE_integer("select_every", 250, "--select random/velocity: re-select every N steps.", lower_bound=1)
flags.DEFINE_enum("select_init", "random", selection.INIT_STRATEGIES, "--select=velocity: strategy of the first "
                  "two rounds (velocity needs three observations).")
flags.DEFINE_integer("probe_per_class", 5, "--select=velocity: training examples per class in the fixed probe batch.",
                     lower_bound=1)
flags.DEFINE_enum("schedule", "constant", schedules.KINDS, "Learning-rate schedule.")
flags.DEFINE_float("schedule_final", 0.0, "cosine: final lr multiplier.")
flags.DEFINE_integer("schedule_every", 1000, "step: decay period in steps.", lower_bound=1)
flags.DEFINE_float("schedule_factor", 0.5, "step: lr multiplier per period.")
flags.DEFINE_enum("engine", "xnnpack", sorted(ENGINES), "LiteRT kernels (see docs/design.md).")
flags.DEFINE_integer("num_threads", None, "Interpreter threads (default: LiteRT's).", lower_bound=1)
flags.DEFINE_enum("prefix_cache", "auto", objective.CACHE_MODES, "Run the frozen layers once per data set "
                  "(dataset) or per mini-batch (batch) and only the trainable ones 2m times; identical losses. "
                  "auto: dataset when its features fit 256 MiB; none: whole forward every pass.")
flags.DEFINE_integer("eval_every", 250, "Evaluate test accuracy every N steps (0: only at the end).", lower_bound=0)
flags.DEFINE_integer("log_every", 50, "Print a progress line every N steps.", lower_bound=1)
flags.DEFINE_string("out", None, "Run directory: result.json, config.json, checkpoint.npz, trained.tflite.")
flags.DEFINE_integer("checkpoint_every", 250, "With --out: checkpoint every N steps.", lower_bound=1)
flags.DEFINE_bool("resume", False, "Continue the run in --out from its checkpoint.")
flags.DEFINE_bool("overwrite", False, "Start a new run in an --out that holds a checkpoint (it is replaced).")
flags.DEFINE_string("cache_dir", None, "Asset cache (default $TFLITE_FG_CACHE or ~/.cache/tflite_fg).")
for _name in ("lr", "body_lr_scale", "eps_lsb"):
    flags.register_validator(_name, lambda v: v is None or (math.isfinite(v) and v > 0),
                             f"--{_name} must be a finite number > 0")
flags.register_validator("head_lr", lambda v: v is None or (math.isfinite(v) and v > 0),
                         "--head_lr must be a finite number > 0")
flags.register_validator("budget", lambda v: 0 < v <= 1, "--budget must be a fraction in (0, 1]")
TASK_FLAGS = ("task", "shots", "data_seed")  # they choose the default task's data (and its converted model)


class _Data(NamedTuple):
    name: str
    x_train: np.ndarray  # float, preprocessed
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: tasks.FewShotTask | None  # the default task (needed to rebuild the float model for fp32)


def _load_data(model: FgModel) -> _Data:
    """The training and test arrays, checked against the model (shape, dtype, finite, labels, input range)."""
    if FLAGS.data:
        arrays = datafile.load_npz(FLAGS.data, ("x_train", "y_train", "x_test", "y_test"))
        name, task = pathlib.Path(FLAGS.data).stem, None
    else:
        t = tasks.load_task(FLAGS.task, FLAGS.shots, FLAGS.n_test, FLAGS.data_seed, FLAGS.cache_dir)
        arrays = {"x_train": t.x_support, "y_train": t.y_support, "x_test": t.x_test, "y_test": t.y_test}
        name, task = f"{FLAGS.task}-fewshot-k{FLAGS.shots}", t
    for split in ("train", "test"):
        arrays[f"x_{split}"], arrays[f"y_{split}"], warning = datafile.check_split(
            arrays[f"x_{split}"], arrays[f"y_{split}"], split, model.meta.input_shape, model.meta.num_classes,
            model.input_range(), FLAGS.data or "")
        if warning:
            print(warning)
    return _Data(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], task)


def _model_path() -> pathlib.Path:
    if FLAGS.model:
        return pathlib.Path(FLAGS.model)
    return _models.default_model(FLAGS.task, FLAGS.shots, FLAGS.data_seed, FLAGS.trainable, FLAGS.cache_dir)


def _exact_head(model: FgModel | None) -> bool:
    """--exact_head as given, else on wherever it applies (the default recipe: docs/ablation.md, levers);
    model None: before the model is loaded, as far as the flags alone tell."""
    if FLAGS.exact_head is not None:
        return FLAGS.exact_head
    return FLAGS.precision != "fp32" and FLAGS.arithmetic != "paper" and (model is None or model.has_head_input)


def _refuse_head_lr(model: FgModel | None) -> None:
    if not _exact_head(model):
        _cli.refuse_ignored(["head_lr", "head_optimizer"], "only apply with the exact head (plain FF trains the head "
                            "with --lr)" +
                            ("" if model is None else "; this model has no 'head_in' output (its last trainable "
                             "layer is not dense, or it was converted before version 4)"))


# What only the zeroth-order estimate reads: with the exact head, a head-only model runs no probes.
PROBE_FLAGS = ("lr", "body_lr_scale", "m", "eps_lsb", "distribution", "estimator", "sam_rho", "momentum_alpha",
               "momentum_beta_min", "momentum_decay_steps", "kernel_norm", "block_coordinate")


def _config(model: FgModel) -> TrainConfig:
    _refuse_head_lr(model)
    exact_head = _exact_head(model)
    n_tensors = len(model.meta.trainable)
    if exact_head and n_tensors == 1:
        _cli.refuse_ignored(PROBE_FLAGS, "have no effect: only the head trains, by its exact gradient at --head_lr, "
                            "with no probes (--noexact_head: Sign-m-SPSA on the head)")
    head_optimizer = (FLAGS.head_optimizer or ("sgd" if FLAGS.select in selection.DYNAMIC else "adam")
                      if exact_head else "sgd")
    head_lr = FLAGS.head_lr if FLAGS.head_lr is not None else default_head_lr(head_optimizer, FLAGS.precision)
    block = FLAGS.block_coordinate if FLAGS.block_coordinate is not None else exact_head and n_tensors > 1
    probe_lr = FLAGS.lr if FLAGS.lr is not None else default_probe_lr(block, n_tensors - exact_head)
    lr = (probe_lr * FLAGS.body_lr_scale,) * (n_tensors - 1) + ((head_lr if exact_head else probe_lr),)
    eps = int(FLAGS.eps_lsb) if float(FLAGS.eps_lsb).is_integer() else FLAGS.eps_lsb
    own = ("eps_lsb", "lr", "exact_head", "head_optimizer", "block_coordinate")
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in own]
    try:  # every other field is the flag of the same name
        return TrainConfig(eps_lsb=eps, lr=lr, exact_head=exact_head, head_optimizer=head_optimizer,
                           block_coordinate=block, **{n: getattr(FLAGS, n) for n in names})
    except ValueError as e:
        raise app.UsageError(str(e)) from e


class _Objective(NamedTuple):
    """What training needs from a model: initial weights, per-step losses, accuracy."""

    initial: list[np.ndarray]
    make_loss: Callable[[int], Callable]
    accuracy: Callable[[np.ndarray, np.ndarray, list[np.ndarray]], float]  # (x, y, engine params)
    x_train: np.ndarray
    x_test: np.ndarray
    prefix_cache: str  # the frozen-prefix cache mode in use (int8 engine only)


def _objective(model: FgModel, data: _Data, cfg: TrainConfig, int8_start: list[np.ndarray],
               xq_te: np.ndarray) -> _Objective:
    if cfg.precision != "fp32":
        xq_tr = model.quantize_input(data.x_train)
        cache = objective.resolve_cache(model, xq_tr, FLAGS.prefix_cache)
        return _Objective(int8_start, objective.minibatch_loss(model, xq_tr, data.y_train, cfg.seed, cfg.batch_size,
                                                                   cache),
                          model.accuracy, xq_tr, xq_te, cache)
    if data.task is None:
        raise app.UsageError("--precision=fp32 rebuilds the float model of a default task; it cannot use --data")
    from converters import fp32_reference, tasks as ctasks  # TensorFlow only on this path
    float_model = ctasks.prototype_model(ctasks.load_source_model(cache=FLAGS.cache_dir), data.task.x_support,
                                         data.task.y_support, model.meta.num_classes)
    ref = fp32_reference.FloatReference(float_model, model.meta)
    return _Objective(ref.initial_params(), ref.minibatch_loss(data.x_train, data.y_train, cfg.seed, cfg.batch_size),
                      lambda x, y, p: ref.accuracy(x, y, p), data.x_train, data.x_test, "n/a (TensorFlow)")


def _selection(model: FgModel, cfg: TrainConfig, int8_start: list[np.ndarray]) -> selection.Selector | None:
    """The neuron selector of --select (None for none)."""
    if FLAGS.select == "none":
        return None
    if cfg.precision == "fp32":
        raise app.UsageError("--select trains the int8 graph's neurons; use --precision=w8 or w16")
    if FLAGS.select == "velocity" and FLAGS.resume:
        raise app.UsageError("--select=velocity keeps its velocity in memory, not in the checkpoint: "
                             "start the run again without --resume")
    try:
        cfg_sel = selection.SelectionConfig(FLAGS.select, FLAGS.budget, FLAGS.select_every, FLAGS.select_init,
                                            seed=cfg.seed)
        return selection.tflite_selector(cfg_sel, model.meta, int8_start)
    except ValueError as e:
        raise app.UsageError(str(e)) from e


def _fit(model, data, cfg, obj, int8_start, space, estimator, transform, selector, state):
    """trainer.fit, or selective.fit_selected under --select (velocity reads the probe signature)."""
    if selector is None:
        return trainer.fit(state, obj.make_loss, estimator, transform, cfg.seed, cfg.steps, space)
    xq_probe = model.quantize_input(selection.probe_batch(data.x_train, data.y_train, FLAGS.probe_per_class, cfg.seed))
    return selective.fit_on_graph(model, xq_probe, state, obj.make_loss,
                                  lambda support: build.build_estimator(cfg, int8_start, space, support,
                                                                        model.head_quant() if cfg.exact_head else None),
                                  transform,
                                  cfg.seed, cfg.steps, space, selector)


def _check_flags() -> None:
    """Flags that would be ignored, or would silently replace a run, are refused before any work."""
    if FLAGS.data:
        _cli.refuse_ignored(["n_test"], "sets the default task's test images and has no effect with --data")
    if FLAGS.data and FLAGS.model:
        _cli.refuse_ignored(TASK_FLAGS, "choose the default task's data and model and have no effect with --data "
                            "and --model")
    if FLAGS.model:
        _cli.refuse_ignored(["trainable"], "picks the layers when the default model is converted; a --model's "
                            "trainable layers were fixed by `python tools/convert.py --trainable=...`")
    if not FLAGS.out:
        _cli.refuse_ignored(["resume", "overwrite", "checkpoint_every"], "only apply with --out=DIR, the run directory")
    _refuse_head_lr(None)
    if FLAGS.select == "none":
        _cli.refuse_ignored(["budget", "select_every", "select_init", "probe_per_class"], "only apply with --select")
    for kept, given in (("--grad_average keeps averaging", FLAGS.grad_average),
                        ("--head_optimizer=adam keeps its moments", FLAGS.head_optimizer == "adam")):
        if FLAGS.select in selection.DYNAMIC and given:
            raise app.UsageError(f"{kept} over every weight, so after a --select={FLAGS.select} re-selection the "
                                 f"weights it froze would keep moving: use --select=static or magnitude, or drop "
                                 f"{kept.split()[0]}")
    if FLAGS.resume and FLAGS.overwrite:
        raise app.UsageError("--resume continues the run in --out, --overwrite replaces it: give one of them")
    ckpt = pathlib.Path(FLAGS.out or ".") / "checkpoint.npz"
    if FLAGS.resume and not ckpt.exists():
        raise app.UsageError(f"--resume: {ckpt} does not exist; start the run without --resume")
    if FLAGS.out and not FLAGS.resume and not FLAGS.overwrite and ckpt.exists():
        raise app.UsageError(f"{ckpt} holds another run's checkpoint: continue it with --resume, replace it with "
                             "--overwrite, or choose another --out")


def _resume_command() -> str:
    args = [a for a in sys.argv if not re.fullmatch(r"--(no)?(overwrite|resume)(=.*)?", a)]
    return " ".join(shlex.quote(a) for a in ["python", *args, "--resume"])


def _replace_run(out: pathlib.Path) -> None:
    """--overwrite: the old run's files go before the new run writes its own, so none can pass for the new one's."""
    for name in ("checkpoint.npz", "result.json", "trained.tflite", "trained.tflite.json"):
        (out / name).unlink(missing_ok=True)


def main(argv):
    del argv
    _check_flags()
    model_path = _model_path()
    model = FgModel(model_path, engine=FLAGS.engine, num_threads=FLAGS.num_threads)
    cfg = _config(model)
    data = _load_data(model)
    y_tr, y_te = data.y_train, data.y_test
    if cfg.batch_size > len(y_tr):
        print(f"note: --batch_size={cfg.batch_size} exceeds the {len(y_tr)} training examples; every step uses all "
              f"{len(y_tr)}")
    int8_start, xq_te = model.initial_params(), model.quantize_input(data.x_test)
    obj = _objective(model, data, cfg, int8_start, xq_te)
    space = build.build_space(cfg)
    head_quant = model.head_quant() if cfg.exact_head else None
    estimator = build.build_estimator(cfg, int8_start, space, head_quant=head_quant)
    transform = build.build_transform(cfg)
    out = pathlib.Path(FLAGS.out) if FLAGS.out else None
    ckpt = out / "checkpoint.npz" if out else None
    selector = _selection(model, cfg, int8_start)
    engine = FLAGS.engine if cfg.precision != "fp32" else "tensorflow"
    resumable = not (selector and FLAGS.select == "velocity")  # velocity keeps its state in memory only
    # Everything that changes the numbers; the prefix cache is recorded but may change on resume (its
    # modes train bit-identically: tests/test_objective.py).
    run_meta = {"model_sha256": model.meta.model_sha256, "task": data.name,
                "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "steps"},
                "engine": engine,
                **({"selection": dataclasses.asdict(selector.cfg)} if selector else {}),
                "param_shapes": [list(t.shape) for t in model.meta.trainable]}
    evaluate = lambda x, y, params: obj.accuracy(x, y, space.to_engine(params))  # noqa: E731
    zero_shot = model.accuracy(xq_te, y_te, int8_start)
    curve, wall_before = [], 0.0
    if FLAGS.resume:
        later_fields = {f"config.{f.name}": f.default for f in dataclasses.fields(TrainConfig)
                        if f.default is not dataclasses.MISSING}  # settings added after a checkpoint was written
        state, stored = checkpoint.load_checkpoint(ckpt, run_meta, later_fields)
        if state.step > cfg.steps:
            raise app.UsageError(f"--steps={cfg.steps}: {ckpt} is already at step {state.step}; give --steps > "
                                 f"{state.step} to train further")
        progress = stored.get("progress", {})
        curve, wall_before = progress.get("curve", []), progress.get("wall_s", 0.0)
        print(f"resumed from {ckpt} at step {state.step}" +
              (" (nothing left to train: re-evaluating and re-exporting)" if state.step == cfg.steps else ""))
    else:
        state = trainer.init_state(obj.initial, estimator, transform, space)
    if out and FLAGS.overwrite:
        _replace_run(out)
    if out:
        runs.write_json(out / "config.json", {**dataclasses.asdict(cfg), "model": str(model_path), "task": data.name,
                                              "engine": engine, "prefix_cache": obj.prefix_cache})
    print(f"task {data.name}: {len(y_tr)} training / {len(y_te)} test examples; {model.trainable_params} trainable "
          f"weights in {len(model.meta.trainable)} tensors; precision {space.name}; engine {engine}; "
          f"frozen-prefix cache {obj.prefix_cache}; head: " +
          (f"exact gradient, {cfg.head_optimizer} at {cfg.lr[-1]:g} (--noexact_head: FF)" if cfg.exact_head
           else "Sign-m-SPSA"))
    if cfg.mask != "none":
        print(f"sparse update: mask {cfg.mask}, {masks.frozen_fraction(build.build_masks(cfg, int8_start)):.1%} frozen")
    if selector:
        print(f"neuron selection: {FLAGS.select}, budget {FLAGS.budget:g} = {selector.budget} of "
              f"{selector.layout.total_params} kernel weights" +
              (f", re-selected every {FLAGS.select_every} steps" if selector.cfg.dynamic else ""))
    print(f"step 0: zero-shot test accuracy {zero_shot:.4f}")
    t0 = time.time() - wall_before
    save = lambda state: checkpoint.save_checkpoint(  # noqa: E731
        ckpt, state, {**run_meta, "progress": {"curve": curve, "wall_s": time.time() - t0}})
    with _cli.StopSignals() as stop:
        for state, log in _fit(model, data, cfg, obj, int8_start, space, estimator, transform, selector, state):
            step = state.step
            line = f"step {step:5d}  loss {log['loss']:.4f}  changed {log['changed_weights']:5d}  " \
                   f"fwd {state.forward_passes:7d}  {time.time() - t0:6.1f}s"
            if selector:
                line += f"  selected {log['selected_params']}"
            if (FLAGS.eval_every and step % FLAGS.eval_every == 0) or step == cfg.steps:
                acc = evaluate(obj.x_test, y_te, state.params)
                curve.append({"step": step, "forward_passes": state.forward_passes, "test_acc": acc,
                              "wall_s": time.time() - t0})
                print(f"{line}  test acc {acc:.4f}", flush=True)
            elif step % FLAGS.log_every == 0:
                print(line, flush=True)
            stopping = stop.signal is not None  # read once: a signal may land between two reads
            if ckpt and (step % FLAGS.checkpoint_every == 0 or step == cfg.steps or (stopping and resumable)):
                save(state)
            if stopping:
                break
    if stop.signal and state.step < cfg.steps:
        if not resumable:
            where = "--select=velocity cannot be resumed (its velocity lives in memory only): start it again"
        elif ckpt:
            where = f"checkpoint {ckpt} is at step {state.step}; continue with:\n  {_resume_command()}"
        else:
            where = "nothing was saved (give --out=DIR to keep checkpoints)"
        print(f"stopped by {stop.signal.name} after step {state.step}; {where}", file=sys.stderr)
        sys.exit(stop.exit_code)
    wall = time.time() - t0
    final = evaluate(obj.x_test, y_te, state.params)
    deployed = export.to_int8(space.to_engine(state.params))
    probes = "" if cfg.exact_head and len(model.meta.trainable) == 1 else f"-{cfg.estimator}-m{cfg.m}"
    method = f"ff{'h' if cfg.exact_head else ''}-{space.name}{probes}"
    result = {"task": data.name, "model": str(model_path), "method": method,
              "precision": cfg.precision, "engine": engine, "prefix_cache": obj.prefix_cache,
              "trainable_params": model.trainable_params, "zero_shot_acc": zero_shot, "final_acc": final,
              "deployed_int8_acc": model.accuracy(xq_te, y_te, deployed),
              "train_acc": evaluate(obj.x_train, y_tr, state.params), "steps": state.step,
              "forward_passes": state.forward_passes, "wall_s": round(wall, 2),
              "peak_rss_mb": round(runs.peak_rss_mb(), 1), "seed": cfg.seed,
              "weights_sha256": objective.weights_sha256(deployed), "curve": curve,
              "config": dataclasses.asdict(cfg),
              "selection": {**dataclasses.asdict(selector.cfg), "rounds": selector.history} if selector else None}
    print(f"done: test accuracy {zero_shot:.4f} (prototype zero-shot) -> {final:.4f} after {state.step} steps, "
          f"{state.forward_passes} forward passes, {wall:.1f}s; deployed int8 {result['deployed_int8_acc']:.4f}; "
          f"training accuracy {result['train_acc']:.4f}; "
          f"weights sha256 {result['weights_sha256'][:16]}")
    if curve:
        low, high = min(curve, key=lambda c: c["test_acc"]), max(curve, key=lambda c: c["test_acc"])
        print(f"test curve ({len(curve)} evaluations): lowest {low['test_acc']:.4f} at step {low['step']}, highest "
              f"{high['test_acc']:.4f} at step {high['step']}; peak RSS {result['peak_rss_mb']:.0f} MiB")
    if out:
        exported = out / "trained.tflite"
        export.export_model(exported, model.model_bytes, model.meta, deployed)
        result["exported_model"] = str(exported)
        runs.write_json(out / "result.json", result)
        print(f"wrote {out / 'result.json'} and the deployable {exported}")


if __name__ == "__main__":
    _cli.run(main)
