"""Loss-landscape study (Li et al. 2018) on the default task: BP fp32, FF fp32, FF int8 w16 and w8 from
the same start, for LP (the head) and FT (the last block).

  python tools/landscape.py                   # the study: bench/results/landscape/*.json|png, docs/landscape.md
  python tools/landscape.py --quick           # smoke run: few steps, 7 x 7 grids (bench/results/landscape-quick)

Per run: two planes centred on its start, filter-normalised random directions and the top two PCA
directions of its trajectory; a grid of training-set losses in each (the int8 graph judges the int8
runs, the float model the float ones); the trajectory projected on both; and the loss along the
straight line from start to end.
"""
import _paths  # noqa: F401

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import dataclasses
import json
import pathlib
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging

import _cli
import _notes
from converters import landscape as cland
from converters.benchmark import Hyper
from tflite_fg import landscape, runs, selection
from tflite_fg.atomic import atomic_write

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICK = {"scale": 0.02, "grid": 7, "snapshots": 6}

FLAGS = flags.FLAGS
flags.DEFINE_list("modes", list(cland.MODES), "Training modes: LP (the head), FT (the last block).")
flags.DEFINE_list("methods", list(cland.METHODS), "Methods.")
flags.DEFINE_integer("ff_steps", 2000, "FF steps per run.")
flags.DEFINE_integer("bp_steps", 200, "BP steps per run.")
flags.DEFINE_float("ff_lr", 0.5, "FF fp32 / w16 learning rate (int8 LSBs per unit of z; the demo's).")
flags.DEFINE_float("w8_lr", 2.0, "FF w8 learning rate (w8 rounds updates to whole LSBs: docs/ablation.md).")
flags.DEFINE_float("bp_lr", 1e-3, "BP Adam learning rate.")
flags.DEFINE_integer("grid", 31, "Grid points per axis.")
flags.DEFINE_integer("snapshots", 20, "Trajectory points after the start.")
flags.DEFINE_float("random_range", 1.0, "Random plane: alpha, beta in [-r, r] (1 = the weights' own filter norms).")
flags.DEFINE_integer("seed", 0, "Training seed (mini-batches, perturbations) and random-direction seed.")
flags.DEFINE_bool("quick", False, f"Smoke run: steps x {QUICK['scale']}, {QUICK['grid']} x {QUICK['grid']} grids; "
                  "results under landscape-quick.")
flags.DEFINE_bool("report_only", False, "Only redraw the panels and rewrite the report from the stored JSON.")
flags.DEFINE_string("results", str(ROOT / "bench" / "results"), "JSON and PNGs go to <results>/landscape[-quick].")
flags.DEFINE_string("doc", None, "The markdown report (default docs/landscape.md; with --quick, <out>/landscape.md).")
flags.DEFINE_string("cache_dir", None, "Asset cache.")

LABELS = {"bp-fp32": "BP fp32", "ff-fp32": "FF fp32", "ff-w16": "FF int8 w16", "ff-w8": "FF int8 w8"}


def _recipe(method: str, scale: float) -> cland.Recipe:
    steps = FLAGS.bp_steps if method.startswith("bp") else FLAGS.ff_steps
    lr = {"bp-fp32": FLAGS.bp_lr, "ff-w8": FLAGS.w8_lr}.get(method, FLAGS.ff_lr)
    return cland.Recipe(method, Hyper(lr=lr, steps=max(FLAGS.snapshots, int(round(steps * scale))), batch_size=64))


def study(s: cland.Setup, recipe: cland.Recipe, grid: int, snapshots: int) -> dict:
    """Train, then both planes' grids, the projections and the 1-D interpolation for one run."""
    run = cland.train(s, recipe, snapshots, FLAGS.seed)
    traj, like = run["trajectory"], s.model.initial_params()
    origin, end = traj[0], traj[-1]
    loss = cland.loss_function(s, recipe.method)
    axes = selection.tflite_axes(s.model.meta)
    start_params = landscape.unflatten(origin, like)
    planes = {}
    t0 = time.perf_counter()
    d1, d2, ratio = landscape.pca_directions(traj, origin)
    r1 = FLAGS.random_range
    for name, (u, v) in {"pca": (d1, d2),
                         "random": (landscape.filter_normalized_direction(start_params, axes, FLAGS.seed),
                                    landscape.filter_normalized_direction(start_params, axes, FLAGS.seed + 1))}.items():
        coords = landscape.project(traj, origin, u, v)
        ra, rb = (landscape.plane_range(coords[:, 0]), landscape.plane_range(coords[:, 1])) if name == "pca" \
            else ((-r1, r1), (-r1, r1))
        alphas, betas = np.linspace(*ra, grid), np.linspace(*rb, grid)
        losses = landscape.grid_losses(loss, origin, u, v, alphas, betas, like)
        planes[name] = {"alphas": alphas.tolist(), "betas": betas.tolist(), "losses": losses.tolist(),
                        "trajectory": coords.tolist(), "roughness": landscape.roughness(losses),
                        "direction_norms": [float(np.linalg.norm(u)), float(np.linalg.norm(v))]}
    planes["pca"]["explained_variance"] = ratio.tolist()
    ts = np.linspace(-0.5, 1.5, 41)
    interp = landscape.interpolate(loss, origin, end, ts, like)
    grid_s = time.perf_counter() - t0
    steps_per_epoch = len(s.task.y_support) / recipe.hyper.batch_size
    return {"mode": s.mode, "method": recipe.method, "hyper": dataclasses.asdict(recipe.hyper), "steps": run["steps"],
            "train_s": round(run["train_s"], 2), "grid_s": round(grid_s, 2), "grid": grid,
            "start_loss": float(loss(start_params)), "end_loss": float(loss(landscape.unflatten(end, like))),
            "start_acc": cland.accuracy(s, recipe.method, start_params),
            "end_acc": cland.accuracy(s, recipe.method, landscape.unflatten(end, like)),
            "path": landscape.path_stats(traj, run["steps"], steps_per_epoch), "steps_per_epoch": steps_per_epoch,
            "trainable_params": int(origin.size), "planes": planes,
            "interpolation": {"t": ts.tolist(), "losses": interp.tolist()}}


