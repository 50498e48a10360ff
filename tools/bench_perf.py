"""Performance of forward-only training: memory, step cost, engines, threads, scaling, time to accuracy.

  python tools/bench_perf.py                     # everything: ~30 min on 2 cores
  python tools/bench_perf.py --quick             # fewer steps and points: ~8 min
  python tools/bench_perf.py --sections=speed,engines

Writes bench/results/perf/<section>.json and .png, and docs/performance.md (tables, plots, targets).
Memory is measured in a fresh subprocess per configuration (peak RSS added after imports, model and
data load; tflite_fg.memory), next to the analytic estimate of tflite_fg.memory.estimate. Models are
converted once into <cache>/converted/perf/. Few-shot Fashion-MNIST (20 shots) is the data throughout.
"""
import _paths  # noqa: F401

import dataclasses
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

import _cli

from tflite_fg import assets, build, engines, memory, objective, profiling, rng, runs, tasks, trainer
from tflite_fg.config import TrainConfig
from tflite_fg.model import FgModel

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTIONS = ("speed", "engines", "memory", "tta", "threads", "scaling")
FLAGS = flags.FLAGS
flags.DEFINE_list("sections", list(SECTIONS), f"Which parts to run: {', '.join(SECTIONS)}.")
flags.DEFINE_bool("quick", False, "Fewer steps, batches and points (a smoke run; numbers are noisier).")
flags.DEFINE_string("out_dir", str(ROOT / "bench" / "results" / "perf"), "JSON and PNG results.")
flags.DEFINE_string("doc", str(ROOT / "docs" / "performance.md"), "The markdown report (rebuilt from all JSONs).")
flags.DEFINE_string("cache_dir", None, "Asset cache.")
flags.DEFINE_string("worker", None, "Internal: run one memory configuration (JSON) and print its result.")

# name -> (backbone, trainable): LP = the head only, FT = every weight layer
MODELS = {
    "resnet8-lp": ("resnet8", "head"),
    "resnet8-block": ("resnet8", "last:4"),
    "resnet8-ft": ("resnet8", "all"),
    "vww-lp": ("mobilenetv1_vww", "head"),
    "vww-ft": ("mobilenetv1_vww", "all"),
}
SHOTS, N_TEST, SEED = 20, 1000, 0


def _cfg(**kw) -> TrainConfig:
    """The demo's recipe (w16, eps 8, lr 0.5, m 3), overridable."""
    base = dict(precision="w16", eps_lsb=8, lr=0.5, m=3, batch_size=32, steps=10**6, seed=SEED)
    return TrainConfig(**{**base, **kw})


def _task(backbone: str, size: int | None = None, n_test: int = 200) -> tasks.FewShotTask:
    return tasks.load_task("fmnist", SHOTS, n_test, SEED, FLAGS.cache_dir, backbone, size)


def _model_path(backbone: str, trainable: str, size: int | None = None) -> pathlib.Path:
    """The converted model (converted here once; TensorFlow only on that path)."""
    tag = f"{backbone}_{trainable.replace(':', '')}" + (f"_{size}px" if size else "")
    path = assets.cache_dir(FLAGS.cache_dir) / "converted" / "perf" / f"{tag}.tflite"
    if not runs.is_current_conversion(path):
        print(f"  converting {tag} ...", flush=True)
        from converters import pipeline, tasks as ctasks
        task = _task(backbone, size)
        if size is None:
            pipeline.save(path, *ctasks.convert_fewshot("fmnist", task, trainable, cache=FLAGS.cache_dir,
                                                        backbone=backbone))
        else:
            pipeline.save(path, *_convert_resized(backbone, trainable, size, task))
    return path


