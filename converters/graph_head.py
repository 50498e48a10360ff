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

LOGITS = "logits"  # the signatures' logits output (tflite_export.LOGITS_NAME, without importing TensorFlow)
_FC = schema.BuiltinOperator.FULLY_CONNECTED
_NO_ACTIVATION = schema.ActivationFunctionType.NONE


def _fc_input(model: "schema.ModelT", graph: "schema.SubGraphT", kernel: int, logits: int | None,
              where: str) -> int | None:
    """The input of the FULLY_CONNECTED op whose weights are `kernel`, or None when that op does not
    produce the signature's logits without an activation (the closed-form gradient would not hold)."""
    readers = [op for op in graph.operators if len(op.inputs) > 1 and int(op.inputs[1]) == kernel]
    if len(readers) != 1 or _opcode(model, readers[0]) != _FC:
        raise ValueError(f"{where}: the head kernel is not the weights of exactly one FULLY_CONNECTED op; "
                         "the exact head needs a dense last layer")
    fc = readers[0]
    activation = getattr(fc.builtinOptions, "fusedActivationFunction", _NO_ACTIVATION)
    if logits is None or int(fc.outputs[0]) != logits or activation != _NO_ACTIVATION:
        return None
    return int(fc.inputs[0])


def produces_logits(model_bytes: bytes, head_kernel: str) -> bool:
    """True when, in every signature that takes `head_kernel`, that kernel's dense op writes the logits
    output itself (no activation, no later layer): only then is add_head_input's output meaningful."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    found = False
    for sig in model.signatureDefs or []:
        names = {m.name.decode(): int(m.tensorIndex) for m in sig.inputs}
        if head_kernel in names:
            outputs = {m.name.decode(): int(m.tensorIndex) for m in sig.outputs}
            graph = model.subgraphs[sig.subgraphIndex]
            if _fc_input(model, graph, names[head_kernel], outputs.get(LOGITS), sig.signatureKey.decode()) is None:
                return False
            found = True
    return found


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
        logits = next((int(m.tensorIndex) for m in sig.outputs if m.name.decode() == LOGITS), None)
        tensor = _fc_input(model, graph, names[head_kernel], logits, sig.signatureKey.decode())
        if tensor is None:
            raise ValueError(f"{sig.signatureKey.decode()}: the head kernel's dense op does not write the "
                             f"{LOGITS!r} output without an activation; the exact head needs the model's last layer")
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
