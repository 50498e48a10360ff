"""Tests for tflite_fg.data on the real Fashion-MNIST files (no TensorFlow)."""

from __future__ import annotations

import gzip
import pathlib

import numpy as np
import pytest

from tflite_fg import data


@pytest.fixture(scope="module")
def fmnist(cache_dir: pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s: data.load_fashion_mnist(s, cache_dir) for s in ("train", "test")}


@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_fashion_mnist_shapes_and_balance(fmnist, split: str, n: int) -> None:
    x, y = fmnist[split]
    assert x.shape == (n, 28, 28) and x.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.uint8
    assert y.min() == 0 and y.max() == 9
    assert np.bincount(y, minlength=10).tolist() == [n // 10] * 10
    assert x.max() == 255 and x.min() == 0
    assert len(data.FASHION_MNIST_CLASSES) == 10


def test_truncated_idx_raises(cache_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    src = cache_dir / "fashion-mnist"
    root = tmp_path / "fashion-mnist"
    root.mkdir()
    for f in src.glob("t10k-*"):
        (root / f.name).write_bytes(f.read_bytes())
    labels = root / "t10k-labels-idx1-ubyte.gz"
    images = root / "t10k-images-idx3-ubyte.gz"
    # A valid gzip stream whose IDX payload is short by 5 bytes.
    raw = gzip.decompress(labels.read_bytes())
    labels.write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*fetch_assets.py"):
        data.load_fashion_mnist("test", tmp_path)
    # A gzip stream cut in half.
    labels.write_bytes(gzip.compress(raw))
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*delete it"):
        data.load_fashion_mnist("test", tmp_path)
    # Wrong magic number (labels file where images are expected).
    images.write_bytes(labels.read_bytes())
    with pytest.raises(ValueError, match="magic 2049, expected 2051"):
        data.load_fashion_mnist("test", tmp_path)


def test_resize_bilinear_hand_example() -> None:
    x = np.array([[[0, 4], [8, 12]]], dtype=np.uint8)
    # 2 -> 4, scale 0.5: src = -0.25, 0.25, 0.75, 1.25 -> edge, lerp .25, lerp .75, edge.
    expected = np.array([[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]], np.float32)
    out = data.resize_bilinear(x, 4)
    assert out.dtype == np.float32 and out.shape == (1, 4, 4)
    np.testing.assert_array_equal(out[0], expected)
    # 4 -> 2, scale 2: src = 0.5, 2.5 -> means of neighbouring pairs; height 1 -> 1 is identity.
    np.testing.assert_array_equal(
        data.resize_bilinear(np.array([[[0.0, 2.0, 10.0, 30.0]]]), (1, 2)), [[[1.0, 20.0]]])


def test_resize_bilinear_constant_and_identity() -> None:
    const = np.full((3, 28, 28), 77, np.uint8)
    np.testing.assert_array_equal(data.resize_bilinear(const, 32), np.full((3, 32, 32), 77, np.float32))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 28, 28)).astype(np.uint8)
    np.testing.assert_array_equal(data.resize_bilinear(img, 28), img.astype(np.float32))
    with pytest.raises(ValueError):
        data.resize_bilinear(img[0], 32)


def test_to_rgb32_shape_and_range(fmnist) -> None:
    x = fmnist["test"][0][:64]
    out = data.to_rgb32(x, scale=1 / 128, offset=-1.0)
    assert out.shape == (64, 32, 32, 3) and out.dtype == np.float32
    assert out.min() >= -1.0 and out.max() < 1.0
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_array_equal(
        data.to_rgb32(np.full((1, 28, 28), 255, np.uint8), 1 / 128, -1.0), np.full((1, 32, 32, 3), 127 / 128))


def test_fewshot_split(fmnist) -> None:
    y = fmnist["train"][1]
    a = data.fewshot_split(y, 5, seed=1)
    assert np.array_equal(a, data.fewshot_split(y, 5, seed=1))
    assert not np.array_equal(a, data.fewshot_split(y, 5, seed=2))
    assert a.shape == (50,)
    assert np.bincount(y[a], minlength=10).tolist() == [5] * 10
    assert np.array_equal(y[a], np.repeat(np.arange(10), 5))  # sorted by class ...
    assert all(np.all(np.diff(a[y[a] == c]) > 0) for c in range(10))  # ... then index
    sub = data.fewshot_split(y, 3, seed=0, classes=[7, 2])
    assert y[sub].tolist() == [7, 7, 7, 2, 2, 2]
    with pytest.raises(ValueError, match="class 1 has only 2 examples"):
        data.fewshot_split(np.array([0, 0, 0, 1, 1]), 3, seed=0)


def test_sample_indices() -> None:
    a = data.sample_indices(10000, 1000, seed=3)
    assert a.shape == (1000,) and np.unique(a).size == 1000 and a.min() >= 0 and a.max() < 10000
    assert np.array_equal(a, data.sample_indices(10000, 1000, seed=3))
    assert not np.array_equal(a, data.sample_indices(10000, 1000, seed=4))
    with pytest.raises(ValueError):
        data.sample_indices(5, 6, seed=0)


def test_validate_batch() -> None:
    x = np.zeros((4, 3), np.float32)
    data.validate_batch(x, np.array([0, 1, 2, 1]), num_classes=3)
    data.validate_batch(np.zeros((2, 3), np.int8))
    for bad_value, word in ((np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")):
        xb = x.copy()
        xb[2, 1] = bad_value
        with pytest.raises(ValueError, match=word):
            data.validate_batch(xb)
    with pytest.raises(ValueError, match="num_classes=3"):
        data.validate_batch(x, np.array([0, 1, 3, 1]), num_classes=3)
    with pytest.raises(ValueError, match=">= 0"):
        data.validate_batch(x, np.array([0, -1, 2, 1]), num_classes=3)
    with pytest.raises(ValueError, match="integer dtype"):
        data.validate_batch(x, np.array([0.0, 1.5, 2.0, 1.0]), num_classes=3)
    with pytest.raises(ValueError, match="one label per example"):
        data.validate_batch(x, np.array([0, 1]), num_classes=3)


def test_episode_split(fmnist) -> None:
    y = fmnist["test"][1]
    classes, sup, query = data.episode_split(y, ways=5, shots=5, queries=15, seed=3)
    assert classes.shape == (5,) and len(set(classes)) == 5 and (np.diff(classes) > 0).all()
    assert sup.shape == (25,) and query.shape == (75,) and not set(sup) & set(query)
    for c in classes:
        assert (y[sup] == c).sum() == 5 and (y[query] == c).sum() == 15
    again = data.episode_split(y, 5, 5, 15, seed=3)
    assert all((a == b).all() for a, b in zip(again, (classes, sup, query)))
    assert not (data.episode_split(y, 5, 5, 15, seed=4)[1] == sup).all()
    _, sup_all, rest = data.episode_split(np.array([0, 0, 0, 1, 1, 2, 2, 2]), 2, 1, None, seed=0)
    assert len(sup_all) == 2 and len(rest) >= 2 and not set(sup_all) & set(rest)
    with pytest.raises(ValueError, match="only 10 classes"):
        data.episode_split(y, 11, 1, 1, 0)
    with pytest.raises(ValueError, match="need 3"):
        data.episode_split(np.array([0, 0, 1, 1]), 2, 2, None, 0)
    with pytest.raises(ValueError, match=">= 1"):
        data.episode_split(y, 5, 0, 1, 0)
