"""Build a few-shot task's convertible model: a pretrained MLPerf Tiny backbone (ResNet-8 by default,
or MobileNetV1-VWW; tflite_fg.tasks.BACKBONES) with a prototype head (Fashion-MNIST, digits)."""
from __future__ import annotations

import os

import numpy as np

from converters import graph_surgery, pipeline
from converters.keras_compat import keras
from tflite_fg import assets, data, tasks


def load_source_model(name: str = tasks.MODEL_NAME, cache: str | os.PathLike | None = None):
    """The pretrained Keras model of asset ``name`` (tflite_fg.assets.MODEL_NAMES), as trained."""
    return keras.models.load_model(str(assets.model_h5_path(name, cache)), compile=False)


def load_backbone(backbone: str = tasks.DEFAULT_BACKBONE, cache: str | os.PathLike | None = None):
    """The pretrained Keras model of ``backbone`` (one of tflite_fg.tasks.BACKBONES)."""
    return load_source_model(tasks.get_backbone(backbone).model_name, cache)


def prototype_model(model, x_support: np.ndarray, y_support: np.ndarray, num_classes: int):
    """Fold BN, then replace the head by the ProtoNet classifier of the support set
    (w_c = 2 p_c, b_c = -||p_c||^2), so "zero-shot" is the prototype classifier."""
    folded = pipeline.prepare_float_model(model)
    features = graph_surgery.feature_model(folded).predict(x_support, batch_size=64, verbose=0)
    return pipeline.prepare_float_model(folded, graph_surgery.prototype_head(features, y_support, num_classes))


# Per task: class names.
_TASK_CLASSES = {
    "fmnist": data.FASHION_MNIST_CLASSES,
    "digits": tasks.DIGITS_CLASSES,
}


def _check_task_fits(task: tasks.FewShotTask, backbone: str) -> None:
    bb = tasks.get_backbone(backbone)
    if task.backbone != backbone:
        raise ValueError(f"the task's images are prepared for backbone {task.backbone!r}, not {backbone!r}; "
                         f"load it with backbone={backbone!r}")
    expected = (bb.input_size, bb.input_size, 3)
    if tuple(task.x_support.shape[1:]) != expected:
        raise ValueError(f"backbone {backbone!r} takes {expected} inputs; the task's images are "
                         f"{tuple(task.x_support.shape[1:])} (load it with size=None)")


def convert_fewshot(task_name: str, task: tasks.FewShotTask, trainable: str = "last:4", headroom: float = 1.0,
                    cache: str | os.PathLike | None = None, backbone: str = tasks.DEFAULT_BACKBONE,
                    output_headroom: float = pipeline.OUTPUT_HEADROOM) -> tuple[bytes, "pipeline.Metadata"]:
    """``backbone`` (one of tflite_fg.tasks.BACKBONES) with the prototype head of ``task``'s support
    set, as int8 .tflite bytes + metadata. ``task_name`` (one of tflite_fg.tasks.TASKS) picks the
    class names; the task must have been loaded for the same backbone (its input size and scaling),
    and the metadata records the backbone and the preprocessing."""
    if task_name not in _TASK_CLASSES:
        raise ValueError(f"unknown task {task_name!r}; choices: {', '.join(tasks.TASKS)}")
    bb = tasks.get_backbone(backbone)
    _check_task_fits(task, backbone)
    class_names = _TASK_CLASSES[task_name]
    model = prototype_model(load_backbone(backbone, cache), task.x_support, task.y_support, len(class_names))
    cfg = pipeline.ConvertConfig(
        trainable=trainable, headroom=headroom, output_headroom=output_headroom, input_range=bb.input_range,
        class_names=class_names, preprocessing=tasks.preprocessing(task_name, backbone),
        source={"model": bb.description, "backbone": backbone,
                "task": f"{task_name}-fewshot", "shots": task.shots, "seed": task.seed})
    return pipeline.convert_keras_model(model, cfg, task.x_support)


def convert_fmnist_fewshot(task: tasks.FewShotTask, trainable: str = "last:4", headroom: float = 1.0,
                           cache: str | os.PathLike | None = None, backbone: str = tasks.DEFAULT_BACKBONE,
                           output_headroom: float = pipeline.OUTPUT_HEADROOM) -> tuple[bytes, "pipeline.Metadata"]:
    """The default task's conversion: ``convert_fewshot("fmnist", ...)``."""
    return convert_fewshot("fmnist", task, trainable, headroom, cache, backbone, output_headroom)
