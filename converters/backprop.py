"""Keras backprop reference for the benchmark: the network FF trains, trained by gradient descent.

Same network (the BN-folded float model with its prototype head, as converters.tasks.prototype_model
returns it, or the tfmot QAT model the int8 graph is converted from), same trainable layers, same
mini-batches (tflite_fg.rng.minibatch_indices(seed, step, n, batch_size), as
tflite_fg.objective.minibatch_loss draws them for FF), so the two can be compared step for step and
second for second.

- ``kind="fp32"``: the float Keras model. ``kind="qat"``: the calibrated tfmot QAT model of
  converters.qat (the trainable kernels fake-quantized per tensor on the fixed grid of the int8
  model, the frozen layers per channel, activation ranges from the float model on the
  representative data: what converters.pipeline.quantize_aware builds and converts).
- What is trained, by default: the kernels of the trainable layers, the parameters FF trains
  (biases are frozen in the int8 model, docs/design.md); ``train_bias=True`` adds their biases.
- The model always runs in inference mode (``training=False``): no dropout, and the QAT model keeps
  its calibrated activation ranges (the int8 model's grid) instead of tfmot's moving averages.
- Counting: one BP step is 1 forward + 1 backward pass over the batch; ``forward_passes`` equals the
  number of steps taken (FF Sign-m-SPSA takes 2m forward passes per step, no backward pass).

Lives in converters/ because it needs TensorFlow.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from converters import graph_surgery, qat
from converters.keras_compat import keras, tf
from tflite_fg import data, rng

KINDS = ("fp32", "qat")
OPTIMIZERS = ("sgd", "momentum", "adam")
# Output-channel axis of each Keras kernel (Conv2D HWIO, Dense [in, out], DepthwiseConv2D [H, W, C, 1]),
# for neuron selection (tflite_fg/selection.py has TFLite's).
KERAS_CHANNEL_AXIS = {"Conv2D": 3, "Dense": 1, "DepthwiseConv2D": 2}


def _weight_var(layer, attr: str):
    """The variable ``attr`` ("kernel", "depthwise_kernel", "bias") of a float layer or a QAT wrapper."""
    inner = getattr(layer, "layer", layer)
    target = getattr(inner, attr, None)
    if isinstance(target, tf.Variable):
        return target
    for v in layer.weights:  # a QuantizeWrapper may hold the quantized tensor in the attribute
        if v.name.split("/")[-1].split(":")[0] == attr:
            return v
    raise ValueError(f"layer {layer.name!r} has no {attr!r} variable")


class BPModel:
    """A Keras model prepared for backprop: only the trainable layers are trainable.

    ``model`` is the Keras model to run (float or QAT), ``trainable`` the float layer names (graph
    order), ``layers`` the matching layers of ``model`` ("quant_<name>" wrappers for kind "qat")."""

    def __init__(self, model, trainable: Sequence[str], kind: str):
        self.model, self.trainable, self.kind = model, list(trainable), kind
        prefix = "quant_" if kind == "qat" else ""
        self.layers = [model.get_layer(prefix + n) for n in self.trainable]
        chosen = {l.name for l in self.layers}
        for layer in model.layers:
            layer.trainable = layer.name in chosen

    def kernel_variables(self) -> list:
        return [_weight_var(l, qat.kernel_attr(getattr(l, "layer", l))) for l in self.layers]

    def bias_variables(self) -> list:
        return [_weight_var(l, "bias") for l in self.layers if getattr(l, "layer", l).use_bias]

    def channel_axes(self) -> list[int]:
        return [KERAS_CHANNEL_AXIS[type(getattr(l, "layer", l)).__name__] for l in self.layers]

    def neuron_outputs(self, x: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
        """Each trainable layer's output (after its fused activation), channels last: what the int8
        graph's probe signature returns, for neuron selection of the BP baseline."""
        probe = keras.Model(self.model.inputs, [l.output for l in self.layers])
        outs = [probe(x[i:i + batch_size], training=False) for i in range(0, len(x), batch_size)]
        outs = [o if isinstance(o, (list, tuple)) else [o] for o in outs]
        return [np.concatenate([np.asarray(o[k]) for o in outs]) for k in range(len(self.layers))]

    def frozen_weights(self) -> list[np.ndarray]:
        """Every weight of every other layer (float kernels, biases, quantizer ranges)."""
        chosen = {l.name for l in self.layers}
        return [v.numpy() for l in self.model.layers if l.name not in chosen for v in l.weights]


