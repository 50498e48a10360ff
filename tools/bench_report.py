"""Summaries, plots and the markdown report of tools/bench.py (docs/benchmarks.md).

  python tools/bench_report.py          # rebuild docs/benchmarks.md from bench/results/paper/*.json

Hand-written discussion between the NOTES markers of the existing report is kept.
"""
import _paths  # noqa: F401

import json
import os
import pathlib

import numpy as np
from _notes import kept_notes
from absl import app, flags

import _cli

from converters.benchmark import TRAINED_METHODS

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_RESULTS, DEFAULT_DOC = ROOT / "bench" / "results" / "paper", ROOT / "docs" / "benchmarks.md"
LABELS = {"bp-fp32": "BP fp32", "bp-qat": "BP QAT", "ff-fp32": "FF fp32", "ff-w16": "FF int8 w16",
          "ff-w8": "FF int8 w8", "ffh-w16": "FF + exact head w16", "ffh-w8": "FF + exact head w8"}
FF_INT8 = ("ff-w16", "ff-w8", "ffh-w16", "ffh-w8")  # compared with BP fp32 in the gap columns and counts
DEFAULT_RECIPE = "ffh-w16"  # tools/train.py's default: FF on the body, the exact head where it applies
W8_PAIRS = (("ffh-w8", "ffh-w16"), ("ff-w8", "ff-w16"))  # int8-only weights against the int16 master copy


def mean_ci(values) -> dict:
    """Mean and the half-width of its 95% confidence interval (Student t over episodes)."""
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return {"mean": float(v.mean()), "ci": 0.0, "n": len(v)}
    from scipy import stats
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return {"mean": float(v.mean()), "ci": half, "n": len(v)}


def _curve(runs: list[dict]) -> dict:
    pts = [r["curve"] for r in runs]
    return {k: np.mean([[p[k] for p in c] for c in pts], axis=0).round(4).tolist()
            for k in ("step", "forward_passes", "wall_s", "acc")}


