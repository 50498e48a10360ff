"""The default task's converted model, converted once into the cache (tools/train.py, export_java_data.py)."""
import pathlib
from typing import Callable

from absl import flags

from tflite_fg import assets, runs, tasks


def define_task_flags() -> None:
    """The default few-shot task's flags (--shots, --n_test, --data_seed, --trainable)."""
    flags.DEFINE_integer("shots", 20, "Default task: labelled training images per class.", lower_bound=1)
    flags.DEFINE_integer("n_test", 1000, "Default task: held-out test images.", lower_bound=1)
    flags.DEFINE_integer("data_seed", 0, "Default task: seed of the support/test split.", lower_bound=0)
    flags.DEFINE_string("trainable", "last:4", "Default task: trainable layers of the converted model (converted "
                        "once, when no current conversion is cached).")


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
