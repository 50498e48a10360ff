"""Atomic, pickle-free, self-checking checkpoints of a TrainState.

One .npz (np.savez, loaded with allow_pickle=False) holds the int8 params,
step and forward_passes, the leaves of the estimator/transform states and a
JSON header: format version, user meta, the state tree structures and a
sha256 over header and payload. Written to a temp file in the target
directory, fsynced, then os.replace'd, so a crash never leaves a torn file.
No randomness is stored: it all derives from (seed, step, index).
"""

from __future__ import annotations

import hashlib
import io
import importlib
import json
import os
import zipfile
import zlib
from typing import Any

import numpy as np

from tflite_fg.atomic import atomic_write
from tflite_fg.errors import UserError
from tflite_fg.trainer import TrainState

FORMAT = "tflite-fg-checkpoint"
VERSION = 1
_HEADER = "header_json"
_FIX = "Delete or move the file and resume from an older checkpoint, or restart training."


class CheckpointError(UserError):
    """A checkpoint is unreadable, corrupt, or belongs to a different run/model."""


def _flatten(tree: Any, leaves: list[np.ndarray]) -> Any:
    """JSON description of a state tree; arrays go to `leaves` (referenced by index)."""
    if isinstance(tree, (np.ndarray, np.generic)):
        leaves.append(np.asarray(tree))
        return {"a": len(leaves) - 1}
    if isinstance(tree, bool) or tree is None or isinstance(tree, str):
        return {"v": tree}
    if isinstance(tree, (int, float)):
        return {"i" if isinstance(tree, int) else "f": tree}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        cls = type(tree)
        return {"nt": f"{cls.__module__}:{cls.__qualname__}", "c": [_flatten(x, leaves) for x in tree]}
    if isinstance(tree, (tuple, list)):
        return {"t" if isinstance(tree, tuple) else "l": [_flatten(x, leaves) for x in tree]}
    raise TypeError(f"cannot checkpoint state of type {type(tree).__name__}")