# ---- figures ------------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _contour(ax, res: dict, plane: str) -> None:
    p = res["planes"][plane]
    a, b, z = np.array(p["alphas"]), np.array(p["betas"]), np.array(p["losses"])
    levels = np.linspace(z.min(), np.percentile(z, 95), 15)
    cs = ax.contour(a, b, z, levels=levels, cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2f")
    t = np.array(p["trajectory"])
    ax.plot(t[:, 0], t[:, 1], "-o", color="crimson", ms=2.5, lw=1)
    ax.plot(*t[0], "k^", ms=6, label="start")
    ax.plot(*t[-1], "k*", ms=9, label="end")
    extra = f", PCA {100 * sum(p['explained_variance']):.0f}% of variance" if plane == "pca" else ""
    ax.set_title(f"{res['mode']} {LABELS[res['method']]}: {plane} plane{extra}", fontsize=9)
    ax.set_xlabel("α (int8 LSB units)" if plane == "pca" else "α (× filter norm)", fontsize=8)
    ax.set_ylabel("β", fontsize=8)


def plot_run(res: dict, path: pathlib.Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, plane in zip(axes, ("pca", "random")):
        _contour(ax, res, plane)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_panel(results: list[dict], path: pathlib.Path, plane: str) -> None:
    plt = _plt()
    n = len(results)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.3 * rows), squeeze=False)
    for ax, res in zip(axes.ravel(), results):
        _contour(ax, res, plane)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_interpolation(results: list[dict], path: pathlib.Path) -> None:
    plt = _plt()
    modes = list(dict.fromkeys(r["mode"] for r in results))
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for r in [r for r in results if r["mode"] == mode]:
            ax.plot(r["interpolation"]["t"], r["interpolation"]["losses"], label=LABELS[r["method"]])
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.axvline(1, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{mode}: loss along start + t (end - start)", fontsize=9)
        ax.set_xlabel("t (0 = start, 1 = end)")
        ax.set_ylabel("training-set loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- report -------------------------------------------------------------------------------------

def write_report(results: list[dict], out: pathlib.Path, doc: pathlib.Path, command: str) -> None:
    rel = lambda p: os.path.relpath(p, doc.parent)  # noqa: E731
    total = sum(r["grid_s"] for r in results)
    g = results[0]["grid"]
    lines = [
        "# Loss landscapes of BP and forward-gradient training", "",
        f"Reproduce: `{command}` (training {sum(r['train_s'] for r in results) / 60:.1f} min, grids "
        f"{total / 60:.1f} min on one core: {g} x {g} points per plane, two planes per run, "
        f"{np.mean([r['grid_s'] for r in results]):.0f} s per run on average).", "",
        "Task: the default one (MLPerf Tiny ResNet-8 with a prototype head, Fashion-MNIST, 20 shots per class). "
        "LP trains the head, FT the last residual block and the head. Every run starts at the same point "
        "(the int8 runs at its int8 rounding) and sees the same mini-batches. Losses are on the 200 training "
        "images, judged by the graph the run trains: the int8 TFLite model for the int8 runs, the float "
        "Keras model for the float runs. Coordinates are in int8-LSB units (w / Δw), the units all methods share.",
        "",
        "Planes, centred on each run's start point (Li et al. 2018):",
        "- **PCA**: the top two principal directions of the run's trajectory (orthonormal). The trajectory is "
        "drawn in red (start ▲, end ★).",
        f"- **random**: filter-normalised Gaussian directions, α, β ∈ [−{FLAGS.random_range:g}, "
        f"{FLAGS.random_range:g}] (1 = each filter's own norm). A trajectory is nearly orthogonal to random "
        "directions, so its projection there stays near the origin.", "",
        "| mode | method | steps | train loss start → end | test acc start → end | path length / epoch | "
        "displacement (% of ‖w‖) | straightness | PCA variance (2 dirs) | roughness PCA / random | train s | grids s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p = r["path"]
        lines.append(
            f"| {r['mode']} | {LABELS[r['method']]} | {r['steps'][-1]} | {r['start_loss']:.3f} → {r['end_loss']:.3f} | "
            f"{100 * r['start_acc']:.1f} → {100 * r['end_acc']:.1f} | {p['per_epoch']:.2f} | "
            f"{p['displacement']:.1f} ({100 * p['displacement'] / p['start_norm']:.2f}%) | "
            f"{p['displacement'] / p['path_length']:.2f} | "
            f"{100 * sum(r['planes']['pca']['explained_variance']):.0f}% | "
            f"{r['planes']['pca']['roughness']:.3f} / {r['planes']['random']['roughness']:.3f} | "
            f"{r['train_s']:.0f} | {r['grid_s']:.0f} |")
    lines += ["", "Path length and displacement are in int8-LSB units over all trainable weights; an epoch is "
              f"{results[0]['steps_per_epoch']:.2f} steps (200 images, batch 64); straightness = displacement / path "
              "length, measured between snapshots (1 = a straight line). Roughness: the mean |third difference| of "
              "the grid's losses over its range (0 on any quadratic bowl).", ""]
    for mode in dict.fromkeys(r["mode"] for r in results):
        lines += [f"## {mode}", "", f"![{mode} PCA planes]({rel(out / f'{mode}-pca.png')})", "",
                  f"![{mode} random planes]({rel(out / f'{mode}-random.png')})", ""]
    lines += ["## Start to end", "", f"![interpolation]({rel(out / 'interpolation.png')})", "",
              "Per-run figures (both planes side by side): " +
              ", ".join(f"[{r['mode']} {LABELS[r['method']]}]({rel(out / (r['mode'] + '-' + r['method'] + '.png'))})"
                        for r in results) + ".", "",
              "## What the figures show", "", _notes.kept_notes(doc, "(to be written after the run)"), ""]
    doc.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(doc, "\n".join(lines).encode())


def _stored(out: pathlib.Path) -> list[dict]:
    results = [json.loads((out / f"{mode}-{method}.json").read_text()) for mode in FLAGS.modes
               for method in FLAGS.methods if (out / f"{mode}-{method}.json").exists()]
    if not results:
        raise app.UsageError(f"--report_only: no stored runs in {out}; run the study first")
    return results


def _run_all(out: pathlib.Path, scale: float, grid: int, snapshots: int, t0: float) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in FLAGS.modes:
            s = cland.setup(mode, tmp, FLAGS.cache_dir)
            for method in FLAGS.methods:
                res = study(s, _recipe(method, scale), grid, snapshots)
                runs.write_json(out / f"{mode}-{method}.json", res)
                plot_run(res, out / f"{mode}-{method}.png")
                results.append(res)
                print(f"{mode} {method}: loss {res['start_loss']:.3f} -> {res['end_loss']:.3f}, test acc "
                      f"{res['start_acc']:.3f} -> {res['end_acc']:.3f}; train {res['train_s']:.0f} s, grids "
                      f"{res['grid_s']:.0f} s ({time.time() - t0:.0f} s elapsed)", flush=True)
    return results


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    bad = (set(FLAGS.modes) - set(cland.MODES)) | (set(FLAGS.methods) - set(cland.METHODS))
    if bad:
        raise app.UsageError(f"unknown modes/methods {sorted(bad)}; modes: {', '.join(cland.MODES)}; "
                             f"methods: {', '.join(cland.METHODS)}")
    if FLAGS.grid < 3 or FLAGS.snapshots < 3:
        raise app.UsageError("--grid and --snapshots must be >= 3")
    scale = QUICK["scale"] if FLAGS.quick else 1.0
    grid = QUICK["grid"] if FLAGS.quick else FLAGS.grid
    snapshots = QUICK["snapshots"] if FLAGS.quick else FLAGS.snapshots
    out = pathlib.Path(FLAGS.results) / ("landscape-quick" if FLAGS.quick else "landscape")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = _stored(out) if FLAGS.report_only else _run_all(out, scale, grid, snapshots, t0)
    for mode in dict.fromkeys(r["mode"] for r in results):
        for plane in ("pca", "random"):
            plot_panel([r for r in results if r["mode"] == mode], out / f"{mode}-{plane}.png", plane)
    plot_interpolation(results, out / "interpolation.png")
    command = " ".join(["python tools/landscape.py"] + [a for a in sys.argv[1:] if a != "--report_only"])
    doc = pathlib.Path(FLAGS.doc) if FLAGS.doc else (out / "landscape.md" if FLAGS.quick else ROOT / "docs" / "landscape.md")
    write_report(results, out, doc, command)
    print(f"wrote {out}/*.json|png and {doc} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    _cli.run(main)
