"""The prefix/suffix split of `forward`: bit-identical to the unsplit graph, on real models and data."""
import numpy as np
import pytest

from converters import graph_split, pipeline
from converters.keras_compat import keras
from tflite_fg import flatbuf
from tflite_fg.model import FgModel


def _test_batch(model: FgModel, task, n: int = 96) -> np.ndarray:
    return model.quantize_input(task.x_test[:n])


@pytest.mark.parametrize("engine", ["builtin", "xnnpack"])
@pytest.mark.parametrize("which", ["head", "block"])
def test_prefix_then_suffix_equals_forward_bit_for_bit(which, engine, head_model_path, block_model_path,
                                                       fewshot_task):
    model = FgModel(head_model_path if which == "head" else block_model_path, engine=engine)
    assert model.has_prefix and model.meta.source["prefix_features"] == 1
    xq = _test_batch(model, fewshot_task)
    rng = np.random.default_rng(0)
    for params in (model.initial_params(),
                   [rng.integers(-127, 128, t.shape).astype(np.int8) for t in model.meta.trainable]):
        feats = model.features(xq)
        np.testing.assert_array_equal(model.forward_features(feats, params), model.forward(xq, params))
    # features depend on their own example only: any batching gives the same cache
    chunks = [model.features(xq[i:i + 7])[0] for i in range(0, len(xq), 7)]
    np.testing.assert_array_equal(np.concatenate(chunks), model.features(xq)[0])
    np.testing.assert_array_equal(model.features(xq, batch_size=5)[0], model.features(xq)[0])


def test_split_shares_constant_buffers(block_model_path):
    """prefix/suffix reuse forward's constants by buffer index: the file grows by tensor tables only."""
    model = FgModel(block_model_path)
    fb = flatbuf.parse(model.model_bytes)
    const_bytes = lambda key: sum(c.nbytes for c in flatbuf.int8_constants(fb, flatbuf.signature_subgraph(fb, key)))  # noqa: E731
    assert const_bytes("prefix") + const_bytes("suffix") == const_bytes("forward")
    offsets = lambda key: {c.offset for c in flatbuf.int8_constants(fb, flatbuf.signature_subgraph(fb, key))}  # noqa: E731
    assert offsets("prefix") | offsets("suffix") == offsets("forward")


def test_split_is_refused_twice(head_model_path):
    with pytest.raises(ValueError, match="already has prefix/suffix"):
        graph_split.add_prefix_suffix(FgModel(head_model_path).model_bytes)


def _tiny(trainable: str) -> FgModel:
    """x -> conv a -> {conv b, conv c} -> add -> flatten -> head: a graph whose cut can hold two tensors."""
    x = keras.Input((6, 6, 2), name="x")
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="a")(x)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
    c = keras.layers.Conv2D(4, 1, name="c")(a)
    y = keras.layers.Add(name="add")([b, c])
    y = keras.layers.Dense(3, name="head")(keras.layers.Flatten(name="flat")(y))
    keras.utils.set_random_seed(0)
    model = keras.Model(x, y)
    rep = np.random.default_rng(0).uniform(-1, 1, (32, 6, 6, 2)).astype(np.float32)
    return pipeline.convert_keras_model(model, pipeline.ConvertConfig(trainable=trainable, input_range=(-1.0, 1.0)), rep)


@pytest.mark.parametrize("trainable, n_features", [("b", 2), ("b,head", 2), ("head", 1), ("a,head", 0)])
def test_cut_tensors_of_a_branching_graph(trainable, n_features, tmp_path):
    path = tmp_path / "tiny.tflite"
    pipeline.save(path, *_tiny(trainable))
    model = FgModel(path, engine="builtin")
    assert model.meta.source["prefix_features"] == n_features
    assert model.has_prefix == (n_features > 0)
    xq = model.quantize_input(np.random.default_rng(1).uniform(-1, 1, (9, 6, 6, 2)).astype(np.float32))
    feats = model.features(xq)
    assert len(feats) == max(n_features, 1)
    if n_features == 0:  # the first layer trains: nothing frozen to cache, the features are the input
        assert feats[0] is xq and set(model.interpreter.get_signature_list()) == {"forward", "infer", "probe"}
    params = [np.random.default_rng(2).integers(-127, 128, t.shape).astype(np.int8) for t in model.meta.trainable]
    np.testing.assert_array_equal(model.forward_features(feats, params), model.forward(xq, params))
