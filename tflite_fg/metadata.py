"""The sidecar `<model>.tflite.json` that tells the runtime how to train a converted graph.

Plain JSON so that the Python runtime and the Android/Java core read it without TensorFlow.
It pins the .tflite it belongs to by sha256: a model edited or swapped without its metadata is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from dataclasses import asdict, dataclass, field

from tflite_fg.atomic import atomic_write

FORMAT = "tflite_fg/1"
# Recorded in metadata.source by the converter; bumped when its output changes (2: prefix/suffix
# signatures; 3: probe signature; 4: head_in outputs), so cached default conversions older than this are redone.
CONVERTER_VERSION = 4


@dataclass(frozen=True)
class TrainableTensor:
    layer: str            # Keras layer name
    input_name: str       # name of the `forward` signature input
    op: str               # Conv2D | DepthwiseConv2D | Dense
    shape: tuple[int, ...]  # TFLite native layout
    scale: float          # per-tensor Δw, fixed at conversion; zero point is 0
    infer_offset: int     # byte offset of this kernel's data in the `infer` subgraph
    nbytes: int

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Metadata:
    model_sha256: str
    input_name: str
    input_shape: tuple[int, ...]     # one example, without the batch dimension
    input_scale: float
    input_zero_point: int
    output_name: str
    output_scale: float
    output_zero_point: int
    num_classes: int
    trainable: tuple[TrainableTensor, ...]
    class_names: tuple[str, ...] = ()
    preprocessing: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Metadata":
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            raise ValueError(f"metadata format {raw.get('format')!r} is not {FORMAT!r}; reconvert the model")
        raw["trainable"] = tuple(TrainableTensor(**{**t, "shape": tuple(t["shape"])}) for t in raw["trainable"])
        for key in ("input_shape", "class_names"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


def metadata_path(model_path: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(str(model_path) + ".json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_model(path: str | os.PathLike, model_bytes: bytes, meta: Metadata) -> None:
    """Write the model and then its metadata (each atomically); the metadata pins the model's hash."""
    if meta.model_sha256 != sha256_bytes(model_bytes):
        raise ValueError("metadata.model_sha256 does not match the model bytes")
    atomic_write(path, model_bytes)
    atomic_write(metadata_path(path), meta.to_json().encode())


def read_metadata(model_path: str | os.PathLike) -> Metadata:
    p = metadata_path(model_path)
    if not p.exists():
        raise FileNotFoundError(f"{p} not found: a tflite_fg model needs its metadata file beside it; "
                                "convert the Keras model with `python tools/convert.py`")
    try:
        return Metadata.from_json(p.read_text())
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise ValueError(f"{p} is not valid tflite_fg metadata ({e}); reconvert with `python tools/convert.py`") from e