def _own_copy(model):
    """A functional clone with the same weights: trainable flags and training must not touch the caller's model."""
    model = graph_surgery.as_functional(model)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def build_bp_model(float_model, trainable: str | Sequence[str], kind: str = "fp32", headroom: float = 1.0,
                   representative: np.ndarray | None = None,
                   input_range: tuple[float, float] | None = None) -> BPModel:
    """The network to backprop through, with only the ``trainable`` layers trainable.

    ``float_model``: BN folded, prototype head (converters.tasks.prototype_model); it is copied, never
    changed. ``trainable``: names, "head", "last:N" or "all" (graph_surgery.select_trainable).
    kind "qat" needs ``representative`` data (and the converter's ``input_range``, e.g. the
    backbone's tflite_fg.tasks.BACKBONES[...].input_range) to calibrate exactly as the converter
    does; ``headroom`` sets the fixed per-tensor range of the trainable kernels (headroom * max|w|)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; choices: {', '.join(KINDS)}")
    folded = graph_surgery.fold_batchnorm_and_relu(float_model)  # a fresh copy; a no-op on a folded model
    names = graph_surgery.select_trainable(folded, trainable)
    if kind == "fp32":
        return BPModel(_own_copy(folded), names, kind)
    if representative is None:
        raise ValueError("kind='qat' needs representative data to calibrate the activation ranges")
    if not np.isfinite(representative).all():
        raise ValueError("representative data contains NaN or inf")
    if not headroom >= 1.0:
        raise ValueError(f"headroom={headroom}: must be >= 1 (the range must cover the initial kernel)")
    qat_model, _ = qat.quantize_model(folded, names, headroom)
    qat.calibrate(qat_model, folded, np.asarray(representative, np.float32), input_range)
    return BPModel(qat_model, names, kind)


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9):
    """"sgd", "momentum" (SGD with ``momentum``, not Nesterov) or "adam" (Keras defaults otherwise)."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate}: must be > 0")
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=momentum)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    raise ValueError(f"optimizer={name!r}; choices: {', '.join(OPTIMIZERS)}")


