"""Fashion-MNIST-C: the Fashion-MNIST test images under our 15 corruptions, split for adaptation.

Why: the fmnist-c benchmark adapts a CNN pretrained on clean Fashion-MNIST train to corrupted test
images, on 90% of them, and measures accuracy on the other 10%. Every image carries one corruption
type (round-robin after a seeded shuffle, so all types are equally represented), and both halves hold
every type. The same seed gives the same images, labels and corruption types at every severity, so
severities differ only in strength. Numpy only (runtime side).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tflite_fg import corruptions as C
from tflite_fg import data
# Pixel p (uint8) -> (p - 128) / 128, the ResNet-8's convention: the int8 input is exactly p - 128.
from tflite_fg.tasks import INPUT_RANGE, PIXEL_OFFSET, PIXEL_SCALE  # noqa: F401 (INPUT_RANGE: for converters)
CLASSES: tuple[str, ...] = data.FASHION_MNIST_CLASSES
PREPROCESSING = {"size": [28, 28], "channels": 1, "scale": PIXEL_SCALE, "offset": PIXEL_OFFSET}
CORRUPTIONS, SEVERITIES = C.CORRUPTIONS, C.SEVERITIES
N_TEST_IMAGES = 10000  # the Fashion-MNIST test split the images are drawn from


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28] -> float32 [N, 28, 28, 1], p * PIXEL_SCALE + PIXEL_OFFSET."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 3:
        raise ValueError(f"preprocess expects uint8 images [N, H, W], got {x.dtype} {x.shape}")
    return (x.astype(np.float32) * np.float32(PIXEL_SCALE) + np.float32(PIXEL_OFFSET))[..., None]


@dataclass(frozen=True)
class CorruptedSplit:
    """Preprocessed float images, labels and corruption indices (into ``corruptions``) of both halves."""
    x_adapt: np.ndarray
    y_adapt: np.ndarray
    c_adapt: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    c_test: np.ndarray
    severity: str
    seed: int
    corruptions: tuple[str, ...] = CORRUPTIONS


def corruption_seed(seed: int, corruption: str) -> int:
    """The seed of one corruption type's draw: from (seed, its index in CORRUPTIONS), so a type's
    noise does not depend on which other types are chosen."""
    return int(np.random.SeedSequence([seed, CORRUPTIONS.index(corruption)]).generate_state(1)[0])


def _check_args(severity: str, n_images: int, seed: int, corruptions: Sequence[str], adapt_fraction: float):
    C.check_severity(severity)
    names = tuple(corruptions) if not isinstance(corruptions, str) else (corruptions,)
    if not names:
        raise ValueError("corruptions is empty; give one or more of: " + ", ".join(CORRUPTIONS))
    for name in names:
        C.check_name(name)
    if len(set(names)) != len(names):
        raise ValueError(f"corruptions {names} lists a type twice")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not 0.0 < adapt_fraction < 1.0:
        raise ValueError(f"adapt_fraction={adapt_fraction}: must be strictly between 0 and 1")
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) \
            or not 2 * len(names) <= n_images <= N_TEST_IMAGES:
        raise ValueError(f"n_images={n_images!r}: must be an integer in [{2 * len(names)}, {N_TEST_IMAGES}] "
                         f"(two images per corruption type at least, one for each half)")
    return names


def sample_images(n_images: int, seed: int, cache: str | os.PathLike | None = None):
    """The clean uint8 test images [n, 28, 28] and labels that ``load_fmnist_c`` corrupts (same
    n_images and seed), in the same order before the split: for clean reference accuracy."""
    images, labels = data.load_fashion_mnist("test", cache)
    idx = np.random.default_rng(seed).choice(len(images), size=n_images, replace=False)
    return images[idx], labels[idx].astype(np.int64)


def assign_corruptions(n_images: int, n_types: int, seed: int) -> np.ndarray:
    """Type index per image: round-robin over a seeded shuffle (counts differ by at most one)."""
    order = np.random.default_rng([seed, 1]).permutation(n_images)
    types = np.empty(n_images, np.int64)
    types[order] = np.arange(n_images) % n_types
    return types


def split_adapt_test(types: np.ndarray, n_types: int, adapt_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (adapt, test) indices, stratified by type: each type keeps round(count * (1 - adapt_fraction))
    images for the test half, at least one, and at least one for adaptation."""
    rng = np.random.default_rng([seed, 2])
    test = []
    for k in range(n_types):
        members = rng.permutation(np.flatnonzero(types == k))
        n_test = min(max(1, int(round(len(members) * (1.0 - adapt_fraction)))), len(members) - 1)
        test.append(members[:n_test])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(types)), test_idx), test_idx


def load_fmnist_c(severity: str, n_images: int = 3000, seed: int = 0, cache: str | os.PathLike | None = None,
                  corruptions: Sequence[str] = CORRUPTIONS, adapt_fraction: float = 0.9) -> CorruptedSplit:
    """``n_images`` Fashion-MNIST test images (seeded draw), each under one of ``corruptions`` at
    ``severity``, split ``adapt_fraction`` / rest into adaptation and test halves."""
    names = _check_args(severity, n_images, seed, corruptions, adapt_fraction)
    images, labels = sample_images(n_images, seed, cache)
    types = assign_corruptions(n_images, len(names), seed)
    corrupted = np.empty_like(images)
    for k, name in enumerate(names):
        members = types == k
        corrupted[members] = C.corrupt(images[members], name, severity, corruption_seed(seed, name))
    adapt, test = split_adapt_test(types, len(names), adapt_fraction, seed)
    x = preprocess(corrupted)
    return CorruptedSplit(x_adapt=x[adapt], y_adapt=labels[adapt], c_adapt=types[adapt],
                          x_test=x[test], y_test=labels[test], c_test=types[test],
                          severity=severity, seed=int(seed), corruptions=names)
