"""Fashion-MNIST loading, preprocessing and few-shot splits (numpy only).

Why numpy only: this is the on-device runtime; every step here must be simple
enough to port bit-for-bit to Java (see ``resize_bilinear``).
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

from tflite_fg.assets import fashion_mnist_dir

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_FIX_HINT = "delete it and rerun `python tools/fetch_assets.py`"


def _read_idx(path: pathlib.Path, magic: int, ndim: int) -> np.ndarray:
    """Parse a gzipped big-endian IDX file of uint8 (header: magic, then ndim int32 dims)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found; run `python tools/fetch_assets.py`") from None
    except (EOFError, OSError, zlib.error) as e:  # truncated or not gzip at all
        raise ValueError(f"{path} is corrupt or truncated ({e}); {_FIX_HINT}") from e
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise ValueError(f"{path} is too short for an IDX header ({len(raw)} bytes); {_FIX_HINT}")
    fields = np.frombuffer(raw, dtype=">i4", count=1 + ndim)
    if int(fields[0]) != magic:
        raise ValueError(f"{path} has IDX magic {int(fields[0])}, expected {magic}; {_FIX_HINT}")
    dims = tuple(int(d) for d in fields[1:])
    expected = header + int(np.prod(dims))
    if any(d <= 0 for d in dims) or len(raw) != expected:
        raise ValueError(
            f"{path} has dims {dims} so expects {expected} bytes, but holds {len(raw)}; {_FIX_HINT}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_fashion_mnist(split: Literal["train", "test"],
                       cache: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N,28,28], labels uint8 [N]); N is 60000 (train) or 10000 (test).

    Reads the cached files only; fetching is ``tflite_fg.assets.ensure_assets``'s job.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    root = fashion_mnist_dir(cache)
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz", _IDX_IMAGES_MAGIC, 3)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", _IDX_LABELS_MAGIC, 1)
    if images.shape[1:] != (28, 28) or images.shape[0] != labels.shape[0]:
        raise ValueError(f"Fashion-MNIST {split}: images {images.shape} do not match labels "
                         f"{labels.shape}; {_FIX_HINT}")
    if labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"Fashion-MNIST {split}: label {labels.max()} out of range; {_FIX_HINT}")
    return images, labels


def _axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower/upper source index and float32 lerp weight for each output index."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(src)
    lo = np.clip(floor, 0, in_size - 1).astype(np.intp)
    hi = np.clip(np.ceil(src), 0, in_size - 1).astype(np.intp)
    return lo, hi, (src - floor).astype(np.float32)


