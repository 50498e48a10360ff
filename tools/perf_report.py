"""docs/performance.md and its plots from the JSON results of tools/bench_perf.py.

  python tools/perf_report.py          # rebuild the report from bench/results/perf/*.json

Hand-written findings between the NOTES markers of the existing report are kept.
"""
import _paths  # noqa: F401

import json
import pathlib

from absl import flags

import _cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTES_BEGIN, NOTES_END = "<!-- NOTES -->", "<!-- /NOTES -->"
MiB = 2.0 ** 20


def _load(out_dir: pathlib.Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))}


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def _find(rows: list[dict], **kw) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)


def _targets(res: dict) -> list[str]:
    rows = []
    mem = res.get("memory", {}).get("rows", [])
    for model in ("resnet8-lp", "resnet8-ft", "vww-lp", "vww-ft"):
        for batch in (1, 8, 32):
            inf, ff = _find(mem, model=model, batch=batch, mode="infer"), _find(mem, model=model, batch=batch, mode="ff-w16")
            if inf and ff:
                ratio = ff["added_bytes"] / max(inf["added_bytes"], 1)
                rows.append([f"FF (w16) added memory <= 1.25x inference's, {model}, batch {batch}",
                             f"{ff['added_bytes'] / MiB:.2f} / {inf['added_bytes'] / MiB:.2f} MiB = {ratio:.2f}x",
                             "met" if ratio <= 1.25 else "**missed**"])
    ff, bp = _find(mem, model="resnet8-ft", batch=32, mode="ff-w16"), _find(mem, model="resnet8-ft", batch=32, mode="bp-fp32")
    if ff and bp:
        ratio = bp["added_bytes"] / max(ff["added_bytes"], 1)
        rows.append(["Keras BP fp32 / FF added memory >= 3x, ResNet-8 FT, batch 32", f"{ratio:.2f}x",
                     "met" if ratio >= 3 else "**missed**"])
    speed = res.get("speed", {}).get("rows", [])
    ft = _find(speed, model="resnet8-ft", precision="w16", cache="none")
    if ft:
        rows.append(["orchestrator overhead <= 10% of the forward invokes, ResNet-8 FT (w16, batch 32, m 3)",
                     f"{ft['overhead']:.1%}", "met" if ft["overhead"] <= 0.10 else "**missed**"])
    for model in ("resnet8-lp", "vww-lp"):
        none, best = _find(speed, model=model, precision="w16", cache="none"), _find(speed, model=model, precision="w16", cache="dataset")
        batch = _find(speed, model=model, precision="w16", cache="batch")
        if none and best and batch:
            rows.append([f"frozen-prefix caching >= 3x faster steps, LP {model}",
                         f"{none['step_ms'] / best['step_ms']:.1f}x per data set, {none['step_ms'] / batch['step_ms']:.1f}x per batch",
                         "met" if none["step_ms"] / batch["step_ms"] >= 3 else "**missed**"])
    return _table(["target", "measured", ""], rows) if rows else ["(memory/speed sections not run)"]


