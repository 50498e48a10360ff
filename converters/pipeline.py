"""Keras model -> int8 .tflite with `forward`/`infer`/`probe` (+ `prefix`/`suffix`) signatures + the runtime's metadata.

When the last trainable layer is dense, forward/suffix/probe also return its input (`head_in`, for the exact head)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from converters import graph_head, graph_probe, graph_split, graph_surgery, qat, tflite_export
from converters.keras_compat import keras
from tflite_fg import flatbuf
from tflite_fg.metadata import CONVERTER_VERSION, Metadata, TrainableTensor, sha256_bytes, write_model
from tflite_fg.model import FORWARD, INFER, load_interpreter


# The logits' int8 range is this many times the starting head's: room for the margins training grows
# (with 1.0, 1 of 10 vww-faces k20 FT splits collapsed to one class, both logits at the rails;
# with 2.0 none did, and fmnist-fewshot FT validation was unchanged: docs/benchmarks.md).
OUTPUT_HEADROOM = 2.0


@dataclass(frozen=True)
class ConvertConfig:
    trainable: str | tuple[str, ...] = "head"   # names, "head", or "last:N"
    headroom: float = 1.0                      # trainable range = headroom * max|w| at conversion
    output_headroom: float = OUTPUT_HEADROOM   # logits range = output_headroom * the calibrated one
    input_range: tuple[float, float] | None = None  # fixed float input range; None: from the data
    qat_epochs: int = 0                        # optional QAT fine-tune on (x, y) of the source task
    qat_learning_rate: float = 1e-4
    class_names: tuple[str, ...] = ()
    preprocessing: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.headroom >= 1.0:
            raise ValueError(f"headroom={self.headroom}: must be >= 1 (the range must cover the initial kernel)")
        if not self.output_headroom >= 1.0:
            raise ValueError(f"output_headroom={self.output_headroom}: must be >= 1 (the range must cover the "
                             "starting logits)")
        if self.qat_epochs < 0:
            raise ValueError(f"qat_epochs={self.qat_epochs}: must be >= 0")


def prepare_float_model(model, head: tuple[np.ndarray, np.ndarray] | None = None):
    """BN folded, ReLU fused, softmax dropped, and optionally a new head (kernel [in, C], bias [C])."""
    folded = graph_surgery.fold_batchnorm_and_relu(model)
    return graph_surgery.replace_head(folded, *head) if head is not None else folded


def _same_up_to_ties(stored: np.ndarray, expected: np.ndarray) -> bool:
    """The converter quantizes in its own float precision: a value that sits on a rounding tie may
    land 1 LSB away from numpy's rounding (seen: 1 of 4,608 elements of ResNet-8's conv2d_3)."""
    diff = np.abs(stored.astype(np.int16) - expected.astype(np.int16))
    return int(diff.max(initial=0)) <= 1 and np.count_nonzero(diff) <= max(1, expected.size // 1000)


def _locate_kernels(model_bytes: bytes, qat_model, trainable: Sequence[str], scales: dict[str, float]):
    """Find each trainable kernel's constant in `infer` by its int8 values (exact up to rounding ties)."""
    fb = flatbuf.parse(model_bytes)
    consts = flatbuf.int8_constants(fb, flatbuf.signature_subgraph(fb, INFER))
    found = {}
    for name in trainable:
        kind, kernel = qat.kernel_values(qat_model, name)
        native = qat.keras_to_native(kind, kernel)
        expected = np.clip(np.round(native / scales[name]), -127, 127).astype(np.int8)
        hits = [c for c in consts if c.shape == expected.shape
                and _same_up_to_ties(flatbuf.read_int8(model_bytes, c.offset, c.shape), expected)]
        if len(hits) != 1:
            raise RuntimeError(f"found {len(hits)} constants in '{INFER}' matching the kernel of {name!r}; "
                               "the converter changed the kernel (layout or values)")
        found[name] = (hits[0], kind)
    return found


