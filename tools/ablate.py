"""Ablation of the QZO-FF recipe: precision modes and every enhancement, on/off, over seeds.

  python tools/ablate.py                       # the paper's study (both tasks, 3 seeds): ~40 min on 2 cores
  python tools/ablate.py --study=levers        # the levers beyond the paper against w16 / w8
  python tools/ablate.py --tasks=fmnist --seeds=1 --steps=200 --variants=w8,w16   # a quick look

Each run is `tools/train.py --out=<runs_dir>/<task>/<variant>/seed<k>`; finished runs (result.json
present, same flags) are reused, so an interrupted study continues where it stopped. Writes
bench/results/ablation[-<study>].json and .png and docs/ablation.md, which shows every study that has
results (the hand-written notes between the NOTES markers of the old file are kept).
"""
import _paths  # noqa: F401

import json
import os
import pathlib
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from _notes import kept_notes
from absl import app, flags

import _cli

from tflite_fg import runs

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_enum("study", "paper", ["paper", "levers"], "Which set of variants (STUDIES).")
flags.DEFINE_list("tasks", ["fmnist", "digits"], "Tasks (tools/train.py --task).")
flags.DEFINE_list("variants", [], "Subset of variant names (default: all of the task's).")
flags.DEFINE_integer("seeds", 3, "Seeds per variant (0..seeds-1).")
flags.DEFINE_integer("steps", 1000, "Training steps per run.")
flags.DEFINE_integer("jobs", 2, "Runs in parallel (each with one interpreter thread).")
flags.DEFINE_integer("n_test", 1000, "Held-out test images per task.")
flags.DEFINE_string("runs_dir", str(ROOT / "bench" / "runs" / "ablation"), "Per-run directories (<study>/...).")
flags.DEFINE_string("results", str(ROOT / "bench" / "results"), "Where ablation[-<study>].json / .png go.")
flags.DEFINE_string("doc", str(ROOT / "docs" / "ablation.md"), "The markdown report.")
flags.DEFINE_string("cache_dir", None, "Asset cache.")

