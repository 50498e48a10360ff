"""Split the `forward` subgraph at its first trainable op: `prefix` (frozen) and `suffix` (trainable).

When only the last layers train, every perturbation of a step sees the same frozen activations.
The split lets the runtime run `prefix` once per batch (or once per data set) and only `suffix`
2m times. It is done on the converted flatbuffer, not by tracing again: both new subgraphs are
copies of `forward`'s own operators and tensors (same quantization parameters, same constant
buffers, shared by index, so the file barely grows), which is why prefix + suffix reproduces
`forward` bit for bit. Pure flatbuffer work (the schema ships with LiteRT); no TensorFlow.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

PREFIX, SUFFIX = "prefix", "suffix"
KERNEL_PREFIX = "w_"  # trainable kernel inputs of `forward` (tflite_export.kernel_input_name)
_IDENTIFIER = b"TFL3"


def feature_name(i: int) -> str:
    """Signature name of the i-th tensor that crosses the cut (prefix output = suffix input)."""
    return f"h{i}"


@dataclass(frozen=True)
class Cut:
    prefix_ops: tuple[int, ...]   # operator indices of `forward`, in execution order
    suffix_ops: tuple[int, ...]
    features: tuple[int, ...]     # `forward` tensor indices that cross the cut


def _signature(model: "schema.ModelT", key: str) -> "schema.SignatureDefT":
    for sig in model.signatureDefs or []:
        if sig.signatureKey.decode() == key:
            return sig
    raise KeyError(f"the model has no {key!r} signature")


def _is_constant(model: "schema.ModelT", tensor: "schema.TensorT") -> bool:
    data = model.buffers[tensor.buffer].data if tensor.buffer else None
    return data is not None and len(data) > 0


def _is_kernel(name: bytes) -> bool:
    return name.decode().startswith(KERNEL_PREFIX)


def find_cut(model: "schema.ModelT", forward_key: str = "forward") -> Cut | None:
    """The suffix is every op that (transitively) reads a trainable kernel input; the cut is the set
    of non-constant tensors the suffix reads from the prefix. None when there is nothing to cache
    (the first trainable op reads the model input itself)."""
    sig = _signature(model, forward_key)
    graph = model.subgraphs[sig.subgraphIndex]
    kernels = {t.tensorIndex for t in sig.inputs if _is_kernel(t.name)}
    tainted, suffix = set(kernels), []
    for i, op in enumerate(graph.operators):
        if any(int(t) in tainted for t in op.inputs if t >= 0):
            suffix.append(i)
            tainted.update(int(t) for t in op.outputs)
    in_suffix = set(suffix)
    prefix = [i for i in range(len(graph.operators)) if i not in in_suffix]
    produced = {int(t) for i in prefix for t in graph.operators[i].outputs}
    features = sorted({int(t) for i in suffix for t in graph.operators[i].inputs
                       if t >= 0 and int(t) not in tainted and not _is_constant(model, graph.tensors[int(t)])})
    if not suffix or not prefix or any(t not in produced for t in features):
        return None
    return Cut(tuple(prefix), tuple(suffix), tuple(features))


def _subgraph(model: "schema.ModelT", graph: "schema.SubGraphT", ops: tuple[int, ...], inputs: list[int],
              outputs: list[int], name: str) -> tuple["schema.SubGraphT", dict[int, int]]:
    """A new subgraph holding copies of `ops` and only the tensors they (and its inputs/outputs) use."""
    used = list(dict.fromkeys(
        [*inputs, *(int(t) for i in ops for t in (*graph.operators[i].inputs, *graph.operators[i].outputs) if t >= 0),
         *outputs]))
    remap = {old: new for new, old in enumerate(used)}
    sub = schema.SubGraphT()
    sub.name = name.encode()
    sub.tensors = []
    for old in used:
        t = copy.deepcopy(graph.tensors[old])
        if not _is_constant(model, t):
            t.buffer = 0  # activations own no buffer; constants keep (share) theirs
        sub.tensors.append(t)
    sub.operators = []
    for i in ops:
        op = copy.deepcopy(graph.operators[i])
        op.inputs = np.array([remap[int(t)] if t >= 0 else -1 for t in op.inputs], np.int32)
        op.outputs = np.array([remap[int(t)] for t in op.outputs], np.int32)
        sub.operators.append(op)
    sub.inputs = np.array([remap[t] for t in inputs], np.int32)
    sub.outputs = np.array([remap[t] for t in outputs], np.int32)
    return sub, remap


def _tensor_map(name: str, index: int) -> "schema.TensorMapT":
    m = schema.TensorMapT()
    m.name, m.tensorIndex = name.encode(), index
    return m


def _add_signature(model: "schema.ModelT", key: str, sub: "schema.SubGraphT",
                   inputs: list[tuple[str, int]], outputs: list[tuple[str, int]]) -> None:
    model.subgraphs.append(sub)
    sig = schema.SignatureDefT()
    sig.signatureKey = key.encode()
    sig.subgraphIndex = len(model.subgraphs) - 1
    sig.inputs = [_tensor_map(n, i) for n, i in inputs]
    sig.outputs = [_tensor_map(n, i) for n, i in outputs]
    model.signatureDefs.append(sig)


def add_prefix_suffix(model_bytes: bytes, forward_key: str = "forward") -> tuple[bytes, int]:
    """The model with `prefix(x) -> h0..` and `suffix(h0.., w_..) -> logits` added (returns the new
    bytes and the number of cut tensors), or the unchanged bytes and 0 when no useful cut exists."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if any(s.signatureKey.decode() in (PREFIX, SUFFIX) for s in model.signatureDefs or []):
        raise ValueError("the model already has prefix/suffix signatures")
    cut = find_cut(model, forward_key)
    if cut is None:
        return model_bytes, 0
    sig = _signature(model, forward_key)
    graph = model.subgraphs[sig.subgraphIndex]
    x = [(m.name.decode(), m.tensorIndex) for m in sig.inputs if not _is_kernel(m.name)]
    kernels = [(m.name.decode(), m.tensorIndex) for m in sig.inputs if _is_kernel(m.name)]
    outs = [(m.name.decode(), m.tensorIndex) for m in sig.outputs]
    feats = [(feature_name(i), t) for i, t in enumerate(cut.features)]

    pre, remap = _subgraph(model, graph, cut.prefix_ops, [t for _, t in x], [t for _, t in feats], PREFIX)
    _add_signature(model, PREFIX, pre, [(n, remap[t]) for n, t in x], [(n, remap[t]) for n, t in feats])
    suf_inputs = feats + kernels
    suf, remap = _subgraph(model, graph, cut.suffix_ops, [t for _, t in suf_inputs], [t for _, t in outs], SUFFIX)
    _add_signature(model, SUFFIX, suf, [(n, remap[t]) for n, t in suf_inputs], [(n, remap[t]) for n, t in outs])

    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=_IDENTIFIER)
    return bytes(builder.Output()), len(feats)
