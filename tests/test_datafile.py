"""tflite_fg.datafile on real files: every way a user's .npz can be wrong gets a message naming it."""
import numpy as np
import pytest

from tflite_fg import datafile
from tflite_fg.datafile import DataError
from tflite_fg.errors import UserError

SHAPE = (8, 8, 1)


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (20, *SHAPE)).astype(np.float32)
    return {"x_train": x, "y_train": np.arange(20) % 5, "x_test": x[:10], "y_test": np.arange(10) % 5}


def test_loads_required_and_present_optional_arrays(arrays, tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    got = datafile.load_npz(path, ("x_train", "y_train"), ("y_test", "z"))
    assert sorted(got) == ["x_train", "y_test", "y_train"]
    np.testing.assert_array_equal(got["x_train"], arrays["x_train"])


@pytest.mark.parametrize("write, message", [
    (lambda p, a: None, "no such data file"),
    (lambda p, a: np.savez(p, x_train=a["x_train"]), "has no array 'y_train'"),
    (lambda p, a: p.write_text("x,y\n1,2\n" * 50), "not an .npz of numeric arrays"),
    (lambda p, a: np.save(open(p, "wb"), a["x_train"]), "a single .npy array"),
    (lambda p, a: (np.savez(p, **a), p.write_bytes(p.read_bytes()[:5000])), "truncated or corrupt"),
    (lambda p, a: np.savez(p, x_train=np.array([{"a": 1}], dtype=object), y_train=a["y_train"]), "pickle"),
])
def test_unreadable_files_are_user_errors_naming_the_file(arrays, tmp_path, write, message):
    path = tmp_path / "bad.npz"
    write(path, arrays)
    with pytest.raises(DataError, match=message) as err:
        datafile.load_npz(path, ("x_train", "y_train"))
    assert str(path) in str(err.value) and isinstance(err.value, UserError)


def test_truncated_member_fails_at_load_not_later(arrays, tmp_path):
    """A zip whose directory survives but whose member data is cut: read in full inside load_npz."""
    path = tmp_path / "d.npz"
    np.savez_compressed(path, **arrays)
    raw = bytearray(path.read_bytes())
    raw[200:260] = bytes(60)  # damage the first member's compressed data, keep the central directory
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="truncated or corrupt"):
        datafile.load_npz(path, ("x_train",))


@pytest.mark.parametrize("x, message", [
    (np.zeros((0, *SHAPE), np.float32), r"x_test is empty"),
    (np.zeros((3, 8, 8), np.float32), r"x_test has shape \(3, 8, 8\); the model expects \(n, 8, 8, 1\)"),
    (np.zeros((3, *SHAPE), np.uint8), "x_test has dtype uint8"),
])
def test_examples_checked_with_the_array_name(x, message):
    with pytest.raises(DataError, match=message):
        datafile.check_examples(x, "x_test", SHAPE)


def test_nan_and_inf_are_counted_and_located():
    x = np.zeros((4, *SHAPE), np.float32)
    x[2, 1, 3, 0], x[3, 0, 0, 0] = np.nan, np.inf
    with pytest.raises(DataError, match=r"d.npz:x_train has 1 NaN and 1 inf values \(first at index \(2, 1, 3, 0\)\)"):
        datafile.check_examples(x, "d.npz:x_train", SHAPE)


def test_labels_out_of_range_and_empty_classes():
    with pytest.raises(DataError, match=r"y_train: labels out of range \[0, 10\): min 5, max 14.*0\.\.9"):
        datafile.check_labels(np.arange(5, 15), "y_train", 10, 10)
    with pytest.raises(DataError, match=r"y_train: labels must be an integer array"):
        datafile.check_labels(np.zeros(10, np.float32), "y_train", 10, 10)
    with pytest.raises(DataError, match=r"no example of class\(es\) \[3, 4\] of 5"):
        datafile.check_every_class(np.array([0, 1, 2, 0]), "y_train", 5)
    datafile.check_every_class(np.array([0, 1, 2, 3, 4]), "y_train", 5)


def test_input_range_warns_on_some_clipping_and_refuses_most():
    x = np.linspace(-1, 1, 10000, dtype=np.float32)
    assert datafile.check_input_range(x, "x", -1.0, 1.0) is None
    warning = datafile.check_input_range(x * 1.01, "x", -1.0, 1.0)
    assert warning.startswith("warning: 1.0% of the values of x") and "clipped" in warning
    with pytest.raises(DataError, match=r"100.0% of the values of x .* preprocess"):
        datafile.check_input_range(x * 128 + 1000, "x", -1.0, 1.0)


def test_check_split_returns_float32_int64_and_warning():
    x, y, warning = datafile.check_split(np.zeros((3, *SHAPE)), np.array([0, 1, 2], np.int32), "test", SHAPE, 3,
                                         (-1.0, 1.0), "d.npz")
    assert x.dtype == np.float32 and y.dtype == np.int64 and warning is None
    with pytest.raises(DataError, match=r"d.npz:y_test"):
        datafile.check_split(np.zeros((3, *SHAPE)), np.array([0, 1, 3]), "test", SHAPE, 3, (-1.0, 1.0), "d.npz")


def test_float64_values_beyond_float32_are_refused_as_inf(tmp_path):
    x = np.zeros((2, *SHAPE), np.float64)
    x[1, 0, 0, 0] = 1e300
    with pytest.raises(DataError, match=r"0 NaN and 1 inf values \(first at index \(1, 0, 0, 0\)\)"):
        datafile.check_examples(x, "x_train", SHAPE)
    assert datafile.check_examples(x[:1], "x_train", SHAPE).dtype == np.float32
    with pytest.raises(DataError, match="is a directory"):
        datafile.load_npz(tmp_path, ("x_test", "y_test"))
    with pytest.raises(DataError, match=r"numpy.savez\(path, x_test=\.\.\., y_test=\.\.\.\)"):
        datafile.load_npz(tmp_path / "none.npz", ("x_test", "y_test"))