# The reference everything is compared with: the paper's 16w8a with the anchored arithmetic.
BASE = "w16"
# Block-coordinate probes are train.py's default with the exact head since issue 17: the variants measured
# with dense probes say so, so that they keep meaning what they measured.
DENSE = "--noblock_coordinate"
# name -> (train.py flags on top of the task's common flags, what it tests)
VARIANTS = {
    "w8": ("--precision=w8 --lr=1.0", "int8 only, round-to-nearest updates (the core-pipeline recipe)"),
    "w8-sr": ("--precision=w8 --lr=0.5 --update_rounding=stochastic", "int8 only, stochastic update rounding"),
    "w16": ("--precision=w16 --lr=0.5", "int16 master copy, engine gets round-to-nearest (16w8a)"),
    "w16-paper": ("--precision=w16 --lr=0.5 --arithmetic=paper", "QZO-FF Eq. 6-8 exactly: (w 1_q +- eps_q z_q) M >> k, "
                  "8-bit g_q, integer lr"),
    "w16-engine-sr": ("--precision=w16 --lr=0.5 --engine_rounding=stochastic", "w16, engine copy rounded stochastically"),
    "fp32": ("--precision=fp32 --lr=0.5", "the same estimator on the float Keras model (FF fp)"),
    "m1": ("--precision=w16 --lr=0.5 --m=1", "w16 with m = 1 (Sign-SPSA, 2 passes/step)"),
    "spsa": ("--precision=w16 --lr=50 --estimator=spsa", "w16, magnitude SPSA instead of the sign"),
    "rademacher": ("--precision=w16 --lr=0.5 --distribution=rademacher", "w16, z = +-1"),
    "binomial": ("--precision=w16 --lr=0.5 --distribution=binomial", "w16, centred Binomial(4, 1/2)"),
    "momentum": ("--precision=w16 --lr=0.5 --momentum_alpha=0.5 --momentum_beta_min=0.5 --momentum_decay_steps=500",
                 "w16 + momentum-guided sampling"),
    "sam": ("--precision=w16 --lr=0.5 --sam_rho=1", "w16 + sharpness-aware ascent (+2 passes/step)"),
    "kernel-norm": ("--precision=w16 --lr=0.5 --kernel_norm", "w16 + kernel-wise normalization"),
    "sam+kernel-norm": ("--precision=w16 --lr=0.5 --sam_rho=1 --kernel_norm", "the paper's best pair"),
    "sparse-topk90": ("--precision=w16 --lr=0.5 --mask=topk --sparsity=0.9", "w16, 90% frozen, the 10% largest-magnitude weights train"),
    "sparse-random90": ("--precision=w16 --lr=0.5 --mask=random --sparsity=0.9", "w16, 90% frozen at random"),
    "cosine": ("--precision=w16 --lr=0.5 --schedule=cosine", "w16, cosine lr decay to 0"),
    "step": ("--precision=w16 --lr=0.5 --schedule=step --schedule_every=400 --schedule_factor=0.5", "w16, lr halved "
             "every 400 steps"),
    # Issue 17's levers (docs/benchmarks.md): variance reduction and the forward-only exact head.
    "avg0.9": ("--precision=w16 --lr=0.5 --grad_average=0.9", "w16 + gradient estimates averaged over ~10 steps"),
    "w8-avg0.9": ("--precision=w8 --lr=1.0 --grad_average=0.9", "int8 only + gradient averaging"),
    "exact-head": (f"--precision=w16 --lr=0.5 --exact_head --head_optimizer=sgd --head_lr=0.3 {DENSE}",
                   "w16 FF body + exact head (+1 pass/step; not plain FF)"),
    "exact-head+avg0.9": (f"--precision=w16 --lr=0.5 --exact_head --head_optimizer=sgd --head_lr=0.3 --grad_average=0.9 "
                          f"{DENSE}",
                          "exact head + FF body with gradient averaging"),
    "exact-head-lr3x": (f"--precision=w16 --lr=1.5 --exact_head --head_optimizer=sgd --head_lr=0.3 {DENSE}",
                        "exact head, dense FF body at lr x3 (the control for block-lr3x)"),
    "exact-head+block": ("--precision=w16 --lr=0.5 --exact_head --head_optimizer=sgd --head_lr=0.3 --block_coordinate",
                         "exact head + each probe perturbs one body tensor (same lr)"),
    "exact-head+block-lr3x": ("--precision=w16 --lr=1.5 --exact_head --head_optimizer=sgd --head_lr=0.3 --block_coordinate",
                              "exact head + block-coordinate probes, body lr x3 (one probe's sign per tensor)"),
    "exact-head-adam1": (f"--precision=w16 --lr=0.5 --exact_head --head_optimizer=adam --head_lr=1 {DENSE}",
                         "exact head trained by Adam, 1 int8 LSB per step, dense FF body"),
    "exact-head-adam3": (f"--precision=w16 --lr=0.5 --exact_head --head_optimizer=adam --head_lr=3 {DENSE}",
                         "exact head trained by Adam, 3 int8 LSBs per step, dense FF body"),
    "exact-head-adam0.3": (f"--precision=w16 --lr=0.5 --exact_head --head_optimizer=adam --head_lr=0.3 {DENSE}",
                           "exact head trained by Adam, 0.3 int8 LSB per step, dense FF body"),
    "exact-head+block-lr3x-adam1": ("--precision=w16 --lr=1.5 --exact_head --head_optimizer=adam --head_lr=1 "
                                    "--block_coordinate", "Adam head (1 LSB per step) + block-coordinate body at lr x3"),
    "w8-exact-head+avg0.9": ("--precision=w8 --lr=1.0 --exact_head --head_optimizer=sgd --head_lr=0.3 "
                             f"--grad_average=0.9 {DENSE}", "w8 (no int16 copy): FF body averaged + exact head by SGD"),
    "w8-exact-head-adam1+avg0.9": ("--precision=w8 --lr=1.0 --exact_head --head_optimizer=adam --head_lr=1 "
                                   f"--grad_average=0.9 {DENSE}", "w8: FF body averaged + exact head by Adam, 1 LSB per step"),
    "exact-head+block-lr3x-adam0.3": ("--precision=w16 --lr=1.5 --exact_head --head_optimizer=adam --head_lr=0.3 "
                                      "--block_coordinate", "Adam head (0.3 LSB per step) + block-coordinate body at "
                                      "lr x3"),
    "w8-exact-head+block-lr3x-adam1": ("--precision=w8 --lr=3.0 --exact_head --head_optimizer=adam --head_lr=1 "
                                       "--block_coordinate --grad_average=0.9", "w8: Adam head (1 LSB per step) + "
                                       "block-coordinate body at lr x3, averaged"),
    "exact-head+block-lr3x-adam3": ("--precision=w16 --lr=1.5 --exact_head --head_optimizer=adam --head_lr=3 "
                                    "--block_coordinate", "Adam head (3 LSBs per step) + block-coordinate body at lr x3"),
}
LEVERS = ["avg0.9", "w8-avg0.9", "exact-head", "exact-head+avg0.9", "exact-head-lr3x", "exact-head+block",
          "exact-head+block-lr3x", "exact-head-adam0.3", "exact-head-adam1", "exact-head-adam3",
          "exact-head+block-lr3x-adam0.3", "exact-head+block-lr3x-adam1", "exact-head+block-lr3x-adam3",
          "w8-exact-head+avg0.9", "w8-exact-head-adam1+avg0.9", "w8-exact-head+block-lr3x-adam1"]
