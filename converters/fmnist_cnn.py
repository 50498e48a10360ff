"""A small CNN pretrained by backprop on clean Fashion-MNIST: the fixed model of the fmnist-c benchmark.

Why our own model: the benchmark adapts a network to corrupted Fashion-MNIST, so the network must
have been trained on the clean images (the MLPerf Tiny models never saw them). Its decoder is three
Dense layers (``dec1``, ``dec2``, ``logits``) so "last:1" and "last:3" are natural trainable sets.
It uses only the layers the ResNet-8 path already converts (Conv2D, BatchNormalization, ReLU
Activation, AveragePooling2D, Flatten, Dense), so ``converters.pipeline`` takes it unchanged.

Training is deterministic (seeded initializers, seeded shuffling, op determinism): the weights are
a function of ``RECIPE`` and the TensorFlow build. They are cached under
``<cache>/models/fmnist_cnn/`` with a JSON stamp; ``tools/pretrain_fmnist_cnn.py`` regenerates them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import tempfile
import time
from typing import Callable, Iterator

import numpy as np

from converters import pipeline
from converters.keras_compat import keras, tf
from tensorflow.python.framework import config as tf_config  # noqa: E402  (after keras_compat's env setup)
from tflite_fg import assets, data, fmnist_c
from tflite_fg.atomic import atomic_write

NAME = "fmnist_cnn"
DECODER = ("dec1", "dec2", "logits")
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything the pretrained weights depend on (besides the TensorFlow build)."""
    seed: int = 0
    epochs: int = 12
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    schedule: str = "cosine"          # cosine decay to 0 over all steps
    augment: str = "none"
    n_train: int | None = None        # None: all 60,000 training images; else the first n of a seeded draw

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs}, batch_size={self.batch_size}: both must be >= 1")
        if self.optimizer != "adam" or self.schedule != "cosine" or self.augment != "none":
            raise ValueError(f"optimizer={self.optimizer!r}, schedule={self.schedule!r}, augment={self.augment!r}: "
                             "only 'adam', 'cosine', 'none' are implemented")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate}: must be > 0")
        if self.n_train is not None and not 1 <= self.n_train <= 60000:
            raise ValueError(f"n_train={self.n_train}: must be in [1, 60000] or None (all)")


RECIPE = Recipe()


def build_model(seed: int = 0):
    """Three conv blocks (16, 32/2, 64/2 channels) -> 7x7 average pool -> Dense 64, 64, 10 (logits).

    Each initializer has its own seed, so the initial weights depend on ``seed`` only."""
    seeds = iter(range(seed * 100, seed * 100 + 100))

    def init():
        return keras.initializers.GlorotUniform(seed=next(seeds))

    x = inputs = keras.Input((28, 28, 1), name="input")
    for i, (filters, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                                kernel_initializer=init(), name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"relu{i}")(x)
    x = keras.layers.AveragePooling2D(7, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", kernel_initializer=init(), name=DECODER[0])(x)
    x = keras.layers.Dense(64, activation="relu", kernel_initializer=init(), name=DECODER[1])(x)
    logits = keras.layers.Dense(10, kernel_initializer=init(), name=DECODER[2])(x)
    return keras.Model(inputs, logits, name=NAME)


def _train_data(recipe: Recipe, cache) -> tuple[np.ndarray, np.ndarray]:
    images, labels = data.load_fashion_mnist("train", cache)
    if recipe.n_train is not None:
        idx = np.random.default_rng(recipe.seed).permutation(len(images))[:recipe.n_train]
        images, labels = images[idx], labels[idx]
    return fmnist_c.preprocess(images), labels.astype(np.int64)


@contextlib.contextmanager
def op_determinism() -> Iterator[None]:
    """TensorFlow's deterministic kernels while training, then the process's previous setting again
    (the switch is process-wide; other code in the same process, e.g. a test session, keeps its own)."""
    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()


def train(recipe: Recipe = RECIPE, cache: str | os.PathLike | None = None, log: Log = print):
    """Backprop on clean Fashion-MNIST train; bit-identical weights for the same recipe and TF build."""
    with op_determinism():
        return _fit(recipe, cache, log)


def _fit(recipe: Recipe, cache, log: Log):
    keras.utils.set_random_seed(recipe.seed)
    x, y = _train_data(recipe, cache)
    model = build_model(recipe.seed)
    steps = recipe.epochs * -(-len(x) // recipe.batch_size)
    lr = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, steps)
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t0 = time.time()

    def on_epoch_end(epoch, logs):
        log(f"  epoch {epoch + 1}/{recipe.epochs}: loss {logs['loss']:.4f}, "
            f"train accuracy {logs['accuracy']:.4f} ({time.time() - t0:.0f}s)")

    batches = (tf.data.Dataset.from_tensor_slices((x, y))
               .shuffle(len(x), seed=recipe.seed, reshuffle_each_iteration=True).batch(recipe.batch_size))
    model.fit(batches, epochs=recipe.epochs, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)])
    return model


