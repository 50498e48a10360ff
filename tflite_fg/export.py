"""Export a deployable model: the trained int8 kernels written into the `infer` subgraph's constants.

The kernels keep their shape and per-tensor scale, so export is a byte patch at offsets recorded at
conversion: no TensorFlow, no flatbuffer rebuild, the same few lines in Java on the device.
The result is still a tflite_fg model (its `forward` signature can keep training from it).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from tflite_fg import quant
from tflite_fg.metadata import Metadata, sha256_bytes, write_model


def to_int8(params: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The deployable int8 kernels: int8 as is; float weights in int8-LSB units (the fp32 baseline)
    rounded to nearest and saturated, i.e. post-training quantization on the model's fixed scales."""
    out = []
    for p in params:
        p = np.asarray(p)
        if p.dtype == np.int8:
            out.append(p)
        elif np.issubdtype(p.dtype, np.floating):
            if not np.all(np.isfinite(p)):
                raise ValueError("cannot export non-finite weights")
            out.append(quant.saturate_int8(np.rint(p).astype(np.int64)))
        else:
            raise ValueError(f"export needs int8 kernels or float LSB weights, got {p.dtype} (use space.to_engine)")
    return out


def patch_kernels(model_bytes: bytes, meta: Metadata, params: Sequence[np.ndarray]) -> bytes:
    out = bytearray(model_bytes)
    if len(params) != len(meta.trainable):
        raise ValueError(f"expected {len(meta.trainable)} trainable tensors, got {len(params)}")
    for t, p in zip(meta.trainable, params):
        p = np.ascontiguousarray(p)
        if p.dtype != np.int8 or tuple(p.shape) != t.shape:
            raise ValueError(f"trainable tensor {t.layer!r} must be int8 {t.shape}; got {p.dtype} {p.shape}")
        if p.min(initial=0) < -127:
            raise ValueError(f"trainable tensor {t.layer!r} holds -128, outside the symmetric int8 range")
        out[t.infer_offset:t.infer_offset + t.nbytes] = p.tobytes()
    return bytes(out)


def export_model(path: str | os.PathLike, model_bytes: bytes, meta: Metadata, params: Sequence[np.ndarray]) -> Metadata:
    """Write `path` and `path.json` atomically; returns the new metadata."""
    patched = patch_kernels(model_bytes, meta, params)
    new_meta = dataclasses.replace(meta, model_sha256=sha256_bytes(patched))
    write_model(path, patched, new_meta)
    return new_meta
