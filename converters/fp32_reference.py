"""The paper's "FF fp32" baseline: the same zeroth-order estimators on the float Keras model.

Training reuses the runtime unchanged (tflite_fg.trainer with precision.float_space(), the estimator
and transform from tflite_fg.build): only the loss function differs. Params are float32 in the int8
model's units (w / Dw, TFLite native layout), so eps_lsb and lr mean the same as for the int8 run and
the float and int8 runs start from the same point up to the int8 rounding (<= 0.5 LSB).

The float model must be the one the int8 model was converted from (BN folded, prototype head), e.g.
converters.tasks.prototype_model(...). Lives in converters/ because it needs TensorFlow.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from converters import graph_surgery, qat
from converters.keras_compat import keras, tf
from tflite_fg import build, data, losses, precision, rng, trainer
from tflite_fg.config import TrainConfig
from tflite_fg.estimators import Estimator, LossFn
from tflite_fg.metadata import Metadata, TrainableTensor
from tflite_fg.tasks import FewShotTask
from tflite_fg.updates import GradientTransformation

Params = Sequence[np.ndarray]
_OPS = {"Conv2D": keras.layers.Conv2D, "DepthwiseConv2D": keras.layers.DepthwiseConv2D, "Dense": keras.layers.Dense}


def _kernel_variable(model, t: TrainableTensor):
    """The Keras kernel variable of a trainable tensor, after checking name, op type and layout."""
    try:
        layer = model.get_layer(t.layer)
    except ValueError:
        names = [l.name for l in model.layers if isinstance(l, tuple(_OPS.values()))]
        raise ValueError(f"trainable layer {t.layer!r} is not in the float model (weight layers: {names}); "
                         "use the float model the int8 model was converted from") from None
    # Exact type: Conv2D and DepthwiseConv2D are related classes in some Keras versions.
    if t.op not in _OPS or type(layer).__name__ != t.op:
        raise ValueError(f"layer {t.layer!r} is a {type(layer).__name__} in the float model but {t.op} in the metadata")
    var = getattr(layer, qat.kernel_attr(layer))
    native = qat.keras_to_native(t.op, np.zeros(var.shape, np.float32)).shape
    if tuple(native) != tuple(t.shape):
        raise ValueError(f"layer {t.layer!r}: float kernel {tuple(var.shape)} is {tuple(native)} in native layout, "
                         f"metadata says {t.shape}")
    return var


def _own_copy(model):
    """A clone with the same weights: loss() assigns kernels, and the caller's model must not change."""
    clone = keras.models.clone_model(graph_surgery.as_functional(model))
    clone.set_weights(model.get_weights())
    return clone


def _inbound_names(layer) -> list[str]:
    if isinstance(layer, keras.layers.InputLayer):
        return []
    inbound = layer._inbound_nodes[0].inbound_layers
    return [l.name for l in (inbound if isinstance(inbound, (list, tuple)) else [inbound])]


def _consumers(model, name: str) -> list[str]:
    return [l.name for l in model.layers if name in _inbound_names(l)]


def split_at_trainable(model, trainable: Sequence[str]):
    """(trunk, tail): trunk maps x to the frozen activations the trainable part reads (the cut), tail
    maps the cut to the logits and holds every trainable layer. The trunk never changes during
    training, so its output is computed once per data set; with the head trainable the tail is one
    Dense layer. trunk is None when the cut is the input itself."""
    downstream: set[str] = set(trainable)
    for layer in model.layers:  # functional models list layers in topological order
        if any(n in downstream for n in _inbound_names(layer)):
            downstream.add(layer.name)
    if model.layers[-1].name not in downstream:
        raise ValueError(f"the output layer {model.layers[-1].name!r} does not depend on any trainable layer")
    cut = [l.name for l in model.layers
           if l.name not in downstream and any(c in downstream for c in _consumers(model, l.name))]
    tensors = {n: keras.Input(model.get_layer(n).output.shape[1:], name=f"cut_{n}") for n in cut}
    tail_inputs = [tensors[n] for n in cut]
    for layer in model.layers:
        if layer.name in downstream:
            srcs = [tensors[n] for n in _inbound_names(layer)]
            tensors[layer.name] = layer(srcs if len(srcs) > 1 else srcs[0])
    tail = keras.Model(tail_inputs, tensors[model.layers[-1].name])
    if cut == [model.layers[0].name]:
        return None, tail
    return keras.Model(model.inputs, [model.get_layer(n).output for n in cut]), tail


