"""Memory of on-device training: an analytic breakdown from the graph, and measured RSS to compare.

Forward-only training is worth doing on a device only if it fits where inference fits, so the
claim "no activation memory" needs numbers. `estimate` computes, from a converted model's own
flatbuffer and metadata, what each piece of a run takes in bytes: weights, the trainer's per-step
state (read off tflite_fg/trainer.py, estimators.py, samplers.py, precision.py, updates.py), and
the activation arena of the graph that runs. The same graph's shapes also give what Keras
backprop of the network would hold (`bp-*` modes), so the comparison uses one set of shapes.
`rss_bytes`, `peak_rss_bytes`, `reset_peak_rss` and `measure_added` measure a real process
(Linux /proc), for a benchmark to set next to the estimate.

numpy + the LiteRT flatbuffer schema only (this module ships with the runtime).
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import os
import pathlib
import re
import resource
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from ai_edge_litert import schema_py_generated as schema

from tflite_fg import flatbuf
from tflite_fg.metadata import Metadata, read_metadata, sha256_bytes
from tflite_fg.model import ENGINES as _MODEL_ENGINES
from tflite_fg.model import FORWARD, INFER, PREFIX, SUFFIX, ModelError
from tflite_fg.objective import CACHE_MODES, choose_cache

MODES = ("infer", "ff-w8", "ff-w16", "bp-fp32", "bp-qat")
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}  # float32 slots per trainable parameter
CACHES = CACHE_MODES
ENGINES = tuple(_MODEL_ENGINES)  # which kernels run the convolutions (conv_scratch)
# numpy int64 work arrays alive at once while one tensor is perturbed, sampled or updated
# (precision.integer_space.perturb_pair: w64, delta and round_shift's temporaries).
SCRATCH_INT64_ARRAYS = 4

_TT = schema.TensorType
_BITS = {getattr(_TT, name): bits for name, bits in (
    ("FLOAT32", 32), ("FLOAT16", 16), ("BFLOAT16", 16), ("FLOAT64", 64), ("INT64", 64), ("UINT64", 64),
    ("INT32", 32), ("UINT32", 32), ("INT16", 16), ("UINT16", 16), ("INT8", 8), ("UINT8", 8), ("BOOL", 8),
    ("COMPLEX64", 64), ("COMPLEX128", 128), ("INT4", 4), ("UINT4", 4), ("INT2", 2),
    ("FLOAT8_E4M3FN", 8), ("FLOAT8_E5M2", 8)) if hasattr(_TT, name)}
_TYPE_NAMES = {v: k for k, v in vars(_TT).items() if not k.startswith("_")}
_OP = schema.BuiltinOperator
# op code -> input position of the bias, for the ops whose position 1 is a (trainable) kernel
_BIAS_INPUT = {_OP.CONV_2D: 2, _OP.DEPTHWISE_CONV_2D: 2, _OP.FULLY_CONNECTED: 2, _OP.TRANSPOSE_CONV: 3}


# ---- the graph ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arena:
    """Activation memory of one subgraph at one batch size, in bytes.

    peak_live: max over ops of the bytes of the non-constant tensors alive at that op; no memory
    plan can use less (TFLite's greedy arena planner gets close), except where an op works in place
    (TFLite may alias a RESHAPE's output to its input), which this does not model.
    total: every non-constant tensor with its own bytes, an upper bound on any plan."""

    peak_live: int
    total: int


class _Graph:
    """One subgraph of a parsed model: which tensors it uses, which are constants, their bytes."""

    def __init__(self, model: "schema.ModelT", index: int):
        self.model, self.index = model, index
        self.sg = model.subgraphs[index]
        self.inputs = [int(t) for t in _seq(self.sg.inputs)]
        self.outputs = [int(t) for t in _seq(self.sg.outputs)]
        self.ops = list(self.sg.operators or [])
        used = dict.fromkeys(self.inputs)
        for op in self.ops:
            used.update(dict.fromkeys(_op_tensors(op)))
        used.update(dict.fromkeys(self.outputs))
        self.used = list(used)

    def tensor(self, t: int) -> "schema.TensorT":
        return self.sg.tensors[t]

    def is_constant(self, t: int) -> bool:
        return _buffer_bytes(self.model, self.tensor(t).buffer) > 0

    def opcode(self, op: "schema.OperatorT") -> int:
        code = self.model.operatorCodes[op.opcodeIndex]
        return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))

    def elements(self, t: int, batch: int) -> int:
        """Element count with the batch dimension (-1 in shapeSignature) set to `batch`."""
        tensor = self.tensor(t)
        shape = [int(d) for d in _seq(tensor.shape)]
        signature = [int(d) for d in _seq(tensor.shapeSignature)]
        dims = signature if signature else shape
        n = 1
        for i, d in enumerate(dims):
            n *= batch if d == -1 and i == 0 else (shape[i] if d == -1 else d)
        return n

    def nbytes(self, t: int, batch: int, element_bytes: float | None = None) -> int:
        """Bytes of tensor t at `batch`, in its own type or with `element_bytes` per element."""
        n = self.elements(t, batch)
        if element_bytes is not None:
            return int(math.ceil(n * element_bytes))
        type_ = self.tensor(t).type
        if type_ not in _BITS:
            raise ModelError(f"tensor {self.tensor(t).name!r} has type {_TYPE_NAMES.get(type_, type_)}, whose size "
                             "is not fixed; tflite_fg models hold only numeric tensors")
        return (n * _BITS[type_] + 7) // 8

    def constants(self) -> dict[int, int]:
        """{buffer index: bytes} of the constants this subgraph reads (shared buffers once)."""
        out = {}
        for t in self.used:
            if self.is_constant(t):
                out[self.tensor(t).buffer] = _buffer_bytes(self.model, self.tensor(t).buffer)
        return out

    def is_weight(self, t: int) -> bool:
        """A constant that is a learnable value in Keras (filters, biases): float or quantized.
        Shape/axis operands (e.g. RESHAPE's int32 shape) carry no quantization and are not."""
        tensor = self.tensor(t)
        q = tensor.quantization
        quantized = q is not None and q.scale is not None and len(q.scale) > 0
        return self.is_constant(t) and (quantized or tensor.type in (_TT.FLOAT32, _TT.FLOAT16))

    def im2col(self, batch: int, engine: str) -> dict[int, int]:
        """{op index: bytes} of the im2col buffer of each CONV_2D that runs on TFLite's builtin kernels.

        The builtin CONV_2D lowers to a GEMM through an im2col matrix [batch*out_h*out_w,
        kh*kw*in_c] (conv.cc: unless the filter is 1x1 with stride and dilation 1), a node temporary
        in the arena. XNNPACK takes only convs whose filter is a constant, so under "xnnpack" only
        the trainable (input-filter) convs pay it."""
        out = {}
        for k, op in enumerate(self.ops):
            if self.opcode(op) != _OP.CONV_2D:
                continue
            x, w = int(op.inputs[0]), int(op.inputs[1])
            if engine == "xnnpack" and self.is_constant(w):
                continue
            o = op.builtinOptions
            oc, kh, kw, ic = (int(d) for d in _seq(self.tensor(w).shape))
            strided = (o.strideW, o.strideH, o.dilationWFactor, o.dilationHFactor) != (1, 1, 1, 1) if o else False
            if (kh, kw) == (1, 1) and not strided:
                continue
            rows = self.elements(int(op.outputs[0]), batch) // oc        # batch * out_h * out_w
            out[k] = (rows * kh * kw * ic * _BITS[self.tensor(x).type] + 7) // 8
        return out

    def arena(self, batch: int, ops: Sequence[int] | None = None, live_in: Sequence[int] | None = None,
              live_out: Sequence[int] | None = None, exclude: frozenset[int] = frozenset(),
              element_bytes: float | None = None, temporaries: dict[int, int] | None = None) -> Arena:
        """Peak-live and total bytes of the non-constant tensors of `ops` (default: all, in order).

        live_in tensors live from the first op (default: the subgraph inputs), live_out ones to the
        last (default: the subgraph outputs); any other tensor from the first op that produces or
        reads it to the last op that reads it. TFLite stores operators in execution order.
        `temporaries` {op index: bytes} live during their op only (they count in the peak, not the total)."""
        ops = list(range(len(self.ops))) if ops is None else list(ops)
        live_in = self.inputs if live_in is None else list(live_in)
        live_out = self.outputs if live_out is None else list(live_out)
        last_pos = max(len(ops) - 1, 0)
        span: dict[int, list[int]] = {}
        for pos, k in enumerate(ops):
            for t in _op_tensors(self.ops[k]):
                span.setdefault(t, [pos, pos])[1] = pos
        for t in live_in:
            span.setdefault(t, [0, 0])[0] = 0
        for t in live_out:
            span.setdefault(t, [last_pos, last_pos])[1] = last_pos
        sizes = {t: self.nbytes(t, batch, element_bytes) for t in span
                 if t not in exclude and not self.is_constant(t)}
        temporaries = temporaries or {}
        peak = max((sum(b for t, b in sizes.items() if span[t][0] <= pos <= span[t][1])
                    + (temporaries.get(ops[pos], 0) if ops else 0) for pos in range(last_pos + 1)), default=0)
        return Arena(peak_live=peak, total=sum(sizes.values()))


def _seq(x: Any) -> list:
    return [] if x is None else list(x)


def _op_tensors(op: "schema.OperatorT") -> list[int]:
    return [int(t) for t in (*_seq(op.inputs), *_seq(op.outputs), *_seq(op.intermediates)) if t >= 0]


def _buffer_bytes(model: "schema.ModelT", index: int) -> int:
    if index <= 0 or index >= len(model.buffers):
        return 0
    buf = model.buffers[index]
    if buf.data is not None and len(buf.data):
        return len(buf.data)
    return int(buf.size or 0) if (buf.offset or 0) > 1 else 0  # data outside the flatbuffer (>2 GB files)


@dataclass(frozen=True)
class _Parsed:
    model_bytes: bytes
    model: "schema.ModelT"
    meta: Metadata | None
    subgraphs: dict[str, int]    # signature key -> subgraph index
    inputs: dict[str, dict[str, int]]   # signature key -> {input name: tensor index}
    outputs: dict[str, dict[str, int]]

    def graph(self, key: str) -> _Graph:
        return _Graph(self.model, self.subgraphs[key])

    @property
    def has_prefix(self) -> bool:
        return PREFIX in self.subgraphs and SUFFIX in self.subgraphs


def _parse(model: str | os.PathLike | bytes, meta: Metadata | None) -> _Parsed:
    """Bytes + metadata of a converted model, refusing what the trainer would refuse."""
    path = None
    if isinstance(model, (bytes, bytearray, memoryview)):
        model_bytes, where = bytes(model), "model bytes"
    else:
        path = pathlib.Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: convert a model with `python tools/convert.py` "
                                    "(or `make demo` for the default one)")
        model_bytes, where = path.read_bytes(), str(path)
    try:
        fb = flatbuf.parse(model_bytes)
        parsed = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
        keys = {}
        for i in range(fb.SignatureDefsLength()):
            key = fb.SignatureDefs(i).SignatureKey().decode()
            keys[key] = flatbuf.signature_subgraph(fb, key)
    except Exception as e:  # a truncated flatbuffer fails anywhere inside the generated reader
        raise ModelError(f"{where}: cannot read as a TFLite model ({e}); the file is corrupt or truncated, "
                         "reconvert it with `python tools/convert.py`") from e
    if FORWARD not in keys or INFER not in keys:
        raise ModelError(f"{where} has signatures {sorted(keys)}, not '{FORWARD}' and '{INFER}': it is not a "
                         "tflite_fg training model; convert the Keras model with `python tools/convert.py`")
    if meta is None and path is not None:
        meta = read_metadata(path)
    if meta is not None and meta.model_sha256 != sha256_bytes(model_bytes):
        raise ModelError(f"{where} does not match its metadata (sha256 differs): reconvert or restore the pair")
    inputs, outputs = {}, {}
    for sig in parsed.signatureDefs:
        key = sig.signatureKey.decode()
        inputs[key] = {m.name.decode(): int(m.tensorIndex) for m in _seq(sig.inputs)}
        outputs[key] = {m.name.decode(): int(m.tensorIndex) for m in _seq(sig.outputs)}
    p = _Parsed(model_bytes, parsed, meta, keys, inputs, outputs)
    forward = p.graph(FORWARD)
    if any(forward.tensor(t).type != _TT.INT8 for t in inputs[FORWARD].values()):
        raise ModelError(f"{where}: the '{FORWARD}' inputs are not int8 (a float model); convert with "
                         "`python tools/convert.py`, which writes an int8 graph")
    return p


def _kernel_names(p: _Parsed) -> list[str]:
    """The trainable kernels' `forward` input names: from the metadata, or the converter's `w_<layer>`."""
    names = [t.input_name for t in p.meta.trainable] if p.meta is not None else \
        [n for n in p.inputs[FORWARD] if n.startswith("w_")]
    if not names:
        raise ModelError("the model has no trainable tensors ('forward' takes no w_<layer> input)")
    forward = p.graph(FORWARD)
    for i, name in enumerate(names):
        if name not in p.inputs[FORWARD]:
            raise ModelError(f"trainable tensor {name!r} of the metadata is not a '{FORWARD}' input; reconvert")
        if p.meta is not None:
            shape = tuple(int(d) for d in _seq(forward.tensor(p.inputs[FORWARD][name]).shape))
            if shape != tuple(p.meta.trainable[i].shape):
                raise ModelError(f"trainable tensor {name!r}: metadata shape {p.meta.trainable[i].shape} but the "
                                 f"graph has {shape}; reconvert")
    return names


def _run_arena(graph: _Graph, batch: int, engine: str) -> tuple[Arena, int, int]:
    """(graph-only arena, what builtin convs' im2col adds to its peak, the largest im2col)."""
    plain = graph.arena(batch)
    temps = graph.im2col(batch, engine)
    if not temps:
        return plain, 0, 0
    return plain, graph.arena(batch, temporaries=temps).peak_live - plain.peak_live, max(temps.values())


def arena(model: str | os.PathLike | bytes, signature: str, batch: int, meta: Metadata | None = None) -> Arena:
    """The activation arena of one signature's subgraph at `batch` (see Arena)."""
    _check_batch(batch)
    p = _parse(model, meta)
    if signature not in p.subgraphs:
        raise KeyError(f"the model has no {signature!r} signature (it has {sorted(p.subgraphs)})")
    return p.graph(signature).arena(batch)


def constant_bytes(model: str | os.PathLike | bytes, signatures: Sequence[str], meta: Metadata | None = None) -> int:
    """Bytes of the constant buffers the given signatures read, each buffer once."""
    p = _parse(model, meta)
    out: dict[int, int] = {}
    for key in signatures:
        out.update(p.graph(key).constants())
    return sum(out.values())


# ---- the breakdown -----------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryBreakdown:
    """What one mode holds, in bytes. `total` sums every field above `arena_sum`.

    weights       frozen weights as the engine holds them (int8/int32 constants; bp: float32)
    trainable     the trainable tensors: ff the int8 kernels; bp float32 kernels + their biases
    master        ff-w16: the int16 master copy; bp-qat: the fake-quantized float32 kernels
    perturbation  ff: z_q of one probe (folded into S at once) + the w+ and w- candidates
                  (+ ff-w16: the int8 rounding handed to the engine)
    gradient      ff: S int32 + g float32 + lr*g float32 + the int32 update; bp: float32 gradients
    optimizer_state  bp: the optimizer's float32 slots
    masks         ff with sparsity > 0: one bool per trainable weight
    scratch       ff: numpy's int64 work arrays on the largest trainable tensor
    activations   infer/ff: peak-live arena of the graph run every pass (`infer`, `forward` or
                  `suffix`); bp: float32 activations kept for the backward pass (x2 for bp-qat)
    frozen_activations  ff with a cache: the `prefix` arena; bp: float32 peak of the frozen layers
    features      ff with a cache: the cached `prefix` outputs
    conv_scratch  infer/ff: the CONV_2Ds that run on TFLite's builtin kernels (all of them with
                  engine="builtin"; with "xnnpack" the trainable ones, whose filter is an input):
                  what their im2col buffers add to the arena peak, plus one more im2col-sized
                  buffer for the GEMM library's packed copy (ruy keeps it between calls; measured
                  on x86). XNNPACK's own workspace for the convs it runs is not counted.
    arena_sum     upper bound of activations + frozen_activations (each tensor its own bytes)
    model_file    the whole .tflite, which the interpreter keeps (every signature's constants)
    """

    mode: str
    batch: int
    cache: str
    engine: str
    m: int
    sparsity: float
    optimizer: str
    trainable_params: int
    weights: int
    trainable: int
    master: int
    perturbation: int
    gradient: int
    optimizer_state: int
    masks: int
    scratch: int
    activations: int
    frozen_activations: int
    features: int
    conv_scratch: int
    arena_sum: int
    model_file: int

    COMPONENTS = ("weights", "trainable", "master", "perturbation", "gradient", "optimizer_state", "masks",
                  "scratch", "activations", "frozen_activations", "features", "conv_scratch")

    @property
    def total(self) -> int:
        return sum(getattr(self, f) for f in self.COMPONENTS)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "total": self.total}


def _check_batch(batch: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")


def resolve_cache(cache: str, has_prefix: bool, feature_bytes_per_example: int, n_train: int | None) -> str:
    """The cache a run really uses (objective.choose_cache); without n_train, "auto" is taken as
    per batch and "dataset" cannot be sized."""
    if n_train is None and has_prefix and cache in ("auto", "dataset"):
        if cache == "dataset":
            raise ValueError("cache='dataset' needs n_train (the number of training examples)")
        return "batch"
    return choose_cache(cache, has_prefix, feature_bytes_per_example, n_train or 1)


def estimate(model: str | os.PathLike | bytes, batch: int, mode: str, *, m: int = 3, sparsity: float = 0.0,
             optimizer: str = "sgd", cache: str = "none", n_train: int | None = None,
             engine: str = "xnnpack", meta: Metadata | None = None) -> MemoryBreakdown:
    """Bytes held by `mode` on a converted model at `batch` (see MemoryBreakdown for each field).

    infer   the `infer` graph: its constants + its arena (+ conv_scratch under `engine`).
    ff-w8, ff-w16  one training step as tflite_fg's trainer allocates it (Sign-m-SPSA, anchored
        arithmetic, a Gaussian/Rademacher/Binomial int8 sampler, round-to-nearest): the frozen
        constants, the int8 kernels (+ int16 master for w16), the per-step state, masks when
        sparsity > 0 (z, w+-, S, g and the update stay dense: masking zeroes z, it does not shrink
        them), and the arena of `forward`, or with cache="batch"/"dataset" (and a model that has
        prefix/suffix) the `suffix` arena + the `prefix` arena (at `batch`, or at min(n_train, 256)
        for "dataset", FgModel.features' chunk) + the cached features ((n_train + batch) examples
        for "dataset": the set and the step's gathered batch). Perturbation seeds cost nothing: z is
        regenerated from (seed, step, index). Approximations: the step's pieces are summed although
        z and w+- are released before the update is formed (an upper bound by at most 7 bytes per
        weight); scratch counts 4 int64 arrays of the largest
        tensor; momentum-guided sampling (int16
        z + an int8 history) and kernel-wise normalization (int32 z) would add more; evaluation
        passes, the data set and Python/LiteRT's own footprint are not counted. `engine` is the
        LiteRT kernel choice of tools/train.py --engine (default xnnpack), for conv_scratch.
    bp-fp32, bp-qat  what Keras backprop of the same (BN-folded) network would hold, from this
        graph's shapes in float32: every weight (filters and biases, frozen and trainable) at 4
        bytes; the trainable parameters are the kernels and the biases of the ops that read them;
        float32 gradients of those; `optimizer` slots (sgd 0, momentum 1, adam 2); kept activations
        = the float32 outputs of every op that depends on a trainable kernel and the non-constant
        inputs of those ops (the input of the first trainable op), times the batch; the frozen
        layers' forward is transient (its float32 peak-live is added, the cut tensors counted once,
        in the kept ones). bp-qat adds a second copy of each kept activation (before and after its
        fake quant) and a fake-quantized copy of each trainable kernel. Not counted: activation
        gradients during the backward pass, BatchNorm's own parameters (folded here), framework
        workspace (cuDNN/oneDNN buffers, the tape's bookkeeping), the Python/TensorFlow runtime.

    `model` is a path (its <model>.json is read) or the bytes (then pass `meta`, or the kernels are
    taken as `forward`'s `w_*` inputs).
    """
    _check_batch(batch)
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be an integer >= 1, got {m!r}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1) (the frozen fraction), got {sparsity}")
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if optimizer not in OPTIMIZER_SLOTS:
        raise ValueError(f"optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZER_SLOTS)}")
    if n_train is not None and (isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1):
        raise ValueError(f"n_train must be an integer >= 1, got {n_train!r}")
    p = _parse(model, meta)
    forward = p.graph(FORWARD)
    kernel_names = _kernel_names(p)
    kernels = [p.inputs[FORWARD][n] for n in kernel_names]
    sizes = [forward.elements(t, 1) for t in kernels]
    params = sum(sizes)
    base = dict(mode=mode, batch=batch, cache="none", engine=engine, m=m, sparsity=float(sparsity), optimizer=optimizer,
                trainable_params=params, weights=0, trainable=0, master=0, perturbation=0, gradient=0,
                optimizer_state=0, masks=0, scratch=0, activations=0, frozen_activations=0, features=0,
                conv_scratch=0, arena_sum=0, model_file=len(p.model_bytes))
    if mode == "infer":
        graph = p.graph(INFER)
        a, extra, gemm = _run_arena(graph, batch, engine)
        return MemoryBreakdown(**{**base, "weights": sum(graph.constants().values()), "activations": a.peak_live,
                                  "conv_scratch": extra + gemm, "arena_sum": a.total})
    if mode.startswith("ff-"):
        return MemoryBreakdown(**{**base, **_ff(p, batch, mode, m, sparsity, cache, n_train, engine, sizes)})
    return MemoryBreakdown(**{**base, **_bp(forward, batch, mode, optimizer, kernels)})


def _ff(p: _Parsed, batch: int, mode: str, m: int, sparsity: float, cache: str, n_train: int | None,
        engine: str, sizes: list[int]) -> dict:
    params = sum(sizes)
    wide = mode == "ff-w16"
    master_bytes = 2 if wide else 1                    # precision.integer_space: int8 or int16 master
    z_bytes = 1                                        # samplers: gaussian/rademacher/binomial give int8 z_q
    out = {
        "trainable": params,                           # the int8 kernels (w8: they are the master copy)
        "master": 2 * params if wide else 0,
        # estimators._probes holds one probe's z_q at a time (folded into S at once); perturb_pair
        # builds w+ and w- in the master type; w16's to_engine rounds a candidate to int8 per pass.
        "perturbation": z_bytes * params + 2 * master_bytes * params + (params if wide else 0),
        # sign_m_spsa: S int32, g float32; updates: lr*g float32, round_to_int int32.
        "gradient": (4 + 4 + 4 + 4) * params,
        "masks": params if sparsity > 0 else 0,        # masks.py: bool arrays shaped like the params
        "scratch": SCRATCH_INT64_ARRAYS * 8 * max(sizes),
    }
    feature_bytes = 0
    if p.has_prefix:
        prefix = p.graph(PREFIX)
        feature_bytes = sum(prefix.nbytes(t, 1) for t in prefix.outputs)
    resolved = resolve_cache(cache, p.has_prefix, feature_bytes, n_train)
    if resolved == "none":
        graph = p.graph(FORWARD)
        a, extra, gemm = _run_arena(graph, batch, engine)
        return {**out, "cache": "none", "weights": sum(graph.constants().values()), "activations": a.peak_live,
                "conv_scratch": extra + gemm, "arena_sum": a.total}
    suffix, prefix = p.graph(SUFFIX), p.graph(PREFIX)
    a_suffix, extra_suffix, gemm_suffix = _run_arena(suffix, batch, engine)
    prefix_batch = min(n_train or batch, batch)  # objective.minibatch_loss: the prefix runs a batch at a time
    a_prefix, extra_prefix, gemm_prefix = _run_arena(prefix, prefix_batch, engine)
    cached = (n_train + batch) if resolved == "dataset" else batch
    return {**out, "cache": resolved, "weights": sum({**prefix.constants(), **suffix.constants()}.values()),
            "activations": a_suffix.peak_live, "frozen_activations": a_prefix.peak_live,
            "features": cached * feature_bytes, "arena_sum": a_suffix.total + a_prefix.total,
            # each subgraph keeps its own arena; the GEMM library's buffer is one per thread
            "conv_scratch": extra_suffix + extra_prefix + max(gemm_suffix, gemm_prefix)}


def _bp(graph: _Graph, batch: int, mode: str, optimizer: str, kernels: list[int]) -> dict:
    kernel_set = set(kernels)
    # the ops that depend on a trainable kernel (execution order), and the biases of those that read one
    tainted, suffix_ops, biases = set(kernel_set), [], set()
    for k, op in enumerate(graph.ops):
        ins = [int(t) for t in _seq(op.inputs)]
        if any(t in tainted for t in ins if t >= 0):
            suffix_ops.append(k)
            tainted.update(int(t) for t in _seq(op.outputs))
            pos = _BIAS_INPUT.get(graph.opcode(op))
            if pos is not None and len(ins) > pos and ins[1] in kernel_set and ins[pos] >= 0 \
                    and graph.is_weight(ins[pos]):
                biases.add(ins[pos])
    kept = set()
    for k in suffix_ops:
        op = graph.ops[k]
        kept.update(int(t) for t in _seq(op.outputs))
        kept.update(int(t) for t in _seq(op.inputs) if t >= 0 and int(t) not in kernel_set
                    and not graph.is_constant(int(t)))
    weight_elems: dict[int, int] = {}     # buffer -> elements, each shared buffer once
    bias_buffers = {graph.tensor(t).buffer for t in biases}
    for t in graph.used:
        if graph.is_weight(t) and graph.tensor(t).buffer not in bias_buffers:
            weight_elems[graph.tensor(t).buffer] = graph.elements(t, 1)
    kernel_elems = sum(graph.elements(t, 1) for t in kernels)
    bias_elems = sum({graph.tensor(t).buffer: graph.elements(t, 1) for t in biases}.values())
    trainable = 4 * (kernel_elems + bias_elems)
    copies = 2 if mode == "bp-qat" else 1
    kept_bytes = sum(graph.nbytes(t, batch, 4) for t in kept)
    frozen_ops = [k for k in range(len(graph.ops)) if k not in set(suffix_ops)]
    data_inputs = [t for t in graph.inputs if t not in kernel_set]
    frozen = graph.arena(batch, frozen_ops, live_in=data_inputs, live_out=[],
                         exclude=frozenset(kept | kernel_set), element_bytes=4) if frozen_ops else Arena(0, 0)
    return {
        "trainable_params": kernel_elems + bias_elems,
        "weights": 4 * sum(weight_elems.values()),
        "trainable": trainable,
        "master": 4 * kernel_elems if mode == "bp-qat" else 0,
        "gradient": trainable,
        "optimizer_state": OPTIMIZER_SLOTS[optimizer] * trainable,
        "activations": copies * kept_bytes,
        "frozen_activations": frozen.peak_live,
        "arena_sum": copies * kept_bytes + frozen.total,
    }


# ---- measured ----------------------------------------------------------------------------------

_STATUS = pathlib.Path("/proc/self/status")
_CLEAR_REFS = pathlib.Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _ru_maxrss_bytes() -> int:
    """getrusage's peak RSS (kilobytes on Linux, bytes on macOS); it can never be reset."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def rss_bytes() -> int:
    """Current resident set size (VmRSS). Without /proc: getrusage's peak, the best available."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else _ru_maxrss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size since the process started or the last reset_peak_rss (VmHWM).
    Without /proc: getrusage's ru_maxrss, which cannot be reset."""
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else _ru_maxrss_bytes()


def reset_peak_rss() -> bool:
    """Set VmHWM back to the current RSS (Linux: write 5 to /proc/self/clear_refs, kernel >= 4.0).
    False where that is not possible; the peak then still includes everything before."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


@dataclass
class PeakUsage:
    """Filled by track_peak when its block ends: baseline RSS, peak RSS during the block, added."""

    baseline: int = 0
    peak: int = 0
    reset: bool = False   # False: the peak could not be reset, it may predate the block

    @property
    def added(self) -> int:
        return max(0, self.peak - self.baseline)


def release_free_heap() -> bool:
    """Give freed heap pages back to the OS (glibc malloc_trim), so that a later allocation that
    reuses them shows up in RSS. Without it, temporaries freed before the baseline (e.g. while
    loading data) stay resident and hide what the measured block adds. False where unavailable."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) or True)
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def track_peak() -> Iterator[PeakUsage]:
    """Trim the heap, reset the peak, record the RSS, run the block; `added` = peak RSS - baseline."""
    release_free_heap()
    usage = PeakUsage(reset=reset_peak_rss())
    usage.baseline = rss_bytes()
    try:
        yield usage
    finally:
        usage.peak = max(peak_rss_bytes(), rss_bytes())


def measure_added(fn: Callable[[], Any]) -> int:
    """Bytes of resident memory fn() added at its peak over the RSS before it (pages it touched;
    memory allocated but never written does not count). Where the peak cannot be reset
    (no /proc/self/clear_refs), an earlier, higher peak of the process leaks into the result."""
    with track_peak() as usage:
        fn()
    return usage.added