def accuracy(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Float Keras accuracy on uint8 images [N,28,28]."""
    logits = model.predict(fmnist_c.preprocess(images), batch_size=batch_size, verbose=0)
    return float((logits.argmax(axis=1) == np.asarray(labels)).mean())


def weights_path(cache: str | os.PathLike | None = None) -> pathlib.Path:
    return assets.cache_dir(cache) / "models" / NAME / f"{NAME}.h5"


def stamp_path(cache: str | os.PathLike | None = None) -> pathlib.Path:
    return weights_path(cache).with_suffix(".json")


def _save(model, path: pathlib.Path, stamp_file: pathlib.Path, stamp: dict) -> None:
    """.h5 then stamp, each written atomically (Keras writes the .h5 to a scratch file first)."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = pathlib.Path(tmp) / path.name
        model.save(scratch, save_format="h5", include_optimizer=False)
        h5 = scratch.read_bytes()
    atomic_write(path, h5)
    stamp = {**stamp, "sha256": hashlib.sha256(h5).hexdigest()}
    atomic_write(stamp_file, (json.dumps(stamp, indent=2) + "\n").encode())


def _cached(cache, recipe: Recipe) -> tuple[bool, str]:
    """(usable, why not): the stamp must hold this recipe and the .h5's sha256."""
    path, stamp = weights_path(cache), stamp_path(cache)
    if not path.exists() or not stamp.exists():
        return False, f"no cached weights at {path}"
    try:
        info = json.loads(stamp.read_text())
    except (OSError, ValueError) as e:
        return False, f"unreadable stamp {stamp} ({e})"
    if info.get("recipe") != dataclasses.asdict(recipe):
        return False, f"the recipe changed (cached {info.get('recipe')})"
    if info.get("sha256") != assets.sha256_file(path):
        return False, f"{path} does not match the sha256 in its stamp"
    return True, ""


def load_or_train(cache: str | os.PathLike | None = None, log: Log = print, force: bool = False):
    """The pretrained model: from the cache when its stamp holds RECIPE, else trained (and cached)."""
    ok, why = (False, "--force") if force else _cached(cache, RECIPE)
    path = weights_path(cache)
    if ok:
        return keras.models.load_model(str(path), compile=False)
    assets.ensure_assets(cache, which=("fashion_mnist",))
    log(f"training {NAME} ({why}); {RECIPE}")
    t0 = time.time()
    model = train(RECIPE, cache, log)
    seconds = time.time() - t0
    acc = accuracy(model, *data.load_fashion_mnist("test", cache))
    log(f"trained {NAME} in {seconds:.0f}s: clean test accuracy {acc:.4f}; writing {path}")
    _save(model, path, stamp_path(cache), {"recipe": dataclasses.asdict(RECIPE), "clean_test_accuracy": acc,
                        "train_seconds": round(seconds, 1), "tf_version": tf.__version__,
                        "params": int(model.count_params())})
    return keras.models.load_model(str(path), compile=False)


def read_stamp(cache: str | os.PathLike | None = None) -> dict:
    return json.loads(stamp_path(cache).read_text())


def convert(model, trainable: str = "last:3", representative: np.ndarray | None = None,
            cache: str | os.PathLike | None = None, n_representative: int = 500):
    """int8 .tflite bytes + metadata of ``model`` with ``trainable`` layers ("last:1" = logits,
    "last:3" = the decoder). Calibrated on ``representative`` (preprocessed float), by default the
    first ``n_representative`` clean training images."""
    if representative is None:
        representative = fmnist_c.preprocess(data.load_fashion_mnist("train", cache)[0][:n_representative])
    cfg = pipeline.ConvertConfig(
        trainable=trainable, input_range=fmnist_c.INPUT_RANGE, class_names=fmnist_c.CLASSES,
        preprocessing=dict(fmnist_c.PREPROCESSING),
        source={"model": NAME, "recipe": dataclasses.asdict(RECIPE), "task": "fmnist-c"})
    return pipeline.convert_keras_model(pipeline.prepare_float_model(model), cfg, representative)