def _named_tuple(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not (module == "tflite_fg" or module.startswith("tflite_fg.")):
        raise CheckpointError(f"state type {name!r} is not a tflite_fg type. {_FIX}")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"state type {name!r} no longer exists ({e}); the checkpoint is from "
                              "an incompatible version of tflite_fg. Restart training.") from e
    if not (isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")):
        raise CheckpointError(f"state type {name!r} is not a NamedTuple. {_FIX}")
    return obj


def _unflatten(node: Any, leaves: list[np.ndarray]) -> Any:
    if "a" in node:
        return leaves[node["a"]]
    for key in ("v", "i", "f"):
        if key in node:
            return node[key]
    if "nt" in node:
        return _named_tuple(node["nt"])(*(_unflatten(x, leaves) for x in node["c"]))
    if "t" in node:
        return tuple(_unflatten(x, leaves) for x in node["t"])
    return [_unflatten(x, leaves) for x in node["l"]]


def _digest(header: dict, arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the canonical header JSON (without the digest) and every array's
    name, dtype, shape and C-order bytes, in name order."""
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _differences(stored: dict, expected: dict, prefix: str = "",
                 absent_means: dict | None = None) -> list[tuple[str, Any, Any]]:
    """(dotted key, stored, expected) for every expected leaf the stored meta does not match; a key
    the stored meta lacks stands for absent_means[dotted key] when given (a setting added later)."""
    out, absent_means = [], absent_means or {}
    for key, want in expected.items():
        missing = absent_means.get(f"{prefix}{key}", "<missing>")
        have = stored.get(key, missing) if isinstance(stored, dict) else missing
        if isinstance(want, dict) and isinstance(have, dict):
            out += _differences(have, want, f"{prefix}{key}.", absent_means)
        elif have != want:
            out.append((f"{prefix}{key}", have, want))
    return out


def save_checkpoint(path: str | os.PathLike, state: TrainState, meta: dict) -> None:
    """Atomically write `state` and JSON-serialisable `meta` to `path` (exact name, no suffix added)."""
    path = os.fspath(path)
    arrays = {f"param_{i}": np.asarray(p) for i, p in enumerate(state.params)}
    arrays["step"] = np.array(state.step, dtype=np.int64)
    arrays["forward_passes"] = np.array(state.forward_passes, dtype=np.int64)
    est_leaves: list[np.ndarray] = []
    tx_leaves: list[np.ndarray] = []
    header = {
        "format": FORMAT, "version": VERSION, "meta": meta, "num_params": len(state.params),
        "estimator_state": _flatten(state.estimator_state, est_leaves),
        "transform_state": _flatten(state.transform_state, tx_leaves),
    }
    arrays.update({f"estimator_leaf_{i}": a for i, a in enumerate(est_leaves)})
    arrays.update({f"transform_leaf_{i}": a for i, a in enumerate(tx_leaves)})
    header = json.loads(json.dumps(header, allow_nan=False))  # hash exactly what a load will see
    header_json = json.dumps({**header, "sha256": _digest(header, arrays)}, sort_keys=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{_HEADER: np.array(header_json)})
    atomic_write(path, buffer.getvalue())


def _read(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt: {e}). {_FIX}") from e
    if _HEADER not in arrays:
        raise CheckpointError(f"{path} is an .npz but not a tflite-fg checkpoint (no header). {_FIX}")
    try:
        header = json.loads(str(arrays.pop(_HEADER)))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} has a corrupt header ({e}). {_FIX}") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
        raise CheckpointError(f"{path} is not a version-{VERSION} tflite-fg checkpoint. {_FIX}")
    return header, arrays


def load_checkpoint(path: str | os.PathLike, expected_meta: dict | None = None,
                    absent_means: dict | None = None) -> tuple[TrainState, dict]:
    """Read, verify and rebuild a TrainState; every key of `expected_meta` must equal the
    stored meta (compared after a JSON round trip, so tuples match lists). absent_means: what a
    dotted key missing from an older checkpoint's meta stands for (a config field's default).

    Raises CheckpointError (a ValueError) on any corrupt or mismatched file and
    FileNotFoundError if there is none.
    """
    path = os.fspath(path)
    header, arrays = _read(path)
    stored = header.pop("sha256", None)
    try:
        actual = _digest(header, arrays)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has an unreadable payload ({e}). {_FIX}") from e
    if stored != actual:
        raise CheckpointError(f"{path} failed its sha256 check (stored {stored}, computed {actual}): "
                              f"the file was modified or corrupted. {_FIX}")
    meta = header["meta"]
    if expected_meta is not None:
        wrong = _differences(meta, json.loads(json.dumps(expected_meta)), "",
                             json.loads(json.dumps(absent_means or {})))
        if wrong:
            details = "; ".join(f"{k}: checkpoint has {s!r}, this run has {e!r}" for k, s, e in wrong)
            raise CheckpointError(f"{path} belongs to a different run or model ({details}). Resume with the "
                                  "same settings, or start a fresh run in another directory.")
    try:
        params = [arrays[f"param_{i}"] for i in range(header["num_params"])]
        est = [arrays[f"estimator_leaf_{i}"] for i in range(sum(k.startswith("estimator_leaf_") for k in arrays))]
        tx = [arrays[f"transform_leaf_{i}"] for i in range(sum(k.startswith("transform_leaf_") for k in arrays))]
        state = TrainState(params, _unflatten(header["estimator_state"], est),
                           _unflatten(header["transform_state"], tx),
                           int(arrays["step"]), int(arrays["forward_passes"]))
    except (KeyError, IndexError, TypeError) as e:
        raise CheckpointError(f"{path} has an inconsistent structure ({e!r}). {_FIX}") from e
    bad = [i for i, p in enumerate(params) if p.dtype not in (np.int8, np.int16, np.float32)]
    if bad:
        raise CheckpointError(f"{path}: params {bad} are not int8/int16/float32 master weights. {_FIX}")
    return state, meta
