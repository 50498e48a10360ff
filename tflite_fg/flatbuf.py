"""Read-only views into a .tflite flatbuffer, without TensorFlow (the schema ships with LiteRT).

Used to locate the bytes of the trainable kernels inside the `infer` subgraph: export patches
them in place, and the initial trainable tensors are read from them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

_INT8 = schema.TensorType.INT8


@dataclass(frozen=True)
class ConstTensor:
    index: int  # tensor index within its subgraph
    name: str
    shape: tuple[int, ...]
    offset: int  # byte offset of the data inside the .tflite file
    nbytes: int
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]


def parse(model_bytes: bytes) -> "schema.Model":
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (missing the 'TFL3' identifier): the file is corrupt, "
                         "truncated or not a .tflite model")
    return schema.Model.GetRootAs(model_bytes, 0)


def signature_subgraph(model: "schema.Model", key: str) -> int:
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        if sig.SignatureKey().decode() == key:
            return sig.SubgraphIndex()
    raise KeyError(key)


def int8_constants(model: "schema.Model", subgraph: int) -> list[ConstTensor]:
    """Every int8 tensor of the subgraph that has data in the file."""
    sg = model.Subgraphs(subgraph)
    out = []
    for t in range(sg.TensorsLength()):
        tensor = sg.Tensors(t)
        if tensor.Type() != _INT8 or tensor.Buffer() == 0:
            continue
        buf = model.Buffers(tensor.Buffer())
        if buf.DataLength() == 0:
            continue
        tab = buf._tab
        offset = tab.Vector(tab.Offset(4))  # start of the `data` vector of the Buffer table
        q = tensor.Quantization()
        out.append(ConstTensor(
            index=t, name=tensor.Name().decode(),
            shape=tuple(int(d) for d in tensor.ShapeAsNumpy()),
            offset=int(offset), nbytes=int(buf.DataLength()),
            scale=tuple(float(s) for s in q.ScaleAsNumpy()) if q is not None and q.ScaleLength() else (),
            zero_point=tuple(int(z) for z in q.ZeroPointAsNumpy()) if q is not None and q.ZeroPointLength() else (),
        ))
    return out


def read_int8(model_bytes: bytes, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    return np.frombuffer(model_bytes, np.int8, count=count, offset=offset).reshape(shape).copy()