def _plot_memory(res: dict, png: pathlib.Path) -> bool:
    rows = res.get("memory", {}).get("rows", [])
    if not rows:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(r["model"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    batch = max(r["batch"] for r in rows)
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        vals = [(_find(rows, model=m, mode=mode, batch=batch) or {}).get("added_bytes", 0) / MiB for m in models]
        ax.bar([j + i * width for j in range(len(models))], vals, width, label=mode)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(models))], models)
    ax.set_yscale("log")
    ax.set_ylabel("peak memory added by the run (MiB, log)")
    ax.set_title(f"Memory added by inference, FF and Keras backprop, batch {batch} (measured, one process each)")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def _plot_scaling(res: dict, png: pathlib.Path) -> bool:
    sc = {k: v for k, v in res.get("scaling", {}).items() if isinstance(v, list)}
    if not sc:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = {"trainable_params": "trainable weights", "m": "perturbations m", "batch": "batch size",
              "resolution": "input side (pixels)"}
    fig, axes = plt.subplots(2, len(sc), figsize=(4 * len(sc), 7))
    for col, (knob, rows) in enumerate(sc.items()):
        x = [r["x"] for r in rows]
        ax = axes[0][col]
        ax.loglog(x, [r["step_ms"] for r in rows], "o-", label="measured step")
        ax.loglog(x, [r["ideal_ms"] for r in rows], "k--", label="ideal: 2m x forward")
        ax.set_xlabel(labels.get(knob, knob))
        ax.set_ylabel("ms per step")
        ax.legend(fontsize=8)
        ax = axes[1][col]
        ax.loglog(x, [r["memory_bytes"] / MiB for r in rows], "s-", color="tab:green", label="FF w16 (analytic)")
        ax.set_xlabel(labels.get(knob, knob))
        ax.set_ylabel("MiB")
        ax.legend(fontsize=8)
    fig.suptitle("ResNet-8, w16, xnnpack, 1 thread: cost as one knob grows (log-log)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def _plot_tta(res: dict, png: pathlib.Path) -> bool:
    t = res.get("tta")
    if not t:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, curve in (("FF int8 (w16, Sign-m-SPSA)", t["ff"]), ("Keras backprop fp32 (Adam)", t["bp"])):
        axes[0].plot([r["wall_s"] for r in curve], [r["eval"] for r in curve], label=name)
        axes[1].plot([max(r["forward_passes"], 1) for r in curve], [r["eval"] for r in curve], label=name)
    for ax, xl in zip(axes, ("training wall time (s)", "forward passes (BP: one per step, + a backward)")):
        ax.axhline(t["target"], color="k", ls=":", label="95% of FF's final accuracy")
        ax.set_xlabel(xl)
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)
    axes[1].set_xscale("log")
    fig.suptitle("Time to accuracy, ResNet-8 last block + head, Fashion-MNIST 20-shot")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def write(out_dir: pathlib.Path, doc: pathlib.Path) -> None:
    res = _load(out_dir)
    notes = ""
    if doc.exists() and NOTES_BEGIN in doc.read_text():
        old = doc.read_text()
        notes = old[old.index(NOTES_BEGIN) + len(NOTES_BEGIN):old.index(NOTES_END)].strip("\n")
    rel = lambda p: pathlib.Path("..") / p.relative_to(ROOT) if p.is_relative_to(ROOT) else p  # noqa: E731
    mach = next((r["machine"] for r in res.values() if "machine" in r), {})
    quick = any(r.get("quick") for r in res.values())
    lines = ["# Performance: memory, step cost, engines, scaling, time to accuracy", "",
             "Reproduce: `python tools/bench_perf.py` (all sections, ~30 min on 2 cores; `--quick` for a smoke run), "
             "then this file is rebuilt by `python tools/perf_report.py`. Raw numbers: `bench/results/perf/*.json`.",
             "", f"Machine: {mach.get('cpu', '?')}, {mach.get('cores', '?')} cores; Python {mach.get('python', '?')}, "
             f"ai-edge-litert {mach.get('ai-edge-litert', '?')}, TensorFlow {mach.get('tensorflow', '?')}, "
             f"numpy {mach.get('numpy', '?')}." + (" **Quick run: fewer steps and points.**" if quick else ""), "",
             "Models: the MLPerf Tiny ResNet-8 (32x32) and MobileNetV1-VWW (96x96) with a prototype head for "
             "Fashion-MNIST 20-shot; LP trains the head only, FT every weight layer, `block` the last residual "
             "block + head (the demo). FF = tflite_fg's trainer (Sign-m-SPSA, m 3, eps 8 LSB), XNNPACK engine, 1 thread, "
             "unless a table says otherwise.", "", "## Targets", ""] + _targets(res)
    lines += ["", "## Notes", "", NOTES_BEGIN, notes, NOTES_END, ""]
    if "memory" in res:
        rows = res["memory"]["rows"]
        lines += ["## Memory", "", "Peak resident memory added by a run of 3-5 steps, each configuration in a fresh "
                  "process (`/proc/self/clear_refs` resets the peak after imports, model and data load; "
                  "`tflite_fg/memory.py`), next to the analytic estimate (`python tools/memory.py --model=... "
                  "--batch=...` prints its breakdown for any converted model). The process baseline shows what "
                  "the runtime itself costs: LiteRT + numpy vs TensorFlow + Keras.", ""]
        if _plot_memory(res, out_dir / "memory.png"):
            lines += [f"![memory]({rel(out_dir / 'memory.png')})", ""]
        lines += _table(["model", "batch", "run", "added (measured) MiB", "analytic MiB", "process baseline MiB"],
                        [[r["model"], r["batch"], r["mode"], f"{r['added_bytes'] / MiB:.2f}",
                          f"{r['estimate_bytes'] / MiB:.2f}", f"{r['baseline_rss_bytes'] / MiB:.0f}"] for r in rows]) + [""]
    if "speed" in res:
        lines += ["## Step cost vs the ideal 2m forward invokes", "",
                  "`ideal` = 2m x one unsplit `forward` invoke on the same batch; `engine` = time inside interpreter "
                  "calls during the step; overhead = (step - engine) / engine (perturbations, weight arithmetic, loss, "
                  "update: `tflite_fg/profiling.py`). Caches: none = `forward` every pass; batch = `prefix` once per "
                  "step, `suffix` 2m times; dataset = `prefix` once per data set.", ""]
        lines += _table(["model", "precision", "cache", "step ms", "ideal ms", "engine ms", "overhead", "ideal / step"],
                        [[r["model"], r["precision"], r["cache"], f"{r['step_ms']:.2f}", f"{r['ideal_ms']:.2f}",
                          f"{r['engine_ms']:.2f}", f"{r['overhead']:.1%}", f"{r['speedup_vs_ideal']:.2f}x"]
                         for r in res["speed"]["rows"]]) + [""]
    if "engines" in res:
        lines += ["## Engine options on the same step", "", "One batch of 32 and 2m = 6 candidate kernel sets "
                  "(`tflite_fg/engines.py`). Reference for bit-identity: `signature-builtin` for builtin kernels, "
                  "`signature-xnnpack` for XNNPACK ones; the last column compares with builtin kernels.", ""]
        lines += _table(["model", "option", "step ms", "bit-identical to its reference", "max abs logit diff vs builtin (LSB)"],
                        [[r["model"], r["option"], f"{r['step_ms']:.2f}", r["bit_identical_to_reference"],
                          r["max_abs_lsb_vs_builtin"]] for r in res["engines"]["rows"]]) + [""]
    if "threads" in res:
        lines += ["## Threads (2 cores)", ""]
        lines += _table(["model", "engine", "threads", "forward ms", "step ms"],
                        [[r["model"], r["engine"], r["num_threads"], f"{r['forward_ms']:.2f}", f"{r['step_ms']:.2f}"]
                         for r in res["threads"]["rows"]]) + [""]
    if "scaling" in res:
        lines += ["## Scaling", ""]
        if _plot_scaling(res, out_dir / "scaling.png"):
            lines += [f"![scaling]({rel(out_dir / 'scaling.png')})", ""]
        for knob, rows in res["scaling"].items():
            if isinstance(rows, list):
                lines += [f"**{knob}**", ""] + _table(
                    [knob, "trainable weights", "step ms", "ideal ms", "cache", "FF w16 memory (analytic) MiB"],
                    [[r["x"], r["trainable_params"], f"{r['step_ms']:.2f}", f"{r['ideal_ms']:.2f}", r["cache"],
                      f"{r['memory_bytes'] / MiB:.2f}"] for r in rows]) + [""]
    if "tta" in res:
        t = res["tta"]
        lines += ["## Time to accuracy", "", f"FF final accuracy {t['ff_final']:.4f}; target = 95% of it = "
                  f"{t['target']:.4f}. Wall time excludes evaluation. Keras BP: same float network (BN folded, prototype "
                  f"head), same trainable layers, Adam lr 1e-3, batch 64, same mini-batches; best {t['bp_best']:.4f}.", ""]
        if _plot_tta(res, out_dir / "tta.png"):
            lines += [f"![time to accuracy]({rel(out_dir / 'tta.png')})", ""]
        reach = lambda r: [f"{r['wall_s']:.1f}", r["step"], r["forward_passes"]] if r else ["not reached", "-", "-"]  # noqa: E731
        lines += _table(["method", "wall s to target", "steps", "forward passes"],
                        [["FF int8 (w16)"] + reach(t["ff_reach"]), ["Keras BP fp32"] + reach(t["bp_reach"])]) + [""]
        lines += _tta_ratios(t)
    doc.write_text("\n".join(lines) + "\n")