# study -> task -> variants. "paper": the paper's modes and enhancements (the second task gets the
# precision modes and the strongest enhancements only); "levers": issue 17's levers against the same
# w16 and w8 baselines, run again with the current conversion (logits headroom 2).
STUDIES = {
    "paper": {"fmnist": [v for v in VARIANTS if v not in LEVERS],
              "digits": ["w8", "w8-sr", "w16", "w16-paper", "fp32", "sam+kernel-norm", "sparse-topk90"]},
    "levers": {t: ["w16", "w8", *LEVERS] for t in ("fmnist", "digits")},
}
STUDY_TITLES = {"paper": "Precision modes and the paper's enhancements",
                "levers": "Levers beyond the paper (issue 17), with the current conversion"}
TASK_FLAGS = {"fmnist": "--task=fmnist --shots=20", "digits": "--task=digits --shots=10"}
PLOTTED = ["w8", "w8-sr", "w16", "w16-paper", "fp32", "sam+kernel-norm", "sparse-topk90", "avg0.9", "exact-head"]


def _run_flags(task: str, variant: str, seed: int) -> list[str]:
    return shlex.split(TASK_FLAGS[task]) + shlex.split(VARIANTS[variant][0]) + [
        f"--seed={seed}", f"--steps={FLAGS.steps}", f"--n_test={FLAGS.n_test}", "--num_threads=1",
        f"--eval_every={max(FLAGS.steps // 10, 1)}", f"--checkpoint_every={FLAGS.steps}", "--log_every=100000"] + (
        [f"--cache_dir={FLAGS.cache_dir}"] if FLAGS.cache_dir else [])


def _run(job: tuple[str, str, int]) -> dict:
    task, variant, seed = job
    out = pathlib.Path(FLAGS.runs_dir) / ("" if FLAGS.study == "paper" else FLAGS.study) / task / variant / f"seed{seed}"
    args = _run_flags(task, variant, seed)
    stamp = out / "flags.json"
    if (out / "result.json").exists() and stamp.exists() and json.loads(stamp.read_text()) == args:
        return {**json.loads((out / "result.json").read_text()), "reused": True}
    out.mkdir(parents=True, exist_ok=True)
    runs.write_json(stamp, args)
    (out / "result.json").unlink(missing_ok=True)
    # Plain-FF variants turn off the exact head, train.py's default since issue 17; the stamp keeps the
    # variant's own flags, so runs made before that default stay valid.
    plain = [] if "--exact_head" in args else ["--noexact_head"]
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), f"--out={out}", "--overwrite", *args,
                           *plain],
                          capture_output=True, text=True, cwd=ROOT)
    (out / "train.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{task}/{variant}/seed{seed} failed (rc {proc.returncode}); see {out / 'train.log'}:\n"
                           + (proc.stdout + proc.stderr)[-2000:])
    return json.loads((out / "result.json").read_text())