def summarize(spec, results: list[dict], chosen: dict, val_results: list[dict]) -> dict:
    """Per row (variant x mode): zero-shot and each method's test accuracy (mean ± 95% CI over
    episodes), forward passes, training wall time and the mean curve; and what the tuning and
    test units cost, with the estimate for the benchmark's full number of test episodes."""
    rows = []
    for v in spec.variants:
        for m in [m.name for m in spec.modes]:
            cell = [r for r in results if (r["unit"]["variant"], r["unit"]["mode"]) == (v, m)]
            if not cell:
                continue
            row = {"variant": v, "mode": m, "trainable": cell[0]["mode"]["trainable"],
                   "mask": cell[0]["mode"]["mask"], "episodes": len(cell),
                   "trainable_params": cell[0]["trainable_params"], "n_train": cell[0]["n_train"],
                   "n_test": cell[0]["n_test"],
                   "zero_shot_fp32": mean_ci([r["zero_shot"]["fp32"] for r in cell]),
                   "zero_shot_int8": mean_ci([r["zero_shot"]["int8"] for r in cell]), "methods": {}}
            for method in TRAINED_METHODS:
                runs = [run for r in cell for run in r["runs"] if run["method"] == method]
                if not runs:
                    continue
                c = chosen[(v, m, method)]
                row["methods"][method] = {**mean_ci([run["final_acc"] for run in runs]), "lr": c["lr"],
                                          "grid_edge": c.get("grid_edge", False),
                                          "val_acc": {str(k): x for k, x in c["val_acc"].items()},
                                          "hyper": runs[0]["hyper"],
                                          "forward_passes": int(np.mean([run["forward_passes"] for run in runs])),
                                          "wall_s": float(np.mean([run["wall_s"] for run in runs])),
                                          "curve": _curve(runs)}
            rows.append(row)
    val_s, test_s = (sum(r["unit_s"] for r in rs) for rs in (val_results, results))
    per_row = max(len(results) // max(len(rows), 1), 1)
    full = spec.episodes["test"]
    return {"task": spec.name, "what": spec.what, "rows": rows,
            "validation_episodes": len(val_results) // max(len(rows), 1), "test_episodes": per_row,
            "full_test_episodes": full, "val_compute_s": round(val_s, 1), "test_compute_s": round(test_s, 1),
            "compute_s": round(val_s + test_s, 1), "full_compute_s": round(val_s + test_s * full / per_row, 1)}


def _pct(s: dict) -> str:
    return f"{100 * s['mean']:.1f} ± {100 * s['ci']:.1f}"


def _gap(row: dict, method: str) -> float | None:
    ms = row["methods"]
    if method in ms and "bp-fp32" in ms:
        return 100 * (ms[method]["mean"] - ms["bp-fp32"]["mean"])
    return None


def _table(summary: dict) -> list[str]:
    methods = [m for m in TRAINED_METHODS if any(m in r["methods"] for r in summary["rows"])]
    head = ["row", "mode (trainable)", "zero-shot fp32", "zero-shot int8"] + [LABELS[m] for m in methods] + \
           [f"{LABELS[m]} − BP fp32" for m in FF_INT8 if m in methods]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary["rows"]:
        mode = f"{r['mode']} ({r['trainable']}{', FF mask ' + r['mask'] if r['mask'] != 'none' else ''}; " \
               f"{r['trainable_params']:,} w)"
        cells = [r["variant"], mode, _pct(r["zero_shot_fp32"]), _pct(r["zero_shot_int8"])]
        cells += [_pct(r["methods"][m]) if m in r["methods"] else "" for m in methods]
        cells += [f"{g:+.1f}" if (g := _gap(r, m)) is not None else "" for m in FF_INT8 if m in methods]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _cost_table(summary: dict) -> list[str]:
    out = ["| row | mode | method | lr (grid: best mean val acc) | steps (chosen on val) | forward passes | "
           "train wall s |", "|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        for m, s in r["methods"].items():
            by_rate = sorted(s["val_acc"].items(), key=lambda ka: float(ka[0]))  # JSON sorted the keys as text
            grid = ", ".join(f"{float(k):g}: {100 * a:.1f}" for k, a in by_rate)
            edge = " (grid edge)" if s.get("grid_edge") else ""
            out.append(f"| {r['variant']} | {r['mode']} | {LABELS[m]} | **{s['lr']:g}**{edge} ({grid}) | "
                       f"{s['hyper']['steps']} | {s['forward_passes']:,} | {s['wall_s']:.2f} |")
    return out


def _at(curve: dict, key: str, x: float) -> float | None:
    """The mean curve's accuracy at x (forward passes or wall s): linear between its points, None
    before its first point, its last value after its end (the run stopped there)."""
    xs, acc = curve[key], curve["acc"]
    if not xs or x < xs[0]:
        return None
    return float(np.interp(x, xs, acc))


def _first_reaching(curve: dict, key: str, target: float) -> float | None:
    return next((x for x, a in zip(curve[key], curve["acc"]) if a >= target), None)


def _budget_table(summary: dict) -> list[str]:
    """Equal wall time and passes to 95% of BP's final accuracy, from the mean test curves."""
    out = ["| row | mode | BP fp32 final (wall s) | method | acc at BP's wall time | final acc (wall s) | "
           "passes to 95% of BP final | BP's passes to it |", "|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        bp = r["methods"].get("bp-fp32")
        if bp is None:
            continue
        wall, target = bp["wall_s"], 0.95 * bp["mean"]
        bp_passes = _first_reaching(bp["curve"], "forward_passes", target)
        for m in FF_INT8 + ("ff-fp32",):
            s = r["methods"].get(m)
            if s is None:
                continue
            at = _at(s["curve"], "wall_s", wall)
            passes = _first_reaching(s["curve"], "forward_passes", target)
            out.append(f"| {r['variant']} | {r['mode']} | {100 * bp['mean']:.1f} ({wall:.2f}) | {LABELS[m]} | "
                       f"{'not evaluated yet' if at is None else f'{100 * at:.1f}'} | {100 * s['mean']:.1f} "
                       f"({s['wall_s']:.2f}) | {'not reached' if passes is None else f'{passes:,.0f}'} | "
                       f"{'-' if bp_passes is None else f'{bp_passes:,.0f}'} |")
    return out


def within_counts(summaries: dict) -> dict:
    """How many cells (rows of all tables) put each FF int8 method within 5 / 2 points of BP fp32."""
    out = {}
    for m in sorted(FF_INT8, key=lambda k: k != DEFAULT_RECIPE):
        gaps = [g for s in summaries.values() for r in s["rows"] if (g := _gap(r, m)) is not None]
        out[m] = {"cells": len(gaps), "within5": sum(g >= -5 for g in gaps), "within2": sum(g >= -2 for g in gaps)}
    return out


def w8_counts(summaries: dict) -> dict:
    """How many cells put the int8-only mode within 1 point of the same recipe on the int16 master copy."""
    out = {}
    for w8, w16 in W8_PAIRS:
        gaps = [100 * (r["methods"][w8]["mean"] - r["methods"][w16]["mean"]) for s in summaries.values()
                for r in s["rows"] if w8 in r["methods"] and w16 in r["methods"]]
        out[w8] = {"cells": len(gaps), "within1": sum(g >= -1 for g in gaps), "worst": min(gaps, default=None)}
    return out


AXES = {"passes": ("forward_passes", "forward passes (batches)"), "wall": ("wall_s", "training wall time (s)")}


def plot(summary: dict, out: pathlib.Path) -> dict[str, pathlib.Path]:
    """Mean test-accuracy curves, one panel per row (variants down, modes across), against forward
    passes and against training wall time: <out>/<task>-passes.png and <task>-wall.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = summary["rows"]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    paths = {}
    for name, (key, label) in AXES.items():
        fig, axes = plt.subplots(len(variants), len(modes), figsize=(4.3 * len(modes), 3.3 * len(variants)),
                                 squeeze=False)
        for r in rows:
            ax = axes[variants.index(r["variant"])][modes.index(r["mode"])]
            for m, s in r["methods"].items():
                c = s["curve"]
                ax.plot(c[key], [100 * a for a in c["acc"]], marker=".", label=LABELS[m],
                        ls="--" if m.startswith("bp") else "-")
            ax.axhline(100 * r["zero_shot_fp32"]["mean"], color="grey", ls=":", label="zero-shot fp32")
            ax.axhline(100 * r["zero_shot_int8"]["mean"], color="black", ls=":", lw=0.8, label="zero-shot int8")
            ax.set_xscale("log")
            ax.set(xlabel=label, ylabel="test accuracy (%)", title=f"{r['variant']} {r['mode']} (n={r['episodes']})")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{summary['task']}: mean test accuracy during training")
        fig.tight_layout()
        paths[name] = out / f"{summary['task']}-{name}.png"
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(paths[name], dpi=100)
        plt.close(fig)
    return paths


def load_summaries(out: pathlib.Path) -> dict:
    """The summaries tools/bench.py wrote to ``out``, in the suite's order."""
    found = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    order = [n for n in ("fmnist-fewshot", "vww-faces", "fmnist-c", "sounds-fewshot") if n in found]
    return {n: found[n] for n in order + sorted(set(found) - set(order))}


def write_report(summaries: dict, out: pathlib.Path, doc: pathlib.Path) -> None:
    counts = within_counts(summaries)
    compute = sum(s["compute_s"] for s in summaries.values())
    full = sum(s.get("full_compute_s", s["compute_s"]) for s in summaries.values())
    report_only = "python tools/bench_report.py" + "".join(
        f" --{flag}={os.path.relpath(path, ROOT)}" for flag, path, default in
        (("results", out, DEFAULT_RESULTS), ("doc", doc, DEFAULT_DOC)) if pathlib.Path(path).resolve() != default)
    lines = ["# Benchmarks: the paper's experiments on real offline data", "",
             "Regenerate (each command writes its benchmark's `" + os.path.relpath(out, ROOT) + "/<name>.json` and "
             f"plot, then this file from every summary there; finished units are reused; report only: "
             f"`{report_only}`):", ""] + [f"    {s.get('command', '?')}" for s in summaries.values()] + [
             "",
             f"Compute: {compute / 60:.0f} worker-minutes on this machine (2 cores, one single-threaded worker "
             f"per core, so about half that in wall time); with every benchmark's full number of test episodes "
             f"about {full / 60:.0f} worker-minutes (`--tasks` sets the number per row).", "",
             "**Summary:** " + " ".join(f"{'; '.join(part)}." for part in (
                 [f"{LABELS[m]}{' (the default recipe)' if m == DEFAULT_RECIPE else ''} within 2 / 5 points of BP "
                  f"fp32 on {c['within2']} / {c['within5']} of {c['cells']} cells"
                  for m, c in counts.items() if c["cells"]],
                 [f"{LABELS[w8]} within 1 point of {LABELS[w16]} on {c['within1']} of {c['cells']} cells (worst "
                  f"{c['worst']:+.1f})" for (w8, w16), c in zip(W8_PAIRS, w8_counts(summaries).values())
                  if c["cells"]]) if part), "",
             "Cells: test accuracy in %, mean ± 95% CI (Student t) over the row's test episodes. The learning rate "
             "and the number of steps (one of 10 evaluation points up to the cap) of every method and row were "
             "chosen on validation episodes (second table per task). Forward passes count batch evaluations (a BP "
             "step is one forward and one backward pass; an FF step is 2m = 6 forward passes, 7 with the exact "
             "head, whose head-only LP step is 1). \"FF + exact head\" trains the dense head with its exact "
             "gradient from one forward pass (tflite_fg/exact_head.py) and the rest by FF: its own rows, not FF. "
             "FF int8 runs the LiteRT interpreter (XNNPACK, one thread) on the converted graph; "
             "FF fp32 and BP run tf_keras on one thread.", "",
             kept_notes(doc, "(Discussion: written by hand, kept across regenerations.)"), ""]
    for name, s in summaries.items():
        pngs = plot(s, out)
        lines += [f"## {name}", "", f"{s['what']}. Per row: {s['validation_episodes']} validation episodes, "
                  f"{s['test_episodes']} test episodes (the full protocol: {s['full_test_episodes']}). Compute: "
                  f"{s['val_compute_s'] / 60:.0f} worker-min tuning + {s['test_compute_s'] / 60:.0f} testing; "
                  f"the full protocol would take about {s['full_compute_s'] / 60:.0f} worker-min.", ""]
        lines += _table(s) + ["", "<details><summary>learning rates, passes, wall time</summary>", ""]
        lines += _cost_table(s) + ["", "</details>", ""]
        lines += ["Equal wall time on this CPU and forward passes to 95% of BP fp32's final accuracy (from the mean "
                  "test curves; a curve's first point is after a tenth of its steps):", ""]
        lines += _budget_table(s) + [""]
        lines += [f"![{name}: accuracy against {k}]({os.path.relpath(p, doc.parent)})" for k, p in pngs.items()] + [""]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines))


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    out = pathlib.Path(FLAGS.results)
    summaries = load_summaries(out)
    if not summaries:
        raise app.UsageError(f"no summaries in {out}: run tools/bench.py first")
    write_report(summaries, out, pathlib.Path(FLAGS.doc))
    print(f"wrote {FLAGS.doc}")


if __name__ == "__main__":  # flags here: tools/bench.py imports this module and has its own
    flags.DEFINE_string("results", str(DEFAULT_RESULTS), "Summaries written by tools/bench.py.")
    flags.DEFINE_string("doc", str(DEFAULT_DOC), "The report.")
    _cli.run(main)
