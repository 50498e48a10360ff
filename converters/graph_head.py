"""Expose the head's input: every signature that takes the head kernel also returns `head_in`.

The exact head (tflite_fg.exact_head) needs what the last dense layer reads, the features x, to
form the cross-entropy gradient (softmax(logits) - onehot)^T x from one forward pass, with no
backward graph. The tensor is already computed by `forward`/`suffix`/`probe`; this only lists it
as one more output of each (no new operators, no copy). Pure flatbuffer work, like graph_split.
"""
from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from converters.graph_probe import _opcode
from converters.graph_split import _IDENTIFIER, _tensor_map
from tflite_fg.model import HEAD_IN
_FC = schema.BuiltinOperator.FULLY_CONNECTED


def _fc_input(model: "schema.ModelT", graph: "schema.SubGraphT", kernel: int, where: str) -> int:
    readers = [op for op in graph.operators if len(op.inputs) > 1 and int(op.inputs[1]) == kernel]
    if len(readers) != 1 or _opcode(model, readers[0]) != _FC:
        raise ValueError(f"{where}: the head kernel is not the weights of exactly one FULLY_CONNECTED op; "
                         "the exact head needs a dense last layer")
    return int(readers[0].inputs[0])


def add_head_input(model_bytes: bytes, head_kernel: str) -> bytes:
    """The model with output `head_in` (the head's FullyConnected input) added to every signature
    whose inputs include `head_kernel`."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    touched = 0
    for sig in model.signatureDefs or []:
        names = {m.name.decode(): int(m.tensorIndex) for m in sig.inputs}
        if head_kernel not in names:
            continue
        graph = model.subgraphs[sig.subgraphIndex]
        tensor = _fc_input(model, graph, names[head_kernel], sig.signatureKey.decode())
        if any(m.name.decode() == HEAD_IN for m in sig.outputs):
            raise ValueError(f"signature {sig.signatureKey.decode()!r} already has a {HEAD_IN!r} output")
        graph.outputs = np.append(np.asarray(graph.outputs, np.int32), np.int32(tensor))
        sig.outputs.append(_tensor_map(HEAD_IN, tensor))
        touched += 1
    if not touched:
        raise ValueError(f"no signature takes the head kernel input {head_kernel!r}")
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=_IDENTIFIER)
    return bytes(builder.Output())
