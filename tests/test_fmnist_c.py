"""The Fashion-MNIST-C loader on real test images: shapes, ranges, determinism, the stratified 90/10
split, and that it applies exactly the documented corruption to each image."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tflite_fg import corruptions as C
from tflite_fg import fmnist_c as F

N = 600
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def split(cache_dir) -> F.CorruptedSplit:
    return F.load_fmnist_c("medium", n_images=N, seed=0, cache=cache_dir)


def test_shapes_dtypes_ranges(split):
    n_test = len(F.CORRUPTIONS) * round(N / len(F.CORRUPTIONS) * 0.1)     # 40 per type -> 4 test each
    assert split.x_test.shape == (n_test, 28, 28, 1) and split.x_adapt.shape == (N - n_test, 28, 28, 1)
    for x, y, c in ((split.x_adapt, split.y_adapt, split.c_adapt), (split.x_test, split.y_test, split.c_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64 and c.dtype == np.int64
        assert len(x) == len(y) == len(c)
        assert F.INPUT_RANGE[0] <= x.min() and x.max() <= F.INPUT_RANGE[1]
        assert 0 <= y.min() and y.max() < len(F.CLASSES)
    assert split.severity == "medium" and split.seed == 0 and split.corruptions == F.CORRUPTIONS
    assert len(np.unique(np.concatenate([split.y_adapt, split.y_test]))) == 10


def test_every_corruption_in_both_halves_and_balanced(split):
    k = len(F.CORRUPTIONS)
    adapt, test = np.bincount(split.c_adapt, minlength=k), np.bincount(split.c_test, minlength=k)
    assert adapt.min() >= 1 and test.min() >= 1
    total = adapt + test
    assert total.max() - total.min() <= 1


def test_split_is_disjoint_stratified_and_covers_all():
    types = F.assign_corruptions(1000, 15, seed=5)
    assert np.bincount(types).tolist() == [67] * 10 + [66] * 5
    adapt, test = F.split_adapt_test(types, 15, 0.9, seed=5)
    assert len(np.intersect1d(adapt, test)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([adapt, test])), np.arange(1000))
    assert np.bincount(types[test], minlength=15).tolist() == [7] * 15
    # a tiny draw: still one test and one adaptation image per type
    types = F.assign_corruptions(30, 15, seed=0)
    adapt, test = F.split_adapt_test(types, 15, 0.9, seed=0)
    assert sorted(types[test].tolist()) == list(range(15)) == sorted(types[adapt].tolist())


def test_deterministic_and_seed_dependent(split, cache_dir):
    again = F.load_fmnist_c("medium", n_images=N, seed=0, cache=cache_dir)
    for field in ("x_adapt", "y_adapt", "c_adapt", "x_test", "y_test", "c_test"):
        np.testing.assert_array_equal(getattr(split, field), getattr(again, field))
    other = F.load_fmnist_c("medium", n_images=N, seed=1, cache=cache_dir)
    assert not np.array_equal(split.y_adapt, other.y_adapt)


def test_same_images_at_every_severity(split, cache_dir):
    easy = F.load_fmnist_c("easy", n_images=N, seed=0, cache=cache_dir)
    for field in ("y_adapt", "c_adapt", "y_test", "c_test"):
        np.testing.assert_array_equal(getattr(split, field), getattr(easy, field))
    assert not np.array_equal(split.x_adapt, easy.x_adapt)


def test_images_are_the_documented_corruption_of_the_sampled_images(split, cache_dir):
    images, labels = F.sample_images(N, 0, cache_dir)
    types = F.assign_corruptions(N, len(F.CORRUPTIONS), 0)
    adapt, test = F.split_adapt_test(types, len(F.CORRUPTIONS), 0.9, 0)
    np.testing.assert_array_equal(split.y_adapt, labels[adapt])
    np.testing.assert_array_equal(split.c_test, types[test])
    got = np.zeros((N, 28, 28, 1), np.float32)
    got[adapt], got[test] = split.x_adapt, split.x_test
    for k in (0, 6, 12):        # gaussian_noise, motion_blur, pixelate
        name = F.CORRUPTIONS[k]
        expected = F.preprocess(C.corrupt(images[types == k], name, "medium", F.corruption_seed(0, name)))
        np.testing.assert_array_equal(got[types == k], expected)


def test_subset_of_corruptions_indexes_the_subset(cache_dir):
    sub = F.load_fmnist_c("hard", n_images=40, seed=2, cache=cache_dir, corruptions=("fog", "jpeg"))
    assert sub.corruptions == ("fog", "jpeg")
    assert set(sub.c_adapt.tolist()) == set(sub.c_test.tolist()) == {0, 1}
    assert len(sub.x_test) == 4


def test_preprocess_makes_the_int8_input_pixel_minus_128():
    p = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    x = F.preprocess(p)
    assert x.shape == (1, 16, 16, 1) and x.dtype == np.float32
    assert (x.min(), x.max()) == F.INPUT_RANGE
    np.testing.assert_array_equal(x[..., 0] * 128, p.astype(np.float32) - 128)
    with pytest.raises(ValueError, match="uint8"):
        F.preprocess(p.astype(np.float32))


@pytest.mark.parametrize("kwargs, match", [
    ({"severity": "extreme"}, "unknown severity 'extreme'"),
    ({"n_images": 29}, r"n_images=29: must be an integer in \[30, 10000\]"),
    ({"n_images": 10001}, "n_images=10001"),
    ({"n_images": 300.0}, "n_images=300.0"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"adapt_fraction": 1.0}, "adapt_fraction=1.0: must be strictly between 0 and 1"),
    ({"adapt_fraction": 0.0}, "adapt_fraction=0.0"),
    ({"corruptions": ()}, "corruptions is empty"),
    ({"corruptions": ("fog", "frost")}, "unknown corruption 'frost'"),
    ({"corruptions": ("fog", "fog")}, "lists a type twice"),
])
def test_bad_arguments_raise(kwargs, match, cache_dir):
    args = {"severity": "easy", "n_images": 300, **kwargs}
    with pytest.raises(ValueError, match=match):
        F.load_fmnist_c(cache=cache_dir, **args)


def test_runtime_modules_import_numpy_only():
    code = ("import sys\nimport tflite_fg.corruptions, tflite_fg.fmnist_c\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'keras', 'scipy', 'skimage', 'absl')]\nassert not bad, bad\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
