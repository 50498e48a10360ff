"""The default task's converted model, converted once into the cache (tools/train.py, export_java_data.py)."""
import pathlib
from typing import Callable

from tflite_fg import assets, runs, tasks


def default_model(task: str, shots: int, seed: int, trainable: str, cache: str | None,
                  log: Callable[[str], None] = print) -> pathlib.Path:
    """Fetch the assets, and convert the few-shot task's model unless a current conversion is cached."""
    assets.ensure_assets(cache, log=log)
    path = runs.default_model_path(task, shots, seed, trainable, cache)
    if not runs.is_current_conversion(path):
        log(f"converting the default model to {path} (once) ...")
        from converters import pipeline, tasks as ctasks  # TensorFlow only on this path
        t = tasks.load_task(task, shots, 1, seed, cache)
        pipeline.save(path, *ctasks.convert_fewshot(task, t, trainable, cache=cache))
    return path
