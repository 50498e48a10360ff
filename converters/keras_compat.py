"""The one place that sets up Keras 2 for tfmot (tfmot needs tf_keras, not Keras 3).

Import TensorFlow, tf_keras and tfmot from here so that TF_USE_LEGACY_KERAS is set before
TensorFlow is first imported (tfmot's own compat.py does the same).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

__all__ = ["tf", "keras", "tfmot"]