class FloatReference:
    """The float model with its trainable kernels as inputs, in int8-LSB units and native layout."""

    def __init__(self, model, meta: Metadata, eval_batch_size: int = 256):
        if not meta.trainable:
            raise ValueError("metadata lists no trainable tensors")
        if tuple(model.input_shape[1:]) != tuple(meta.input_shape):
            raise ValueError(f"float model input {tuple(model.input_shape[1:])} != metadata input {meta.input_shape}")
        if tuple(model.output_shape[1:]) != (meta.num_classes,):
            raise ValueError(f"float model output {tuple(model.output_shape[1:])} != ({meta.num_classes},) classes")
        self.meta = meta
        self.trainable = meta.trainable
        self.eval_batch_size = eval_batch_size
        self.model = _own_copy(model)
        self._vars = [_kernel_variable(self.model, t) for t in self.trainable]
        self._initial = [qat.keras_to_native(t.op, v.numpy()) / np.float32(t.scale)
                         for t, v in zip(self.trainable, self._vars)]
        trunk, tail = split_at_trainable(self.model, [t.layer for t in self.trainable])
        self._trunk = None if trunk is None else self._compile_trunk(trunk)
        self._tail = self._compile_tail(tail)

    def _compile_trunk(self, trunk) -> Callable:
        @tf.function(input_signature=[tf.TensorSpec((None, *self.meta.input_shape), tf.float32)])
        def features(x):
            out = trunk(x, training=False)
            return list(out) if isinstance(out, (list, tuple)) else [out]

        return features

    def _compile_tail(self, tail) -> Callable:
        """One tf.function over (cut features, kernels): fixed signature, so it is traced once for every
        batch size. It assigns the kernels (x Dw, Keras layout) to the layers, then runs the tail."""
        n_cut = len(tail.inputs)
        specs = [tf.TensorSpec(i.shape, tf.float32) for i in tail.inputs]
        specs += [tf.TensorSpec(t.shape, tf.float32) for t in self.trainable]
        scales = [tf.constant(t.scale, tf.float32) for t in self.trainable]

        @tf.function(input_signature=specs)
        def logits(*args):
            features, kernels = args[:n_cut], args[n_cut:]
            for t, var, k, s in zip(self.trainable, self._vars, kernels, scales):
                var.assign(qat.native_to_keras(t.op, k * s, var.shape))
            return tail(list(features) if n_cut > 1 else features[0], training=False)

        return logits

    def _features(self, x: np.ndarray) -> list[np.ndarray]:
        """The frozen trunk's output for checked float inputs, batched (x itself if nothing is frozen)."""
        if self._trunk is None:
            return [x]
        parts = [[f.numpy() for f in self._trunk(x[i:i + self.eval_batch_size])]
                 for i in range(0, len(x), self.eval_batch_size)]
        return [np.concatenate(fs) for fs in zip(*parts)]

    def initial_params(self) -> list[np.ndarray]:
        """The float kernels / Dw in native layout, unrounded (the float baseline's start)."""
        return [p.astype(np.float32, copy=True) for p in self._initial]

    def check_params(self, params: Params) -> list[np.ndarray]:
        if len(params) != len(self.trainable):
            raise ValueError(f"expected {len(self.trainable)} trainable tensors, got {len(params)}")
        out = []
        for p, t in zip(params, self.trainable):
            p = np.asarray(p)
            if tuple(p.shape) != t.shape or not np.issubdtype(p.dtype, np.number) or np.iscomplexobj(p):
                raise ValueError(f"trainable tensor {t.layer!r} must be real {t.shape} (native layout); "
                                 f"got {p.dtype} {p.shape}")
            p = p.astype(np.float32)
            if not np.isfinite(p).all():
                raise ValueError(f"trainable tensor {t.layer!r} contains NaN or inf")
            out.append(p)
        return out

    def check_inputs(self, x: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Preprocessed float images (n, *input_shape) and integer labels (n,) in [0, num_classes)."""
        return data.check_float_batch(x, y, self.meta.input_shape, self.meta.num_classes)

    def _from_features(self, features: Sequence[np.ndarray], params: list[np.ndarray]) -> np.ndarray:
        return self._tail(*features, *params).numpy()

    def logits(self, x: np.ndarray, params: Params | None = None) -> np.ndarray:
        """Float logits, batched; params=None: the initial float kernels."""
        x, _ = self.check_inputs(x)
        params = self._initial if params is None else self.check_params(params)
        out = []
        for i in range(0, len(x), self.eval_batch_size):
            out.append(self._from_features(self._features(x[i:i + self.eval_batch_size]), params))
        return np.concatenate(out)

    def loss(self, params: Params, x: np.ndarray, y: np.ndarray) -> float:
        """Mean softmax cross-entropy (tflite_fg.losses, as for the int8 model) of one batch."""
        x, y = self.check_inputs(x, y)
        return losses.softmax_cross_entropy(self._from_features(self._features(x), self.check_params(params)), y)

    def accuracy(self, x: np.ndarray, y: np.ndarray, params: Params | None = None) -> float:
        x, y = self.check_inputs(x, y)
        return float(np.mean(self.logits(x, params).argmax(axis=1) == y))

    def minibatch_loss(self, x: np.ndarray, y: np.ndarray, seed: int, batch_size: int) -> Callable[[int], LossFn]:
        """make_loss_fn(step): the loss on the batch tflite_fg.objective.minibatch_loss picks for the int8
        model. The frozen trunk runs once over all of x here; each loss call runs only the tail."""
        x, y = self.check_inputs(x, y)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        batch_size = min(int(batch_size), len(x))
        features = self._features(x)

        def make(step: int) -> LossFn:
            idx = rng.minibatch_indices(seed, step, len(x), batch_size)
            fb, yb = [f[idx] for f in features], y[idx]
            return lambda params: losses.softmax_cross_entropy(self._from_features(fb, self.check_params(params)), yb)

        return make


def load_default_reference(task: FewShotTask, meta: Metadata, cache: str | os.PathLike | None = None) -> FloatReference:
    """The float model the default Fashion-MNIST few-shot task converts (same support set, same head)."""
    from converters import tasks as ctasks
    model = ctasks.prototype_model(ctasks.load_source_model(cache=cache), task.x_support, task.y_support,
                                   meta.num_classes)
    return FloatReference(model, meta)


def int8_grid(params: Params) -> list[np.ndarray]:
    """Float LSB params rounded onto the int8 grid: what masks need as 'initial int8 kernels'."""
    return [np.clip(np.rint(p), -127, 127).astype(np.int8) for p in params]


class FloatTraining(NamedTuple):
    """The runtime's own pieces, wired for precision="fp32"; run with trainer.fit(...) or fit()."""

    state: trainer.TrainState
    estimator: Estimator
    transform: GradientTransformation
    space: precision.WeightSpace
    make_loss_fn: Callable[[int], LossFn]
    cfg: TrainConfig


def setup_training(ref: FloatReference, cfg: TrainConfig, x: np.ndarray, y: np.ndarray,
                   params: Params | None = None, initial_int8: Params | None = None) -> FloatTraining:
    """State, estimator, transform and loss for an fp32 run; params default to ref.initial_params(),
    initial_int8 (for masks) to their int8 rounding."""
    if cfg.precision != "fp32":
        raise ValueError(f"the float reference trains with precision='fp32', got {cfg.precision!r}")
    params = ref.initial_params() if params is None else ref.check_params(params)
    space = precision.float_space()
    est = build.build_estimator(cfg, initial_int8=int8_grid(params) if initial_int8 is None else initial_int8,
                                space=space)
    tx = build.build_transform(cfg)
    state = trainer.init_state(params, est, tx, space)
    return FloatTraining(state, est, tx, space, ref.minibatch_loss(x, y, cfg.seed, cfg.batch_size), cfg)


def fit(run: FloatTraining) -> Iterator[tuple[trainer.TrainState, dict]]:
    """trainer.fit over run's pieces until run.cfg.steps (same seed for batches and perturbations)."""
    return trainer.fit(run.state, run.make_loss_fn, run.estimator, run.transform, run.cfg.seed, run.cfg.steps,
                       run.space)