def _convert_resized(backbone: str, trainable: str, size: int, task: tasks.FewShotTask):
    """The backbone rebuilt for size x size input (same conv weights; the head is refitted anyway)."""
    from converters import pipeline, tasks as ctasks
    from converters.keras_compat import keras
    src = ctasks.load_backbone(backbone, FLAGS.cache_dir)
    model = keras.models.clone_model(src, input_tensors=keras.Input((size, size, 3)))
    for new, old in zip(model.layers, src.layers):
        if all(a.shape == b.shape for a, b in zip(new.get_weights(), old.get_weights())):
            new.set_weights(old.get_weights())
    proto = ctasks.prototype_model(model, task.x_support, task.y_support, 10)
    bb = tasks.get_backbone(backbone)
    cfg = pipeline.ConvertConfig(trainable=trainable, input_range=bb.input_range, class_names=tuple(map(str, range(10))),
                                 source={"backbone": backbone, "size": size, "task": "fmnist-fewshot"})
    return pipeline.convert_keras_model(proto, cfg, task.x_support)


def _data(model: FgModel, task: tasks.FewShotTask):
    return model.quantize_input(task.x_support), task.y_support


# ---------------------------------------------------------------------------------------------- speed
def speed() -> dict:
    """Per-step cost vs 2m plain forward invokes, with and without the frozen-prefix cache."""
    rows = []
    caches = ("none", "batch", "dataset")
    for name, (backbone, trainable) in MODELS.items():
        path, task = _model_path(backbone, trainable), _task(backbone)
        model = FgModel(path, engine="xnnpack", num_threads=1)
        xq, y = _data(model, task)
        for precision in ("w16", "w8"):
            for cache in caches if model.has_prefix else ("none",):
                p = profiling.step_profile(model, xq, y, _cfg(precision=precision, lr=0.5 if precision == "w16" else 1.0),
                                           cache, steps=4 if FLAGS.quick else 15)
                rows.append({"model": name, "precision": precision, "batch": 32, "m": 3,
                             "trainable_params": model.trainable_params, **p.as_dict()})
                print(f"  {name:14s} {precision} cache {p.cache:8s} step {1e3 * p.step_s:8.2f} ms  ideal "
                      f"{1e3 * p.ideal_s:8.2f} ms  overhead {p.overhead:6.1%}", flush=True)
    return {"rows": rows}


# -------------------------------------------------------------------------------------------- engines
def engines_section() -> dict:
    """The same step (one batch of 32, 2m = 6 candidates) through every engine option."""
    rows = []
    for name in ("resnet8-lp", "resnet8-block", "resnet8-ft", "vww-lp"):
        backbone, trainable = MODELS[name]
        path, task = _model_path(backbone, trainable), _task(backbone)
        ref_model = FgModel(path)
        xq = ref_model.quantize_input(task.x_support[:32])
        r = np.random.default_rng(0)
        candidates = [[np.clip(p.astype(np.int16) + r.integers(-8, 9, p.shape), -127, 127).astype(np.int8)
                       for p in ref_model.initial_params()] for _ in range(6)]
        outputs = {}
        for option in engines.OPTIONS:
            if option.startswith("prefix-cache") and not ref_model.has_prefix:
                continue
            step = engines.build(option, path, num_threads=1)
            outputs[option] = step(xq, candidates)
            seconds = profiling.seconds_per_call(lambda: step(xq, candidates), min_time=0.2 if FLAGS.quick else 0.5)
            rows.append({"model": name, "option": option, "engine": engines.OPTIONS[option].engine,
                         "step_ms": 1e3 * seconds})
        builtin = outputs["signature-builtin"]
        for row in rows:
            if row["model"] == name:
                ref = outputs[engines.REFERENCE[row["engine"]]]
                out = outputs[row["option"]]
                row["bit_identical_to_reference"] = all(np.array_equal(a, b) for a, b in zip(out, ref))
                row["max_abs_lsb_vs_builtin"] = int(max(np.abs(a.astype(int) - b.astype(int)).max()
                                                       for a, b in zip(out, builtin)))
                print(f"  {name:14s} {row['option']:22s} {row['step_ms']:8.2f} ms  same as reference: "
                      f"{row['bit_identical_to_reference']}  max |d| vs builtin {row['max_abs_lsb_vs_builtin']}")
    return {"rows": rows}