def _tta_ratios(t: dict) -> list[str]:
    """How much sooner Keras BP gets there, in wall time: to FF's 95% target, and to FF's final accuracy."""
    out = []
    if t["ff_reach"] and t["bp_reach"]:
        out.append(f"Keras BP reaches the target {t['ff_reach']['wall_s'] / t['bp_reach']['wall_s']:.0f}x sooner in "
                   f"wall time ({t['bp_reach']['wall_s']:.2f} s against FF's {t['ff_reach']['wall_s']:.1f} s).")
    bp_final, ff_final = (next((p for p in t[k] if p["eval"] >= t["ff_final"]), None) for k in ("bp", "ff"))
    if bp_final and ff_final:
        out.append(f"It first reaches FF's final accuracy ({t['ff_final']:.4f}) {ff_final['wall_s'] / bp_final['wall_s']:.0f}x "
                   f"sooner ({bp_final['wall_s']:.2f} s at step {bp_final['step']}, FF {ff_final['wall_s']:.1f} s at step "
                   f"{ff_final['step']}).")
    return [" ".join(out), ""] if out else []


def main(argv):
    del argv
    write(pathlib.Path(flags.FLAGS.results), pathlib.Path(flags.FLAGS.doc))
    print(f"wrote {flags.FLAGS.doc}")


if __name__ == "__main__":  # flags only here: bench_perf.py imports write() and has its own
    flags.DEFINE_string("results", str(ROOT / "bench" / "results" / "perf"), "bench_perf.py's JSON results.")
    flags.DEFINE_string("doc", str(ROOT / "docs" / "performance.md"), "The report to write.")
    _cli.run(main)
