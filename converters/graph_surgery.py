"""Float-graph rewrites done before quantization-aware conversion.

BatchNorm is folded into the preceding conv/dense, and a following ReLU/ReLU6 is fused into its
`activation`, so that tfmot sees `Conv2D(activation=relu)`: its per-layer QuantizeConfig then
holds the kernel quantizer. (With a separate ReLU layer, tfmot's LayerReluActivationQuantize
transform replaces the conv's config by NoOp, which would drop our per-tensor kernel quantizer.)
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from converters.keras_compat import keras, tf
from tflite_fg.errors import UserError

class GraphError(UserError):
    """A Keras model, or a choice of its layers, that the converter cannot take as it is."""


WEIGHT_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
_RELU_NAMES = {"relu": "relu", "relu6": "relu6"}


def _inbound(layer) -> list:
    node = layer._inbound_nodes[0]
    inbound = node.inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def _consumers(model) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {l.name: [] for l in model.layers}
    for layer in model.layers:
        if layer._inbound_nodes and not isinstance(layer, keras.layers.InputLayer):
            for src in _inbound(layer):
                out[src.name].append(layer.name)
    return out


def as_functional(model):
    """A flat functional view of ``model`` in which every layer has exactly one inbound node.

    A plain functional model whose layers are called once (in this model only) is returned as is.
    Otherwise (a Sequential, a Model or Sequential used as a layer at any depth, or layers also
    called in another model) the graph is rebuilt from fresh layers: each cloned from its config,
    keeping its name, with a copy of its weights; nested models are inlined. The caller's model is
    left unchanged. Layer names must stay unique after inlining: selections are by name."""
    if isinstance(model, keras.Sequential) and not model.inputs:
        raise GraphError(f"Sequential model {model.name!r} has no input shape: build it first "
                         "(model.build((None, ...))) or give its first layer an input_shape")
    _require_graph(model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise GraphError(f"model {model.name!r}: only single-input, single-output models are supported")
    if not isinstance(model, keras.Sequential) and all(
            len(l._inbound_nodes) == 1 and not isinstance(l, keras.Model) for l in model.layers):
        return model
    source = model.inputs[0]
    input_name = source._keras_history.layer.name
    inputs = keras.Input(source.shape[1:], dtype=source.dtype, name=input_name)
    called: dict[int, object] = {}
    (outputs,) = _inline(model, [inputs], called)
    names = [input_name] + [l.name for l in called.values() if not isinstance(l, keras.Model)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GraphError(f"model {model.name!r}: layer name(s) {duplicates} occur more than once after nested "
                         "models are inlined; rename them (names select the trainable layers)")
    return keras.Model(inputs, outputs, name=model.name)


def _require_graph(model) -> None:
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise GraphError(f"model {model.name!r} is a subclassed Model; only Sequential and functional "
                         "models (also nested in each other) can be converted")


def _inline(model, inputs: list, called: dict[int, object]) -> list:
    """Run ``model``'s graph on ``inputs`` with fresh layers (nested models inlined recursively);
    returns its outputs, flattened. ``called`` collects every layer called, by id."""
    _require_graph(model)
    if isinstance(model, keras.Sequential):
        (x,) = inputs
        for layer in model.layers:
            (x,) = _call_fresh(layer, (x,), {}, called)
        return [x]
    if len(model.inputs) != len(inputs):
        raise GraphError(f"model {model.name!r} takes {len(model.inputs)} inputs, called with {len(inputs)}")
    tensors = {id(t): new for t, new in zip(model.inputs, inputs)}
    for depth in sorted(model._nodes_by_depth, reverse=True):   # topological order, as Keras runs it
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            if any(id(t) not in tensors for t in node.keras_inputs):
                raise GraphError(f"model {model.name!r}: layer {node.layer.name!r} reads a tensor that is not "
                                 "computed from the model's input; only single-input graphs convert")
            args, kwargs = tf.nest.map_structure(lambda t: tensors.get(id(t), t), (node.call_args, node.call_kwargs))
            outputs = _call_fresh(node.layer, args, kwargs, called)
            tensors.update(zip(map(id, tf.nest.flatten(node.outputs)), outputs))
    return [tensors[id(t)] for t in model.outputs]


def _call_fresh(layer, args, kwargs, called: dict[int, object]) -> list:
    """Call a fresh copy of ``layer`` (inline it if it is a model); returns its outputs, flattened."""
    if id(layer) in called:
        raise GraphError(f"layer {layer.name!r} is shared (called more than once); unshare it before conversion")
    called[id(layer)] = layer
    if isinstance(layer, keras.Model):  # its call kwargs (e.g. training=False) do not carry over
        return _inline(layer, tf.nest.flatten(args[0] if args else kwargs["inputs"]), called)
    fresh = _clone_layer(layer)
    outputs = fresh(*args, **kwargs)
    if layer.weights:
        fresh.set_weights(layer.get_weights())
    return tf.nest.flatten(outputs)


def rebuild(model, make_layer: Callable[[object], object | None]):
    """Re-run the graph layer by layer; make_layer returns a replacement layer, or None to skip it
    (its input passes through). Layers keep their names so trainable selections stay valid."""
    model = as_functional(model)
    tensors: dict[str, object] = {}
    inputs = keras.Input(model.input_shape[1:], name=model.layers[0].name)
    tensors[model.layers[0].name] = inputs
    for layer in model.layers[1:]:
        srcs = [tensors[s.name] for s in _inbound(layer)]
        new = make_layer(layer)
        if new is None:
            tensors[layer.name] = srcs[0]
            continue
        tensors[layer.name] = new(srcs if len(srcs) > 1 else srcs[0])
    return keras.Model(inputs, tensors[model.layers[-1].name], name=model.name)


def _clone_layer(layer, **config_updates):
    config = layer.get_config()
    config.update(config_updates)
    return type(layer).from_config(config)


def _relu_kind(layer) -> str | None:
    if isinstance(layer, keras.layers.Activation):
        return _RELU_NAMES.get(layer.get_config()["activation"])
    if isinstance(layer, keras.layers.ReLU):
        cfg = layer.get_config()
        if cfg.get("negative_slope", 0.0) == 0.0 and cfg.get("threshold", 0.0) == 0.0:
            if cfg.get("max_value") is None:
                return "relu"
            if float(cfg["max_value"]) == 6.0:
                return "relu6"
    return None


def fold_batchnorm_and_relu(model, drop_final_softmax: bool = True):
    """Return an equivalent float model without BatchNorm layers and with ReLUs fused into the
    preceding weight layer; the final softmax (if any) is dropped so the model outputs logits."""
    model = as_functional(model)
    consumers = _consumers(model)
    by_name = {l.name: l for l in model.layers}
    kernels: dict[str, list[np.ndarray]] = {}
    activation: dict[str, str] = {}
    skip: set[str] = set()

    def sole_weight_producer(layer):
        (src,) = _inbound(layer)
        ok = isinstance(src, WEIGHT_LAYERS) and len(consumers[src.name]) == 1
        return src if ok and src.get_config().get("activation") == "linear" else None

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            src = sole_weight_producer(layer)
            if src is None:
                raise GraphError(f"BatchNormalization {layer.name!r} does not follow a conv/dense layer "
                                 "with a single consumer; it cannot be folded")
            w = kernels.get(src.name) or [np.asarray(v) for v in src.get_weights()]
            kernel, bias = w[0], (w[1] if len(w) > 1 else np.zeros(w[0].shape[-1], np.float32))
            cfg = layer.get_config()
            gamma = layer.gamma.numpy() if cfg["scale"] else 1.0
            beta = layer.beta.numpy() if cfg["center"] else 0.0
            factor = gamma / np.sqrt(layer.moving_variance.numpy() + cfg["epsilon"])
            if isinstance(src, keras.layers.DepthwiseConv2D):
                k = kernel * factor.reshape(kernel.shape[2], kernel.shape[3])
            else:
                k = kernel * factor
            kernels[src.name] = [k.astype(np.float32), ((bias - layer.moving_mean.numpy()) * factor + beta).astype(np.float32)]
            skip.add(layer.name)
            consumers[src.name] = consumers[layer.name]
            by_name[layer.name] = src
        kind = _relu_kind(layer)
        if kind is not None:
            (src,) = _inbound(layer)
            src = by_name.get(src.name, src)
            if isinstance(src, WEIGHT_LAYERS) and len(consumers[src.name]) == 1 and src.name not in activation \
                    and src.get_config().get("activation") == "linear":
                activation[src.name] = kind
                skip.add(layer.name)
                by_name[layer.name] = src

    last = model.layers[-1]

    def make(layer):
        if layer.name in skip:
            return None
        updates = {}
        if isinstance(layer, WEIGHT_LAYERS):
            if layer.name in kernels:
                updates["use_bias"] = True
            if layer.name in activation:
                updates["activation"] = activation[layer.name]
            if drop_final_softmax and layer is last and layer.get_config().get("activation") == "softmax":
                updates["activation"] = "linear"
        elif drop_final_softmax and layer is last and isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)) \
                and (isinstance(layer, keras.layers.Softmax) or layer.get_config()["activation"] == "softmax"):
            return None
        return _clone_layer(layer, **updates)

    folded = rebuild(model, make)
    for layer in folded.layers:
        if layer.name in kernels:
            layer.set_weights(kernels[layer.name])
        elif isinstance(layer, WEIGHT_LAYERS) or layer.get_weights():
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return folded


def weight_layer_names(model) -> list[str]:
    return [l.name for l in model.layers if isinstance(l, WEIGHT_LAYERS)]


def select_trainable(model, spec: str | Sequence[str]) -> list[str]:
    """Resolve a trainable-layer choice: a list of names, "head", "last:N" (last N weight layers) or
    "all" (every weight layer, in graph order)."""
    names = weight_layer_names(model)
    if isinstance(spec, str):
        if spec == "head":
            return names[-1:]
        if spec == "all":
            return list(names)
        if spec.startswith("last:"):
            n = int(spec.split(":", 1)[1])
            if not 1 <= n <= len(names):
                raise GraphError(f"trainable 'last:{n}': the model has {len(names)} weight layers ({names})")
            return names[-n:]
        spec = [s for s in spec.split(",") if s]
    unknown = [s for s in spec if s not in names]
    if unknown:
        raise GraphError(f"unknown trainable layer(s) {unknown}; weight layers of this model are: {names}")
    if not spec:
        raise GraphError("no trainable layer chosen; give names, 'head', 'last:N' or 'all'")
    return [n for n in names if n in spec]


def feature_model(model):
    """The network up to the input of its last Dense layer: the features a new head reads."""
    model = as_functional(model)
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    if not dense:
        raise GraphError("model has no Dense layer to replace as head")
    return keras.Model(model.inputs, dense[-1].input)


def replace_head(model, kernel: np.ndarray, bias: np.ndarray, name: str = "head"):
    """Swap the last Dense layer for a new linear one (logits) with the given weights."""
    model = as_functional(model)
    last_dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)][-1]
    if last_dense is not model.layers[-1]:
        raise GraphError(f"the last Dense layer {last_dense.name!r} is not the model's output layer")
    features = last_dense.input
    head = keras.layers.Dense(kernel.shape[1], activation=None, name=name)
    out = head(features)
    new = keras.Model(model.inputs, out, name=model.name)
    head.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return new


def prototype_head(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """ProtoNet as a linear layer: w_c = 2 p_c, b_c = -||p_c||^2 (argmax = nearest prototype)."""
    protos = np.stack([features[labels == c].mean(axis=0) for c in range(num_classes)])
    return (2.0 * protos).T.astype(np.float32), -(protos ** 2).sum(axis=1).astype(np.float32)