def resize_bilinear(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize [N,H,W] -> float32 [N,h,w], half-pixel centers, no antialias.

    Matches tf.image.resize(method="bilinear", antialias=False) (TF kernel
    ResizeBilinear with half_pixel_centers=True). All arithmetic is float32, in
    this order, so a Java port using ``float`` gives identical bits:

        for each axis with input length I and output length O:
            s      = (float)I / (float)O
            src(i) = ((float)i + 0.5f) * s - 0.5f           for output index i
            lo(i)  = clamp(floor(src(i)), 0, I-1)
            hi(i)  = clamp(ceil(src(i)),  0, I-1)
            w(i)   = src(i) - floor(src(i))                 (unclamped floor)
        with (ly, hy, wy) for rows y and (lx, hx, wx) for columns x:
            tl = in[ly][lx]; tr = in[ly][hx]; bl = in[hy][lx]; br = in[hy][hx]
            top    = tl + (tr - tl) * wx
            bottom = bl + (br - bl) * wx
            out[y][x] = top + (bottom - top) * wy

    Out-of-range source coordinates thus clamp to the edge pixels.
    """
    x = np.asarray(images)
    if x.ndim != 3:
        raise ValueError(f"resize_bilinear expects [N,H,W], got shape {x.shape}")
    h_out, w_out = (size, size) if isinstance(size, int) else size
    if h_out <= 0 or w_out <= 0:
        raise ValueError(f"output size must be positive, got {size!r}")
    x = x.astype(np.float32, copy=False)
    ly, hy, wy = _axis_weights(x.shape[1], h_out)
    lx, hx, wx = _axis_weights(x.shape[2], w_out)
    top_rows, bottom_rows = x[:, ly, :], x[:, hy, :]
    tl, tr = top_rows[:, :, lx], top_rows[:, :, hx]
    bl, br = bottom_rows[:, :, lx], bottom_rows[:, :, hx]
    top = tl + (tr - tl) * wx[None, None, :]
    bottom = bl + (br - bl) * wx[None, None, :]
    return (top + (bottom - top) * wy[None, :, None]).astype(np.float32, copy=False)


def to_rgb(images: np.ndarray, scale: float, offset: float, size: int = 32) -> np.ndarray:
    """uint8 [N,H,W] -> float32 [N,size,size,3]: resize, replicate grey to RGB, ``x*scale + offset``.

    Why: the backbones take square RGB inputs (MLPerf Tiny ResNet-8 32x32, MobileNetV1-VWW
    96x96) scaled as each was trained (tflite_fg.tasks.BACKBONES). Any grey size resizes
    (Fashion-MNIST is 28x28, scikit-learn's digits 8x8).
    """
    x = np.asarray(images)
    if x.ndim != 3 or 0 in x.shape[1:] or x.dtype != np.uint8:
        raise ValueError(f"to_rgb expects uint8 [N,H,W], got {x.dtype} {x.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    r = resize_bilinear(x, int(size))
    r = r * np.float32(scale) + np.float32(offset)
    return np.repeat(r[..., None], 3, axis=-1).astype(np.float32, copy=False)


def to_rgb32(images: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """``to_rgb(images, scale, offset, 32)``: the MLPerf Tiny ResNet-8's 32x32x3 input; it was
    trained on (x-128)/128, i.e. scale=1/128, offset=-1."""
    x = np.asarray(images)
    if x.ndim != 3 or 0 in x.shape[1:] or x.dtype != np.uint8:
        raise ValueError(f"to_rgb32 expects uint8 [N,H,W], got {x.dtype} {x.shape}")
    return to_rgb(x, scale, offset, 32)


def fewshot_split(labels: np.ndarray, shots_per_class: int, seed: int,
                  classes: Sequence[int] | None = None) -> np.ndarray:
    """Indices of exactly ``shots_per_class`` examples per class, sorted by class then index.

    Classes default to the sorted unique labels; the draw uses
    ``np.random.default_rng(seed)``, one ``choice`` per class in class order.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if shots_per_class <= 0:
        raise ValueError(f"shots_per_class must be positive, got {shots_per_class}")
    cls = np.unique(y) if classes is None else np.asarray(list(classes))
    rng = np.random.default_rng(seed)
    parts = []
    for c in cls:
        pool = np.flatnonzero(y == c)
        if pool.size < shots_per_class:
            raise ValueError(f"class {c} has only {pool.size} examples, "
                             f"fewer than shots_per_class={shots_per_class}")
        parts.append(np.sort(rng.choice(pool, size=shots_per_class, replace=False)))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def episode_split(labels: np.ndarray, ways: int, shots: int, queries: int | None,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ProtoNet-style episode: ``ways`` classes drawn from the labels present, then ``shots``
    support and ``queries`` query examples per class (None: all the rest), disjoint.

    Returns (classes, support indices, query indices); the episode's label of an example is the
    position of its class in ``classes``. One ``np.random.default_rng(seed)`` draws everything."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if ways < 1 or shots < 1 or (queries is not None and queries < 1):
        raise ValueError(f"ways={ways}, shots={shots}, queries={queries}: all must be >= 1")
    present = np.unique(y)
    if ways > present.size:
        raise ValueError(f"ways={ways}: only {present.size} classes present")
    rng = np.random.default_rng(seed)
    classes = np.sort(rng.choice(present, size=ways, replace=False))
    support, query = [], []
    for c in classes:
        pool = rng.permutation(np.flatnonzero(y == c))
        need = shots + (1 if queries is None else queries)
        if pool.size < need:
            raise ValueError(f"class {c} has {pool.size} examples; {shots} shots + "
                             f"{'at least 1' if queries is None else queries} queries need {need}")
        support.append(np.sort(pool[:shots]))
        query.append(np.sort(pool[shots:] if queries is None else pool[shots:shots + queries]))
    return classes, np.concatenate(support).astype(np.int64), np.concatenate(query).astype(np.int64)


def sample_indices(n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted seeded subset of ``range(n_total)`` of size ``n``, without replacement."""
    if not 0 <= n <= n_total:
        raise ValueError(f"cannot sample {n} of {n_total} without replacement")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=n, replace=False)).astype(np.int64)


def validate_batch(x: np.ndarray, y: np.ndarray | None = None, num_classes: int | None = None) -> None:
    """Raise ValueError on NaN/inf inputs, non-integer labels, or labels outside [0, num_classes).

    Why: a single NaN poisons a forward-gradient estimate silently; fail loudly instead.
    """
    xa = np.asarray(x)
    if xa.ndim == 0:
        raise ValueError("x must have a batch dimension, got a scalar")
    if np.issubdtype(xa.dtype, np.inexact):
        bad = ~np.isfinite(xa)
        if bad.any():
            n_nan, n_inf = int(np.isnan(xa).sum()), int(np.isinf(xa).sum())
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"x has {n_nan} NaN and {n_inf} inf values (first at index {first})")
    elif not (np.issubdtype(xa.dtype, np.integer) or xa.dtype == np.bool_):
        raise ValueError(f"x must be numeric, got dtype {xa.dtype}")
    if y is None:
        return
    ya = np.asarray(y)
    if not np.issubdtype(ya.dtype, np.integer):
        raise ValueError(f"labels must have an integer dtype, got {ya.dtype}")
    if ya.ndim != 1 or ya.shape[0] != xa.shape[0]:
        raise ValueError(f"labels must be 1-D with one label per example: x {xa.shape}, y {ya.shape}")
    if ya.size and ya.min() < 0:
        raise ValueError(f"labels must be >= 0, got min {ya.min()}")
    if num_classes is not None and ya.size and ya.max() >= num_classes:
        raise ValueError(f"labels must be < num_classes={num_classes}, got max {ya.max()}")


def check_labels(y: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    """Integer labels, one per example, in [0, num_classes) -> int64 (the runtime and both float
    baselines check labels the same way, with the same messages)."""
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be an integer array of shape ({n},); got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels out of range [0, {num_classes}): min {y.min()}, max {y.max()}")
    return y.astype(np.int64)


def check_float_batch(x: np.ndarray, y: np.ndarray | None, input_shape: Sequence[int],
                      num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Preprocessed float images (n >= 1, *input_shape) -> float32, and labels (check_labels) -> int64."""
    x, input_shape = np.asarray(x), tuple(input_shape)
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != input_shape or not len(x):
        raise ValueError(f"input batch has shape {x.shape}; the model expects (batch >= 1, "
                         f"{', '.join(map(str, input_shape))})")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"input batch has dtype {x.dtype}; give preprocessed float images (not the int8 batch)")
    if not np.isfinite(x).all():
        raise ValueError("input batch contains NaN or inf values")
    return x.astype(np.float32, copy=False), None if y is None else check_labels(y, len(x), num_classes)
