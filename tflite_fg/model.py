"""The on-device model: a LiteRT interpreter over the `forward`/`infer` signatures of a converted graph.

Training calls `forward(x, w...)` with the candidate int8 kernels as inputs, so nothing in the
engine is mutated and every runtime with the signature API (Python, C++, Java) can do the same.
When the converter could split `forward` at its first trainable op, `prefix(x) -> h..` runs the
frozen layers and `suffix(h.., w...) -> logits` the trainable ones (bit-identical to `forward`):
`features` + `forward_features` let a caller run the frozen part once per batch or per data set.
`probe(x, w...) -> logits, n0..` is `forward` that also returns each trainable layer's output
(`neuron_outputs`, for neuron selection).
The loss is computed on the host in float32 from the dequantized int8 logits: a softmax over 10
numbers costs nothing next to the network, and float keeps log-sum-exp exact enough that the sign
of L+ - L- (all Sign-m-SPSA needs) is not decided by rounding.
"""
from __future__ import annotations

import os
import pathlib
from typing import Sequence

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tflite_fg import data, flatbuf, losses
from tflite_fg.errors import UserError
from tflite_fg.exact_head import HeadQuant
from tflite_fg.metadata import Metadata, read_metadata, sha256_bytes
from tflite_fg.runner import SignatureFn

FORWARD, INFER, PREFIX, SUFFIX, PROBE = "forward", "infer", "prefix", "suffix", "probe"
HEAD_IN = "head_in"  # extra output of forward/suffix/probe: the head's input (converters.graph_head)
Features = tuple[np.ndarray, ...]  # what `prefix` returns for a batch: one int8 array per cut tensor
ENGINES = {
    # Builtin kernels: `forward` and `infer` are bit-identical (same kernels for every op).
    "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    # XNNPACK runs the frozen constant-weight ops; faster, but its requantization rounds differently
    # from the builtin kernels that run the trainable (input-weight) ops, so `infer` may differ by a few LSB.
    "xnnpack": OpResolverType.AUTO,
}


class ModelError(UserError):
    """A model file that cannot be trained: says what is wrong and how to get a good one."""


def load_interpreter(model_bytes: bytes, engine: str, num_threads: int | None, what: str) -> Interpreter:
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: choose one of {sorted(ENGINES)}")
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                    or num_threads < 1):
        raise UserError(f"num_threads={num_threads!r}: give an integer >= 1, or leave it unset for LiteRT's default")
    try:
        flatbuf.parse(model_bytes)
        return Interpreter(model_content=model_bytes, experimental_op_resolver_type=ENGINES[engine],
                           num_threads=num_threads)
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"{what}: cannot load as a TFLite model ({e}); the file is corrupt or truncated, "
                         "reconvert it with `python tools/convert.py`") from e