def quantize_aware(model, cfg: ConvertConfig, representative: np.ndarray,
                   qat_data: tuple[np.ndarray, np.ndarray] | None = None):
    """Fold, annotate, calibrate (and optionally QAT fine-tune): the calibrated tfmot model and
    the trainable layer names. The float model must already carry its final head."""
    if not np.isfinite(representative).all():
        raise ValueError("representative data contains NaN or inf")
    float_model = graph_surgery.fold_batchnorm_and_relu(model)
    trainable = graph_surgery.select_trainable(float_model, cfg.trainable)
    qat_model, _ = qat.quantize_model(float_model, trainable, cfg.headroom)
    qat.calibrate(qat_model, float_model, representative, cfg.input_range, output_headroom=cfg.output_headroom)
    if cfg.qat_epochs:
        if qat_data is None:
            raise ValueError("qat_epochs > 0 needs qat_data=(x, y) from the source task")
        qat_model.compile(keras.optimizers.Adam(cfg.qat_learning_rate),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        qat_model.fit(*qat_data, epochs=cfg.qat_epochs, batch_size=32, verbose=0)
    return qat_model, trainable


def convert_keras_model(model, cfg: ConvertConfig, representative: np.ndarray,
                        qat_data: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[bytes, Metadata]:
    return to_tflite(*quantize_aware(model, cfg, representative, qat_data), cfg)


def to_tflite(qat_model, trainable: Sequence[str], cfg: ConvertConfig) -> tuple[bytes, Metadata]:
    """The int8 graph with its signatures (`forward`, `infer`, `probe` (forward + each trainable
    layer's output), and `prefix`/`suffix` when the frozen part can be cached), and the metadata
    that locates its trainable kernels."""
    model_bytes, n_features = graph_split.add_prefix_suffix(tflite_export.convert_to_tflite(qat_model, trainable))
    model_bytes = graph_probe.add_probe(model_bytes, [tflite_export.kernel_input_name(n) for n in trainable])
    head = tflite_export.kernel_input_name(trainable[-1])
    if qat.kernel_values(qat_model, trainable[-1])[0] == "Dense" and graph_head.produces_logits(model_bytes, head):
        model_bytes = graph_head.add_head_input(model_bytes, head)  # the exact head's input (graph_head)

    runner = load_interpreter(model_bytes, "builtin", 1, "converted model").get_signature_runner(FORWARD)
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    x = inputs[tflite_export.X_NAME]
    y = outputs[tflite_export.LOGITS_NAME]
    scales = {n: float(inputs[tflite_export.kernel_input_name(n)]["quantization"][0]) for n in trainable}
    located = _locate_kernels(model_bytes, qat_model, trainable, scales)
    meta = Metadata(
        model_sha256=sha256_bytes(model_bytes),
        input_name=tflite_export.X_NAME, input_shape=tuple(int(d) for d in x["shape"][1:]),
        input_scale=float(x["quantization"][0]), input_zero_point=int(x["quantization"][1]),
        output_name=tflite_export.LOGITS_NAME,
        output_scale=float(y["quantization"][0]), output_zero_point=int(y["quantization"][1]),
        num_classes=int(y["shape"][-1]),
        trainable=tuple(TrainableTensor(
            layer=n, input_name=tflite_export.kernel_input_name(n), op=located[n][1],
            shape=located[n][0].shape, scale=scales[n],
            infer_offset=located[n][0].offset, nbytes=located[n][0].nbytes) for n in trainable),
        class_names=tuple(cfg.class_names), preprocessing=dict(cfg.preprocessing),
        source={**cfg.source, "trainable_spec": cfg.trainable if isinstance(cfg.trainable, str) else list(cfg.trainable),
                "headroom": cfg.headroom, "output_headroom": cfg.output_headroom, "qat_epochs": cfg.qat_epochs,
                "converter_version": CONVERTER_VERSION, "prefix_features": n_features},
    )
    return model_bytes, meta


def save(path: str | os.PathLike, model_bytes: bytes, meta: Metadata) -> None:
    write_model(path, model_bytes, meta)
