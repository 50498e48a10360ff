"""Add a `probe` signature: `forward` that also returns each trainable layer's output ("neuron outputs").

Neuron selection (NEq velocity) compares, per trainable layer, the layer's output activations on a
small validation batch between training steps. The device has no TensorFlow, so the int8 graph must
compute them itself: `probe(x, w_..) -> logits, n0, n1, ..` is a copy of `forward`'s operators (same
quantization parameters; constant buffers shared by index, so the file grows by a tensor table only)
whose extra outputs are the outputs of the ops that read the kernel inputs, i.e. each trainable
layer's output after its fused bias and activation. Pure flatbuffer work, like graph_split; no TensorFlow.
"""
from __future__ import annotations

from typing import Sequence

import flatbuffers
from ai_edge_litert import schema_py_generated as schema

from converters.graph_split import _IDENTIFIER, _add_signature, _signature, _subgraph

PROBE = "probe"
_OP = schema.BuiltinOperator
_KERNEL_OPS = {_OP.CONV_2D: "CONV_2D", _OP.DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D",
               _OP.FULLY_CONNECTED: "FULLY_CONNECTED"}


def neuron_output_name(i: int) -> str:
    """Signature name of the output of the i-th trainable layer (in `kernel_names` order)."""
    return f"n{i}"


def _opcode(model: "schema.ModelT", op: "schema.OperatorT") -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _layer_output(model: "schema.ModelT", graph: "schema.SubGraphT", kernel: str, tensor: int, forward_key: str) -> int:
    """The output tensor of the one op that reads `tensor` (the kernel input named `kernel`) as its filter."""
    readers = [op for op in graph.operators if any(int(t) == tensor for t in op.inputs)]
    if len(readers) != 1:
        raise ValueError(f"kernel input {kernel!r} of {forward_key!r} is read by {len(readers)} operators, "
                         "expected exactly one (its Conv2D, DepthwiseConv2D or FullyConnected)")
    op = readers[0]
    code = _opcode(model, op)
    if code not in _KERNEL_OPS or len(op.inputs) < 2 or int(op.inputs[1]) != tensor or len(op.outputs) != 1:
        raise ValueError(f"kernel input {kernel!r} of {forward_key!r} is read by a "
                         f"{_KERNEL_OPS.get(code, f'builtin op {code}')} op, not as the filter of a "
                         "single-output Conv2D, DepthwiseConv2D or FullyConnected")
    return int(op.outputs[0])


def add_probe(model_bytes: bytes, kernel_names: Sequence[str], forward_key: str = "forward") -> bytes:
    """The model with `probe` added: forward's inputs (same names) -> forward's outputs + one output
    `neuron_output_name(i)` per kernel in `kernel_names` order (the output of the op reading it)."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if any(s.signatureKey.decode() == PROBE for s in model.signatureDefs or []):
        raise ValueError(f"the model already has a {PROBE!r} signature")
    sig = _signature(model, forward_key)
    graph = model.subgraphs[sig.subgraphIndex]
    inputs = [(m.name.decode(), int(m.tensorIndex)) for m in sig.inputs]
    by_name = dict(inputs)
    missing = [k for k in kernel_names if k not in by_name]
    if missing:
        raise ValueError(f"kernel names {missing} are not inputs of {forward_key!r} (it has {sorted(by_name)})")
    if len(set(kernel_names)) != len(kernel_names):
        raise ValueError(f"kernel names {list(kernel_names)} repeat a name")
    outputs = [(m.name.decode(), int(m.tensorIndex)) for m in sig.outputs]
    clash = {n for n, _ in outputs} & {neuron_output_name(i) for i in range(len(kernel_names))}
    if clash:
        raise ValueError(f"{forward_key!r} already has outputs named {sorted(clash)}, the probe's layer outputs")
    outputs += [(neuron_output_name(i), _layer_output(model, graph, k, by_name[k], forward_key))
                for i, k in enumerate(kernel_names)]
    ops = tuple(range(len(graph.operators)))
    sub, remap = _subgraph(model, graph, ops, [t for _, t in inputs], [t for _, t in outputs], PROBE)
    _add_signature(model, PROBE, sub, [(n, remap[t]) for n, t in inputs], [(n, remap[t]) for n, t in outputs])

    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=_IDENTIFIER)
    return bytes(builder.Output())