class FgModel:
    """A converted int8 model with its metadata; trainable tensors are plain int8 numpy arrays."""

    def __init__(self, path: str | os.PathLike, engine: str = "builtin", num_threads: int | None = None):
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file; give a .tflite written by `python tools/convert.py` "
                             "(or a run's trained.tflite)")
        self.model_bytes = self.path.read_bytes()
        self.interpreter = load_interpreter(self.model_bytes, engine, num_threads, str(self.path))
        signatures = self.interpreter.get_signature_list()
        if FORWARD not in signatures:
            raise ModelError(f"{self.path} has no '{FORWARD}' training signature (it has {sorted(signatures)}): "
                             "it is a plain inference model; convert the Keras model with `python tools/convert.py`")
        try:
            self.meta: Metadata = read_metadata(self.path)
        except (FileNotFoundError, ValueError) as e:
            raise ModelError(str(e)) from e
        if self.meta.model_sha256 != sha256_bytes(self.model_bytes):
            raise ModelError(f"{self.path} does not match its metadata (sha256 differs): the model was modified "
                             "or replaced; reconvert or restore the matching pair")
        self.engine = engine
        inputs = self.interpreter.get_signature_runner(FORWARD).get_input_details()
        if any(d["dtype"] != np.int8 for d in inputs.values()):
            raise ModelError(f"{self.path}: the '{FORWARD}' inputs are not int8 (a float model); "
                             "convert with `python tools/convert.py`, which writes an int8 graph")
        kernels = [t.input_name for t in self.meta.trainable]
        out = [self.meta.output_name]
        # One SignatureFn per signature (they cache the shapes they allocated for): forward and
        # suffix also list `head_in` when the graph has it; only the exact head copies it out.
        self._has_head_in = HEAD_IN in signatures[FORWARD]["outputs"]
        train_out = [*out, HEAD_IN] if self._has_head_in else out
        self._forward = SignatureFn(self.interpreter, FORWARD, [self.meta.input_name, *kernels], train_out)
        self._infer = SignatureFn(self.interpreter, INFER, [self.meta.input_name], out)
        self._prefix = self._suffix = None
        if PREFIX in signatures and SUFFIX in signatures:
            names = sorted(signatures[PREFIX]["outputs"], key=lambda n: int(n[1:]))  # h0, h1, ...
            self._prefix = SignatureFn(self.interpreter, PREFIX, [self.meta.input_name], names)
            self._suffix = SignatureFn(self.interpreter, SUFFIX, [*names, *kernels], train_out)
        if self._has_head_in:
            details = self.interpreter.get_signature_runner(FORWARD).get_output_details()[HEAD_IN]
            self._head_in_quant = (float(details["quantization"][0]), int(details["quantization"][1]))
        self._probe, self._neuron_quant = None, []
        if PROBE in signatures:
            neurons = [f"n{i}" for i in range(len(kernels))]  # converters.graph_probe.neuron_output_name
            self._probe = SignatureFn(self.interpreter, PROBE, [self.meta.input_name, *kernels], [*out, *neurons])
            details = self.interpreter.get_signature_runner(PROBE).get_output_details()
            self._neuron_quant = [(float(details[n]["quantization"][0]), int(details[n]["quantization"][1]))
                                  for n in neurons]

    @property
    def has_prefix(self) -> bool:
        """True when the frozen layers can run apart from the trainable ones (prefix/suffix)."""
        return self._prefix is not None

    @property
    def has_probe(self) -> bool:
        """True when the model can return its trainable layers' outputs (`neuron_outputs`)."""
        return self._probe is not None

    @property
    def has_head_input(self) -> bool:
        """True when forward/suffix also return the head's input (what the exact head needs)."""
        return self._has_head_in

    def head_quant(self) -> HeadQuant:
        """The fixed scales the exact head's gradient needs (exact_head.py)."""
        self._require_head_input()
        head = self.meta.trainable[-1]
        if head.op != "Dense":
            raise ModelError(f"{self.path}: the last trainable layer {head.layer!r} is a {head.op}, not Dense; "
                             "the exact head trains a dense last layer")
        return HeadQuant(self.meta.output_scale, *self._head_in_quant, head.scale)

    def _require_head_input(self) -> None:
        if not self._has_head_in:
            raise ModelError(f"{self.path} has no '{HEAD_IN}' output (converted before converter version 4, or "
                             "its last trainable layer is not dense): reconvert it with `python tools/convert.py` "
                             "to train the head exactly")

    @property
    def trainable_params(self) -> int:
        return sum(t.size for t in self.meta.trainable)

    def initial_params(self) -> list[np.ndarray]:
        """The trainable kernels as stored in `infer` (conversion or the last export)."""
        return [flatbuf.read_int8(self.model_bytes, t.infer_offset, t.shape) for t in self.meta.trainable]

    def input_range(self) -> tuple[float, float]:
        """The float inputs that quantize without clipping (to within half an input LSB)."""
        scale, zero_point = self.meta.input_scale, self.meta.input_zero_point
        return (-128.5 - zero_point) * scale, (127.5 - zero_point) * scale

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """float examples (already preprocessed) -> int8 batch, after checking shape and values."""
        x = np.asarray(x)
        if x.ndim != len(self.meta.input_shape) + 1 or tuple(x.shape[1:]) != self.meta.input_shape:
            raise ValueError(f"input batch has shape {x.shape}; the model expects (batch, {', '.join(map(str, self.meta.input_shape))})")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"input batch has dtype {x.dtype}; give preprocessed float values (see metadata.preprocessing)")
        if not np.isfinite(x).all():
            raise ValueError("input batch contains NaN or inf values")
        q = np.round(x / self.meta.input_scale) + self.meta.input_zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    def check_labels(self, y: np.ndarray, n: int) -> np.ndarray:
        return data.check_labels(y, n, self.meta.num_classes)

    def _check_params(self, params: Sequence[np.ndarray]) -> None:
        if len(params) != len(self.meta.trainable):
            raise ValueError(f"expected {len(self.meta.trainable)} trainable tensors, got {len(params)}")
        for p, t in zip(params, self.meta.trainable):
            if p.dtype != np.int8 or tuple(p.shape) != t.shape:
                raise ValueError(f"trainable tensor {t.layer!r} must be int8 {t.shape}; got {p.dtype} {p.shape}")

    def forward(self, xq: np.ndarray, params: Sequence[np.ndarray]) -> np.ndarray:
        """int8 logits of the int8 batch with the given trainable kernels."""
        self._check_params(params)
        return self._forward(xq, *params, first=1)[0]

    def features(self, xq: np.ndarray, batch_size: int = 256) -> Features:
        """What the trainable layers read: the `prefix` outputs, or the batch itself when the model
        has no prefix. Each example's features depend on that example only, so they can be cached."""
        if self._prefix is None:
            return (xq,)
        if len(xq) == 0:
            raise ValueError("features of an empty batch: give at least one example")
        parts = [self._prefix(xq[i:i + batch_size]) for i in range(0, len(xq), batch_size)]
        return tuple(np.concatenate(p) for p in zip(*parts))

    def forward_features(self, features: Features, params: Sequence[np.ndarray]) -> np.ndarray:
        """`forward` from cached features: the trainable layers only (bit-identical to `forward`)."""
        if self._suffix is None:
            return self.forward(features[0], params)
        self._check_params(params)
        return self._suffix(*features, *params, first=1)[0]

    def head_forward(self, features: Features, params: Sequence[np.ndarray],
                     cached: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(int8 logits, int8 head input) of one batch: from cached features (cached=True) or from
        the int8 batch itself (features = (xq,), cached=False)."""
        self._require_head_input()
        self._check_params(params)
        if cached and self._suffix is not None:
            return tuple(self._suffix(*features, *params))
        return tuple(self._forward(features[0], *params))

    def neuron_outputs(self, xq: np.ndarray, params: Sequence[np.ndarray], batch_size: int = 256) -> list[np.ndarray]:
        """Each trainable layer's output (after its fused bias/activation), dequantized to float32:
        one array per trainable tensor (metadata order), (N, ..., channels) as the op outputs it."""
        if self._probe is None:
            raise ModelError(f"{self.path} has no '{PROBE}' signature (converted before converter version 3): "
                             "reconvert it with `python tools/convert.py` to get the layer outputs")
        self._check_params(params)
        if len(xq) == 0:
            raise ValueError("neuron outputs of an empty batch: give at least one example")
        parts = [self._probe(xq[i:i + batch_size], *params)[1:] for i in range(0, len(xq), batch_size)]
        return [(np.concatenate(p).astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
                for p, (scale, zero_point) in zip(zip(*parts), self._neuron_quant)]

    def infer(self, xq: np.ndarray) -> np.ndarray:
        return self._infer(xq)[0]

    def dequantize_logits(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - np.float32(self.meta.output_zero_point)) * np.float32(self.meta.output_scale)

    def loss(self, params: Sequence[np.ndarray], xq: np.ndarray, y: np.ndarray) -> float:
        return losses.softmax_cross_entropy(self.dequantize_logits(self.forward(xq, params)), y)

    def loss_features(self, params: Sequence[np.ndarray], features: Features, y: np.ndarray) -> float:
        return losses.softmax_cross_entropy(self.dequantize_logits(self.forward_features(features, params)), y)

    def predict(self, xq: np.ndarray, params: Sequence[np.ndarray] | None = None, batch_size: int = 256) -> np.ndarray:
        """Class predictions; with params=None the deployable `infer` graph is used."""
        out = []
        for i in range(0, len(xq), batch_size):
            xb = xq[i:i + batch_size]
            out.append((self.infer(xb) if params is None else self.forward(xb, params)).argmax(axis=1))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def accuracy(self, xq: np.ndarray, y: np.ndarray, params: Sequence[np.ndarray] | None = None) -> float:
        y = self.check_labels(y, len(xq))
        return float((self.predict(xq, params) == y).mean())