# -------------------------------------------------------------------------------------------- threads
def threads() -> dict:
    rows = []
    for name in ("resnet8-block", "resnet8-ft", "vww-ft"):
        backbone, trainable = MODELS[name]
        path, task = _model_path(backbone, trainable), _task(backbone)
        for engine in ("xnnpack", "builtin"):
            for n in (1, 2):
                model = FgModel(path, engine=engine, num_threads=n)
                xq, y = _data(model, task)
                p = profiling.step_profile(model, xq, y, _cfg(), "auto", steps=3 if FLAGS.quick else 8)
                rows.append({"model": name, "engine": engine, "num_threads": n, "forward_ms": 1e3 * p.forward_s,
                             "step_ms": 1e3 * p.step_s})
                print(f"  {name:14s} {engine:8s} threads {n}: forward {1e3 * p.forward_s:7.2f} ms  step "
                      f"{1e3 * p.step_s:8.2f} ms", flush=True)
    return {"rows": rows}


# --------------------------------------------------------------------------------------------- memory
def _worker(spec: dict) -> dict:
    """One configuration in this (fresh) process: load, reset the peak, run, report what was added."""
    backbone, trainable = MODELS[spec["model"]]
    path, batch, steps = _model_path(backbone, trainable), spec["batch"], spec["steps"]
    task = _task(backbone)
    kind = spec["kind"]
    if kind in ("infer", "ff"):
        model = FgModel(path, engine="xnnpack", num_threads=1)
        xq, y = _data(model, task)
        xb = xq[rng.minibatch_indices(SEED, 0, len(xq), batch)]
        if kind == "infer":
            with memory.track_peak() as usage:
                for _ in range(steps):
                    model.infer(xb)
        else:
            cfg = _cfg(precision=spec["precision"], batch_size=batch, mask="topk" if spec["sparsity"] else "none",
                       sparsity=spec["sparsity"] or 0.9)
            with memory.track_peak() as usage:
                initial = model.initial_params()
                space = build.build_space(cfg)
                est, tx = build.build_estimator(cfg, initial, space), build.build_transform(cfg)
                state = trainer.init_state(initial, est, tx, space)
                make = objective.minibatch_loss(model, xq, y, SEED, batch, spec["cache"])
                for state, _ in trainer.fit(state, make, est, tx, SEED, steps, space):
                    pass
    else:
        from converters import backprop, tasks as ctasks
        float_model = ctasks.prototype_model(ctasks.load_backbone(backbone, FLAGS.cache_dir), task.x_support,
                                             task.y_support, 10)
        bb = tasks.get_backbone(backbone)
        bp = backprop.build_bp_model(float_model, trainable, spec["bp"], representative=task.x_support,
                                     input_range=bb.input_range)
        with memory.track_peak() as usage:
            t = backprop.BackpropTrainer(bp, optimizer="adam", learning_rate=1e-3)
            for _ in t.fit_steps(task.x_support, task.y_support, steps, batch, SEED):
                pass
    return {"added_bytes": usage.added, "baseline_rss_bytes": usage.baseline, "peak_reset": usage.reset}


MEMORY_MODES = {  # label -> worker spec (+ the matching analytic mode)
    "infer": ({"kind": "infer"}, ("infer", {})),
    "ff-w8": ({"kind": "ff", "precision": "w8", "sparsity": 0, "cache": "auto"}, ("ff-w8", {"cache": "auto"})),
    "ff-w16": ({"kind": "ff", "precision": "w16", "sparsity": 0, "cache": "auto"}, ("ff-w16", {"cache": "auto"})),
    "ff-w16-sparse90": ({"kind": "ff", "precision": "w16", "sparsity": 0.9, "cache": "auto"},
                        ("ff-w16", {"cache": "auto", "sparsity": 0.9})),
    "bp-fp32": ({"kind": "bp", "bp": "fp32"}, ("bp-fp32", {"optimizer": "adam"})),
    "bp-qat": ({"kind": "bp", "bp": "qat"}, ("bp-qat", {"optimizer": "adam"})),
}


