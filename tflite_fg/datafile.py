"""A user's own data set: arrays in an .npz, loaded without pickle and checked before the first step.

Why here and not at the first forward pass: a NaN, a label out of range or inputs on the wrong scale do
not crash training, they quietly make its result meaningless. Every check names the file and the array.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from tflite_fg import data
from tflite_fg.errors import UserError

# Inputs outside the model's int8 input range are clipped by quantization: a little is normal (test data
# a bit beyond the calibration range), most of it means the data is not preprocessed as the model expects.
CLIP_WARN_FRACTION = 0.001
CLIP_REFUSE_FRACTION = 0.5


class DataError(UserError):
    """A data file or array that cannot be trained or evaluated on."""


def load_npz(path: str | os.PathLike, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The `required` (and present `optional`) arrays of an .npz, read in full so a truncated member fails here."""
    path = os.fspath(path)
    how = f"save it with numpy.savez(path, {', '.join(f'{k}=...' for k in required)})"
    if os.path.isdir(path):
        raise DataError(f"{path} is a directory; give an .npz file ({how})")
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such data file; {how}")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise DataError(f"{path} holds a single .npy array, not named arrays; {how}")
        with npz:
            missing = [k for k in required if k not in npz.files]
            if missing:
                raise DataError(f"{path} has no array {', '.join(map(repr, missing))} (it holds "
                                f"{sorted(npz.files) or 'nothing'}); {how}")
            return {k: npz[k] for k in (*required, *optional) if k in npz.files}
    except DataError:
        raise
    except PermissionError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror})") from e
    except MemoryError as e:
        raise DataError(f"{path}: its arrays do not fit in memory") from e
    except ValueError as e:
        if "pickle" in str(e):  # np.load says "allow_pickle=False" for any non-.npy/.npz bytes
            raise DataError(f"{path} is not an .npz of numeric arrays (numpy cannot read it without pickle); "
                            f"{how}") from e
        raise DataError(f"{path} is not a readable .npz ({e}); {how}") from e
    except Exception as e:  # zip, zlib, CRC, .npy header parsing (ast/tokenize errors): the bytes are damaged
        raise DataError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); {how}") from e


def check_examples(x: np.ndarray, name: str, input_shape: Sequence[int]) -> np.ndarray:
    """Preprocessed float examples (n >= 1, *input_shape), all finite -> float32."""
    x, input_shape = np.asarray(x), tuple(input_shape)
    expected = f"(n, {', '.join(map(str, input_shape))})"
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != input_shape:
        raise DataError(f"{name} has shape {x.shape}; the model expects {expected}")
    if not len(x):
        raise DataError(f"{name} is empty (shape {x.shape}); give at least one example")
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{name} has dtype {x.dtype}; give preprocessed float values as the model was trained "
                        "(see the model's .json 'preprocessing'), not raw integers")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32, copy=False)  # values beyond float32's range become inf and are refused below
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{name} has {int(np.isnan(x).sum())} NaN and {int(np.isinf(x).sum())} inf values "
                        f"(first at index {first}); clean or drop those examples")
    return x


def check_labels(y: np.ndarray, name: str, n: int, num_classes: int) -> np.ndarray:
    """Integer labels, one per example, in [0, num_classes) -> int64."""
    try:
        return data.check_labels(y, n, num_classes)
    except ValueError as e:
        raise DataError(f"{name}: {e}; the model has {num_classes} classes, so labels must be integers "
                        f"0..{num_classes - 1}") from e


def check_every_class(y: np.ndarray, name: str, num_classes: int) -> None:
    """Each class has an example (a prototype head or a calibration needs every class)."""
    empty = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
    if empty:
        raise DataError(f"{name} has no example of class(es) {empty} of {num_classes}; labels must be 0..{num_classes - 1} "
                        "with every class present")


def check_input_range(x: np.ndarray, name: str, low: float, high: float) -> str | None:
    """Refuse data mostly outside the model's input range; a warning line when some of it is clipped."""
    frac = float(np.count_nonzero((x < low) | (x > high))) / max(x.size, 1)
    where = (f"{frac:.1%} of the values of {name} (min {float(x.min()):.4g}, max {float(x.max()):.4g}) lie outside "
             f"the model's int8 input range [{low:.4g}, {high:.4g}]")
    if frac > CLIP_REFUSE_FRACTION:
        raise DataError(f"{where}: quantization would clip them and training would learn nothing; preprocess the "
                        "data as the model was trained (the model's .json 'preprocessing')")
    if frac > CLIP_WARN_FRACTION:
        return f"warning: {where} and are clipped"
    return None


def check_split(x: np.ndarray, y: np.ndarray, split: str, input_shape: Sequence[int], num_classes: int,
                input_range: tuple[float, float], where: str = "") -> tuple[np.ndarray, np.ndarray, str | None]:
    """`x_<split>`, `y_<split>` (of file `where`) checked against a model: float32 x, int64 y, and a warning
    line when some inputs are clipped."""
    prefix = f"{where}:" if where else ""
    x = check_examples(x, f"{prefix}x_{split}", input_shape)
    y = check_labels(y, f"{prefix}y_{split}", len(x), num_classes)
    return x, y, check_input_range(x, f"{prefix}x_{split}", *input_range)