def _kept_summaries(path: pathlib.Path) -> dict:
    """The summaries of an earlier study with the same steps, seeds and test size: a study of a few
    variants adds its rows to the report instead of dropping the others'."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if (old.get("steps"), old.get("seeds"), old.get("n_test")) != (FLAGS.steps, FLAGS.seeds, FLAGS.n_test):
        return {}
    return {t: {v: s for v, s in rows.items() if v in VARIANTS} for t, rows in old["results"].items()}


def _summary(results: list[dict]) -> dict:
    acc = np.array([r["final_acc"] for r in results])
    deployed = np.array([r["deployed_int8_acc"] for r in results])
    zero = np.array([r["zero_shot_acc"] for r in results])
    curve_steps = [c["forward_passes"] for c in results[0]["curve"]]
    curves = np.array([[c["test_acc"] for c in r["curve"]] for r in results])
    return {"n": len(results), "acc_mean": float(acc.mean()), "acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "deployed_int8_mean": float(deployed.mean()), "gain_mean": float((acc - zero).mean()),
            "zero_shot": float(zero.mean()), "forward_passes": int(results[0]["forward_passes"]),
            "wall_s_mean": float(np.mean([r["wall_s"] for r in results])),
            "curve": {"forward_passes": curve_steps, "acc_mean": curves.mean(0).tolist()},
            "per_seed": [{"seed": r["seed"], "final_acc": r["final_acc"], "weights_sha256": r["weights_sha256"]}
                         for r in results]}


def _table(task: str, summary: dict) -> list[str]:
    base = summary.get(BASE)
    lines = ["| variant | what | test acc (mean ± std) | vs w16 | deployed int8 | fwd passes | wall s/run |",
             "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        delta = "" if base is None or name == BASE else f"{100 * (s['acc_mean'] - base['acc_mean']):+.1f}"
        lines.append(f"| {name} | {VARIANTS[name][1]} | {100 * s['acc_mean']:.1f} ± {100 * s['acc_std']:.1f} | {delta} "
                     f"| {100 * s['deployed_int8_mean']:.1f} | {s['forward_passes']:,} | {s['wall_s_mean']:.0f} |")
    return lines


def _plot(summaries: dict, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(summaries), figsize=(6 * len(summaries), 4.2), squeeze=False)
    for ax, (task, summary) in zip(axes[0], summaries.items()):
        for name in PLOTTED:
            if name in summary:
                c = summary[name]["curve"]
                ax.plot(c["forward_passes"], [100 * a for a in c["acc_mean"]], marker=".", label=name)
        zero = next(iter(summary.values()))["zero_shot"]
        ax.axhline(100 * zero, color="grey", ls=":", label="zero-shot")
        ax.set(title=f"{task} (mean of {FLAGS.seeds} seeds)", xlabel="forward passes", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _paths(study: str) -> tuple[pathlib.Path, pathlib.Path]:
    """(summary JSON, plot) of a study under --results."""
    stem = "ablation" if study == "paper" else f"ablation-{study}"
    out = pathlib.Path(FLAGS.results)
    return out / f"{stem}.json", out / f"{stem}.png"


def _write_doc(doc: pathlib.Path) -> None:
    """Every study whose summary JSON exists, each with its own tables and plot."""
    lines = ["# Ablation: precision modes, the paper's enhancements and the levers beyond the paper", "",
             "Regenerate: `python tools/ablate.py` and `python tools/ablate.py --study=levers` (each writes its "
             "`bench/results/ablation[-levers].json` and plot, then this file; finished runs are reused).", "",
             "Every run: batch 64, eps 8 int8 LSBs, m = 3 unless named, learning rate in int8 LSBs per unit of z "
             "(the block gets 0.4 of it; the exact head's own rate is a float SGD rate), trainable = last residual "
             f"block + head of ResNet-8 (57,984 weights), engine XNNPACK, one thread; test accuracy on {FLAGS.n_test} "
             "held-out images; mean ± sample std over the seeds. \"vs w16\" is the difference of means in points, "
             "within the same study.", "", kept_notes(doc, "(Findings: written by hand, kept across regenerations.)"),
             ""]
    for study, title in STUDY_TITLES.items():
        path, png = _paths(study)
        if not path.exists():
            continue
        stored = json.loads(path.read_text())
        lines += [f"## {title}", "", f"{stored['steps']} steps per run, seeds 0..{stored['seeds'] - 1}.", ""]
        for task in [t for t in TASK_FLAGS if t in stored["results"]]:  # the JSON is stored with sorted keys
            summary = {v: stored["results"][task][v] for v in VARIANTS if v in stored["results"][task]}
            zero = next(iter(summary.values()))["zero_shot"]
            lines += [f"### {task} (zero-shot prototype head: {100 * zero:.1f}%)", ""] + _table(task, summary) + [""]
        lines += [f"![{study}: accuracy against forward passes]({os.path.relpath(png, doc.parent)})", ""]
    doc.write_text("\n".join(lines))


def main(argv):
    del argv
    study = STUDIES[FLAGS.study]
    bad_tasks = set(FLAGS.tasks) - set(study)
    if bad_tasks:
        raise app.UsageError(f"unknown tasks {sorted(bad_tasks)}; choices: {', '.join(study)}")
    in_study = {v for t in FLAGS.tasks for v in study[t]}
    unknown = set(FLAGS.variants) - in_study
    if unknown:
        other = sorted({name for name, s in STUDIES.items() if unknown <= {v for vs in s.values() for v in vs}})
        raise app.UsageError(f"variants {sorted(unknown)} are not in --study={FLAGS.study} for tasks {FLAGS.tasks}; "
                             f"choices: {', '.join(sorted(in_study))}" +
                             (f" (they are in --study={other[0]})" if other else ""))
    jobs = [(t, v, s) for t in FLAGS.tasks for v in study[t] if not FLAGS.variants or v in FLAGS.variants
            for s in range(FLAGS.seeds)]
    print(f"ablation ({FLAGS.study}): {len(jobs)} runs of {FLAGS.steps} steps, {FLAGS.jobs} at a time")
    t0, results = time.time(), {}
    with ThreadPoolExecutor(FLAGS.jobs) as pool:
        for k, (job, res) in enumerate(zip(jobs, pool.map(_run, jobs)), 1):
            results[job] = res
            print(f"[{k}/{len(jobs)}] {job[0]} {job[1]} seed{job[2]}: {res['zero_shot_acc']:.3f} -> "
                  f"{res['final_acc']:.3f} ({res['wall_s']:.0f} s{', reused' if res.get('reused') else ''}; "
                  f"{time.time() - t0:.0f} s elapsed)", flush=True)
    path, png = _paths(FLAGS.study)
    summaries = _kept_summaries(path)
    for t in FLAGS.tasks:
        summaries.setdefault(t, {}).update({v: _summary([results[(t, v, s)] for s in range(FLAGS.seeds)])
                                            for v in study[t] if (t, v, 0) in results})
        summaries[t] = {v: summaries[t][v] for v in VARIANTS if v in summaries[t]}  # table order
    runs.write_json(path, {"steps": FLAGS.steps, "seeds": FLAGS.seeds, "n_test": FLAGS.n_test,
                           "variants": {v: {"flags": f, "what": w} for v, (f, w) in VARIANTS.items()},
                           "task_flags": TASK_FLAGS, "results": summaries})
    _plot(summaries, png)
    _write_doc(pathlib.Path(FLAGS.doc))
    for task, summary in summaries.items():
        print("\n".join([f"\n{task}"] + _table(task, summary)))
    print(f"wrote {path}, {png}, {FLAGS.doc}")


if __name__ == "__main__":
    _cli.run(main)
