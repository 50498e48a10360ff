"""Ways to run one training step's 2m forward passes on a stock LiteRT interpreter, side by side.

A step evaluates one mini-batch under 2m candidate kernel sets. The options differ in how the
candidates reach the engine (docs/design.md "Ways to get new int8 weights into an interpreter"):
- signature: kernels as `forward` inputs; XNNPACK (engine "xnnpack") still runs the frozen ops;
- prefix-cache: `prefix` once per batch, then `suffix` 2m times (bit-identical to `forward`);
- inplace: kernels written into `infer`'s constant tensors, builtin kernels only (XNNPACK packs
  constants once and would ignore the writes; impossible on Android, whose tensors are read-only);
- recreate: a new interpreter over patched bytes for every candidate (XNNPACK runs every op).
Builtin kernels of one kind give the same bits whatever the route; XNNPACK requantizes with its own
rounding, so its logits may differ from builtin ones by a few LSB (tools/bench_perf.py measures it).
"""
from __future__ import annotations

import pathlib
from typing import Callable, NamedTuple, Sequence

import numpy as np

from tflite_fg import export, flatbuf
from tflite_fg.model import ENGINES, INFER, FgModel, load_interpreter

Params = Sequence[np.ndarray]
StepLogits = Callable[[np.ndarray, Sequence[Params]], list[np.ndarray]]  # (batch, candidates) -> logits each


class EngineOption(NamedTuple):
    name: str
    engine: str  # the kernels: "builtin" or "xnnpack"
    build: Callable[[FgModel, int | None], StepLogits]  # (model, num_threads) -> step function


def _signature(model: FgModel, num_threads: int | None) -> StepLogits:
    return lambda xq, candidates: [model.forward(xq, p) for p in candidates]


def _prefix_cache(model: FgModel, num_threads: int | None) -> StepLogits:
    if not model.has_prefix:
        raise ValueError(f"{model.path} has no prefix/suffix signatures (nothing frozen before the first "
                         "trainable layer, or converted before the split existed: reconvert it)")

    def step(xq, candidates):
        feats = model.features(xq)
        return [model.forward_features(feats, p) for p in candidates]
    return step


def _inplace(model: FgModel, num_threads: int | None) -> StepLogits:
    buffer = bytes(bytearray(model.model_bytes))  # the interpreter reads constants from this copy
    interpreter = load_interpreter(buffer, "builtin", num_threads, str(model.path))
    fb = flatbuf.parse(buffer)
    subgraph = flatbuf.signature_subgraph(fb, INFER)
    index = {c.offset: c.index for c in flatbuf.int8_constants(fb, subgraph)}
    infer = interpreter.get_signature_runner(INFER)
    infer(**{model.meta.input_name: np.zeros((1, *model.meta.input_shape), np.int8)})  # allocate once
    views = [interpreter._interpreter.tensor(interpreter, index[t.infer_offset], subgraph) for t in model.meta.trainable]

    def step(xq, candidates):
        out = []
        for params in candidates:
            for view, p in zip(views, params):
                view[...] = p
            out.append(infer(**{model.meta.input_name: xq})[model.meta.output_name])
        return out
    return step


def _recreate(model: FgModel, num_threads: int | None) -> StepLogits:
    def logits(xq, params):
        interpreter = load_interpreter(export.patch_kernels(model.model_bytes, model.meta, params), "xnnpack",
                                       num_threads, str(model.path))
        return interpreter.get_signature_runner(INFER)(**{model.meta.input_name: xq})[model.meta.output_name]
    return lambda xq, candidates: [logits(xq, p) for p in candidates]


OPTIONS: dict[str, EngineOption] = {o.name: o for o in (
    EngineOption("signature-xnnpack", "xnnpack", _signature),
    EngineOption("signature-builtin", "builtin", _signature),
    EngineOption("prefix-cache-xnnpack", "xnnpack", _prefix_cache),
    EngineOption("prefix-cache-builtin", "builtin", _prefix_cache),
    EngineOption("inplace-builtin", "builtin", _inplace),
    EngineOption("recreate-xnnpack", "xnnpack", _recreate),
)}
REFERENCE = {"builtin": "signature-builtin", "xnnpack": "signature-xnnpack"}  # what each option must match
assert all(o.engine in ENGINES for o in OPTIONS.values())


def build(name: str, path: str | pathlib.Path, num_threads: int | None = None) -> StepLogits:
    if name not in OPTIONS:
        raise ValueError(f"engine option {name!r}: choose one of {', '.join(OPTIONS)}")
    option = OPTIONS[name]
    return option.build(FgModel(path, engine=option.engine, num_threads=num_threads), num_threads)
