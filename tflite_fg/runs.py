"""Where the tasks' artifacts live, and the small records a run writes (no printing here)."""
from __future__ import annotations

import json
import os
import pathlib
import resource

from tflite_fg import assets
from tflite_fg.atomic import atomic_write
from tflite_fg.metadata import CONVERTER_VERSION, read_metadata
from tflite_fg.tasks import TASKS


def default_model_path(task: str, shots: int, seed: int, trainable: str,
                       cache: str | os.PathLike | None = None) -> pathlib.Path:
    """Cached conversion of ``task``'s (one of tasks.TASKS) ResNet-8: ``<task>_resnet8_k<shots>_s<seed>_<tag>``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choices: {', '.join(TASKS)}")
    tag = trainable.replace(":", "").replace(",", "-")
    return assets.cache_dir(cache) / "converted" / f"{task}_resnet8_k{shots}_s{seed}_{tag}.tflite"


def is_current_conversion(path: str | os.PathLike) -> bool:
    """A cached conversion exists and was written by this converter version (else: convert again)."""
    try:
        return pathlib.Path(path).exists() and read_metadata(path).source.get("converter_version") == CONVERTER_VERSION
    except (FileNotFoundError, ValueError):
        return False


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_json(path: str | os.PathLike, obj: dict) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