class BackpropTrainer:
    """Mini-batch gradient descent on softmax cross-entropy from the logits, one compiled
    tf.function per step (traced once for every batch size).

    ``steps`` counts the steps taken; ``forward_passes`` and ``backward_passes`` equal it (one batch
    forward + one backward per step), for comparing with FF's 2m forward passes per step."""

    def __init__(self, bp: BPModel, optimizer: str = "adam", learning_rate: float = 1e-3, momentum: float = 0.9,
                 train_bias: bool = False, eval_batch_size: int = 256):
        self.bp, self.model = bp, bp.model
        self.variables = bp.kernel_variables() + (bp.bias_variables() if train_bias else [])
        self.optimizer = make_optimizer(optimizer, learning_rate, momentum)
        self.optimizer.build(self.variables)
        self.eval_batch_size = eval_batch_size
        self.steps = 0
        self._shape = tuple(self.model.input_shape[1:])
        self.num_classes = int(self.model.output_shape[-1])
        self._masks: list | None = None  # created by the first set_update_masks: unmasked runs pay nothing
        self._plain_step = self._train_step = self._compile_step(None)
        self._masked_step = None
        model = self.model

        @tf.function(input_signature=[tf.TensorSpec((None, *self._shape), tf.float32)])
        def logits_fn(x):
            return model(x, training=False)

        self._logits = logits_fn

    def _compile_step(self, masks: list | None):
        """One SGD step as a tf.function; with mask variables (1 = may change) the gradient is masked
        (NEq) and so is the optimizer's update, since Adam's moments would move frozen weights."""
        variables, model, opt = self.variables, self.model, self.optimizer

        @tf.function(input_signature=[tf.TensorSpec((None, *self._shape), tf.float32), tf.TensorSpec((None,), tf.int64)])
        def train_step(x, y):
            with tf.GradientTape() as tape:
                logits = model(x, training=False)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            grads = tape.gradient(loss, variables)
            if masks is None:
                opt.apply_gradients(zip(grads, variables))
                return loss
            before = [tf.identity(v) for v in variables]
            opt.apply_gradients(zip([g * m for g, m in zip(grads, masks)], variables))
            for v, b, m in zip(variables, before, masks):
                v.assign(tf.where(m > 0, v, b))
            return loss

        return train_step

    def set_update_masks(self, masks: Sequence[np.ndarray] | None) -> None:
        """Only the True elements of each trainable kernel may change from now on (None: all):
        the gradient is masked and so is the optimizer's update, so frozen weights stay bit-identical
        (with train_bias the biases are not masked). The masks are variables, so a new selection
        does not retrace the step."""
        kernels = self.bp.kernel_variables()
        if masks is not None and (len(masks) != len(kernels) or
                                  any(tuple(np.shape(m)) != tuple(v.shape) for m, v in zip(masks, kernels))):
            raise ValueError(f"masks must be shaped like the trainable kernels {[tuple(v.shape) for v in kernels]}, "
                             f"got {[np.shape(m) for m in masks]}")
        if masks is None:
            self._train_step = self._plain_step
            return
        if self._masks is None:
            self._masks = [tf.Variable(tf.ones_like(v), trainable=False) for v in self.variables]
            self._masked_step = self._compile_step(self._masks)
        for k, var in enumerate(self._masks):
            var.assign(tf.ones_like(var) if k >= len(kernels) else tf.cast(np.asarray(masks[k], bool), var.dtype))
        self._train_step = self._masked_step

    @property
    def forward_passes(self) -> int:
        return self.steps

    @property
    def backward_passes(self) -> int:
        return self.steps

    def _check(self, x: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        return data.check_float_batch(x, y, self.model.input_shape[1:], self.num_classes)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One update on this batch; returns the batch's mean loss before the update."""
        x, y = self._check(x, y)
        loss = float(self._train_step(x, y))
        self.steps += 1
        return loss

    def logits(self, x: np.ndarray) -> np.ndarray:
        x, _ = self._check(x)
        return np.concatenate([self._logits(x[i:i + self.eval_batch_size]).numpy()
                               for i in range(0, len(x), self.eval_batch_size)])

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        x, y = self._check(x, y)
        return float(np.mean(self.logits(x).argmax(axis=1) == y))

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """Mean softmax cross-entropy over (x, y), without updating."""
        x, y = self._check(x, y)
        logits = tf.constant(self.logits(x))
        return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)))

    def trainable_values(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.variables]

    def fit_steps(self, x: np.ndarray, y: np.ndarray, steps: int, batch_size: int, seed: int,
                  eval_fn: Callable[["BackpropTrainer"], float] | None = None,
                  eval_every: int = 100) -> Iterator[dict]:
        """Take ``steps`` more steps on (x, y); step t (counting from 0 over the trainer's life, as
        FF's trainer.fit does) uses the batch rng.minibatch_indices(seed, t, len(x), batch_size).

        Yields one record per step: step (steps done), loss (of the batch, before the update),
        wall_s (cumulative training seconds of this call, evaluation excluded), forward_passes,
        and, every ``eval_every`` steps and after the last one, eval (``eval_fn(self)``, e.g.
        ``lambda t: t.accuracy(x_test, y_test)``)."""
        x, y = self._check(x, y)
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {eval_every}")
        batch_size = min(int(batch_size), len(x))
        wall = 0.0
        for i in range(steps):
            idx = rng.minibatch_indices(seed, self.steps, len(x), batch_size)
            xb, yb = x[idx], y[idx]
            t0 = time.perf_counter()
            loss = float(self._train_step(xb, yb))
            wall += time.perf_counter() - t0
            self.steps += 1
            record = {"step": self.steps, "loss": loss, "wall_s": wall, "forward_passes": self.forward_passes}
            if eval_fn is not None and ((i + 1) % eval_every == 0 or i + 1 == steps):
                record["eval"] = float(eval_fn(self))
            yield record


def time_to_target(records: Sequence[dict], target: float) -> dict | None:
    """The first record whose ``eval`` reaches ``target`` (its step, wall_s, forward_passes), or None."""
    return next((r for r in records if r.get("eval") is not None and r["eval"] >= target), None)