def memory_section() -> dict:
    rows = []
    models = ("resnet8-lp", "resnet8-ft", "vww-lp", "vww-ft")
    batches = (1, 32) if FLAGS.quick else (1, 8, 32)
    for name in models:
        backbone, trainable = MODELS[name]
        path = _model_path(backbone, trainable)  # convert before the workers need it
        for batch in batches:
            for label, (spec, (mode, kw)) in MEMORY_MODES.items():
                spec = {**spec, "model": name, "batch": batch, "steps": 3 if FLAGS.quick else 5}
                out = subprocess.run([sys.executable, __file__, f"--worker={json.dumps(spec)}"] +
                                     ([f"--cache_dir={FLAGS.cache_dir}"] if FLAGS.cache_dir else []),
                                     capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
                if out.returncode or not lines:
                    raise RuntimeError(f"memory worker {spec} failed:\n{out.stderr[-3000:]}")
                measured = json.loads(lines[-1][len("RESULT "):])
                est = memory.estimate(path, batch, mode, n_train=SHOTS * 10, **kw)
                rows.append({"model": name, "mode": label, "batch": batch, **measured,
                             "estimate_bytes": est.total, "estimate": est.as_dict()})
                print(f"  {name:12s} batch {batch:3d} {label:16s} added {measured['added_bytes'] / 2**20:8.2f} MiB "
                      f"(estimate {est.total / 2**20:7.2f} MiB; process baseline "
                      f"{measured['baseline_rss_bytes'] / 2**20:6.0f} MiB)", flush=True)
    return {"rows": rows}


# -------------------------------------------------------------------------------------------- scaling
def scaling() -> dict:
    """Step time (and the analytic FF memory) as one knob grows, ResNet-8, everything else fixed."""
    out = {}
    quick = FLAGS.quick
    task = _task("resnet8")

    def run(path, cfg, cache="auto", task_=task):
        model = FgModel(path, engine="xnnpack", num_threads=1)
        xq, y = _data(model, task_)
        p = profiling.step_profile(model, xq, y, cfg, cache, steps=3 if quick else 8)
        mem = memory.estimate(path, cfg.batch_size, "ff-w16", m=cfg.m, cache=cache, n_train=len(xq))
        return {**p.as_dict(), "trainable_params": model.trainable_params, "memory_bytes": mem.total}

    n_layers = (1, 4, 10) if quick else (1, 2, 4, 7, 10)
    out["trainable_params"] = [{"x": r["trainable_params"], "layers": k, **r} for k in n_layers
                               for r in [run(_model_path("resnet8", f"last:{k}"), _cfg())]]
    ft = _model_path("resnet8", "all")
    out["m"] = [{"x": m, **run(ft, _cfg(m=m))} for m in ((1, 4) if quick else (1, 2, 4, 8, 16))]
    out["batch"] = [{"x": b, **run(ft, _cfg(batch_size=b))} for b in ((1, 32) if quick else (1, 4, 16, 64, 200))]
    out["resolution"] = []
    for size in ((32, 64) if quick else (32, 48, 64, 96)):
        path = _model_path("resnet8", "all", None if size == 32 else size)
        out["resolution"].append({"x": size, **run(path, _cfg(), task_=_task("resnet8", None if size == 32 else size))})
    for knob, rows in out.items():
        for r in rows:
            print(f"  {knob:16s} {r['x']:7d}  step {r['step_ms']:8.2f} ms  ideal {r['ideal_ms']:8.2f} ms  "
                  f"memory {r['memory_bytes'] / 2**20:6.2f} MiB", flush=True)
    return out


# ----------------------------------------------------------------------------------------------- tta
def tta() -> dict:
    """Time to accuracy: FF int8 (plain Sign-m-SPSA w16, the demo's recipe before issue 17) vs Keras
    backprop of the same layers."""
    steps = 1000 if FLAGS.quick else 5000
    backbone, trainable = MODELS["resnet8-block"]
    task = _task(backbone, n_test=N_TEST)
    model = FgModel(_model_path(backbone, trainable), engine="xnnpack", num_threads=1)
    xq, y = _data(model, task)
    xq_te = model.quantize_input(task.x_test)
    cfg = _cfg(batch_size=64, lr=(0.2, 0.2, 0.2, 0.5), steps=steps)
    initial = model.initial_params()
    space = build.build_space(cfg)
    est, tx = build.build_estimator(cfg, initial, space), build.build_transform(cfg)
    state = trainer.init_state(initial, est, tx, space)
    make = objective.minibatch_loss(model, xq, y, SEED, cfg.batch_size)
    ff = [{"step": 0, "wall_s": 0.0, "forward_passes": 0, "eval": model.accuracy(xq_te, task.y_test, initial)}]
    wall, t0 = 0.0, time.perf_counter()
    for state, _ in trainer.fit(state, make, est, tx, SEED, steps, space):
        if state.step % 250 == 0:
            wall += time.perf_counter() - t0
            acc = model.accuracy(xq_te, task.y_test, space.to_engine(state.params))
            ff.append({"step": state.step, "wall_s": wall, "forward_passes": state.forward_passes, "eval": acc})
            print(f"  ff step {state.step:5d} {wall:7.1f} s  acc {acc:.4f}", flush=True)
            t0 = time.perf_counter()
    from converters import backprop, tasks as ctasks
    float_model = ctasks.prototype_model(ctasks.load_backbone(backbone, FLAGS.cache_dir), task.x_support,
                                         task.y_support, 10)
    bp_trainer = backprop.BackpropTrainer(backprop.build_bp_model(float_model, trainable, "fp32"), "adam", 1e-3)
    bp = [{"step": 0, "wall_s": 0.0, "forward_passes": 0, "eval": bp_trainer.accuracy(task.x_test, task.y_test)}]
    for r in bp_trainer.fit_steps(task.x_support, task.y_support, 300 if FLAGS.quick else 1000, 64, SEED,
                                  eval_fn=lambda t: t.accuracy(task.x_test, task.y_test), eval_every=10):
        if "eval" in r:
            bp.append({k: r[k] for k in ("step", "wall_s", "forward_passes", "eval")})
    final = ff[-1]["eval"]
    target = 0.95 * final
    reach = lambda curve: next((r for r in curve if r["eval"] >= target), None)  # noqa: E731
    result = {"ff": ff, "bp": bp, "ff_final": final, "target": target, "ff_reach": reach(ff), "bp_reach": reach(bp),
              "bp_best": max(r["eval"] for r in bp), "ff_config": dataclasses.asdict(cfg)}
    print(f"  target {target:.4f}: ff {result['ff_reach']}, bp {result['bp_reach']}")
    return result


# --------------------------------------------------------------------------------------------- report
def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?") \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    from importlib.metadata import version
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "ai-edge-litert": version("ai-edge-litert"), "numpy": version("numpy"),
            "tensorflow": version("tensorflow-cpu")}


def main(argv):
    del argv
    if FLAGS.worker:
        print("RESULT " + json.dumps(_worker(json.loads(FLAGS.worker))), flush=True)
        return
    unknown = set(FLAGS.sections) - set(SECTIONS)
    if unknown:
        raise app.UsageError(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    assets.ensure_assets(FLAGS.cache_dir, log=print)
    out_dir = pathlib.Path(FLAGS.out_dir)
    fns = {"speed": speed, "engines": engines_section, "threads": threads, "memory": memory_section,
           "scaling": scaling, "tta": tta}
    for section in SECTIONS:
        if section in FLAGS.sections:
            print(f"[{section}]", flush=True)
            t0 = time.time()
            result = fns[section]()
            result.update(section=section, quick=FLAGS.quick, machine=machine(), seconds=round(time.time() - t0, 1))
            runs.write_json(out_dir / f"{section}.json", result)
    from tools import perf_report
    perf_report.write(out_dir, pathlib.Path(FLAGS.doc))
    print(f"wrote {out_dir}/*.json, *.png and {FLAGS.doc}")


if __name__ == "__main__":
    _cli.run(main)
