"""BN folding, head replacement and trainable-layer selection on the real ResNet-8, and the
MobileNet layer kinds (DepthwiseConv2D, ReLU6, ZeroPadding2D, Dropout, Reshape) on a small model."""
import numpy as np
import pytest

from converters import graph_surgery as gs
from converters import pipeline
from converters import tasks as ctasks
from converters.keras_compat import keras, tf
from tflite_fg.model import FgModel


@pytest.fixture(scope="module")
def resnet8(cache_dir):
    return ctasks.load_source_model(cache=cache_dir)


def test_fold_is_exact_on_real_images(resnet8, fewshot_task):
    folded = gs.fold_batchnorm_and_relu(resnet8)
    kinds = {type(l).__name__ for l in folded.layers}
    assert "BatchNormalization" not in kinds
    x = fewshot_task.x_test[:64]
    ref = resnet8(x).numpy()                      # ends in softmax
    got = tf.nn.softmax(folded(x)).numpy()        # logits after folding
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert folded.get_layer("conv2d").get_config()["activation"] == "relu"
    assert folded.get_layer("conv2d_2").get_config()["activation"] == "linear"   # feeds an Add


def test_select_trainable(resnet8):
    folded = gs.fold_batchnorm_and_relu(resnet8)
    assert gs.select_trainable(folded, "head") == ["dense"]
    assert gs.select_trainable(folded, "last:4") == ["conv2d_6", "conv2d_8", "conv2d_7", "dense"]
    assert gs.select_trainable(folded, "dense,conv2d_7") == ["conv2d_7", "dense"]
    with pytest.raises(ValueError, match="conv2d_99.*weight layers of this model are.*conv2d_6"):
        gs.select_trainable(folded, "conv2d_99")
    with pytest.raises(ValueError, match="last:50"):
        gs.select_trainable(folded, "last:50")
    every = gs.weight_layer_names(folded)
    assert len(every) == 10 and gs.select_trainable(folded, "all") == every == gs.select_trainable(folded, "last:10")


def test_prototype_head_is_nearest_prototype():
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(40, 8)).astype(np.float32), np.repeat(np.arange(4), 10)
    w, b = gs.prototype_head(feats, labels, 4)
    protos = np.stack([feats[labels == c].mean(0) for c in range(4)])
    q = rng.normal(size=(100, 8)).astype(np.float32)
    nearest = ((q[:, None] - protos[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal((q @ w + b).argmax(1), nearest)


def _mobilenet_like(clip_relu6: bool = False):
    """MobileNet's layer kinds, with random BN statistics: a strided conv, ZeroPadding2D before a
    'valid' strided depthwise conv, ReLU6 both as ReLU(6.) and Activation("relu6"), a depthwise
    multiplier of 2, GlobalAveragePooling2D(keepdims) -> Dropout -> Reshape, Dense, Softmax."""
    L = keras.layers
    inp = keras.Input((24, 24, 3), name="image")
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1")(inp)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False, name="dw1")(x)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    x = L.Conv2D(16, 1, use_bias=False, name="pw1")(x)
    x = L.Activation("relu6")(L.BatchNormalization()(x))
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw2")(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    x = L.Reshape((32,))(L.Dropout(0.25)(x))
    model = keras.Model(inp, L.Softmax()(L.Dense(5, name="dense")(x)))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.2, shape),
                               rng.normal(0, 0.2, shape), rng.uniform(0.5, 2.0, shape)])
    if clip_relu6:  # make ReLU6 clip often
        conv = model.get_layer("conv1")
        conv.set_weights([conv.get_weights()[0] * 30])
    return model


def test_mobilenet_layers_fold_exactly():
    model = _mobilenet_like()
    folded = gs.fold_batchnorm_and_relu(model)
    kinds = [type(l).__name__ for l in folded.layers]
    assert "BatchNormalization" not in kinds and "ReLU" not in kinds and "Activation" not in kinds
    assert [folded.get_layer(n).get_config()["activation"] for n in ("conv1", "dw1", "pw1", "dw2", "dense")] == \
        ["relu6", "relu6", "relu6", "relu", "linear"]
    assert {"ZeroPadding2D", "Dropout", "Reshape", "GlobalAveragePooling2D"} <= set(kinds)
    x = np.random.default_rng(1).uniform(-1, 1, (32, 24, 24, 3)).astype(np.float32)
    np.testing.assert_allclose(tf.nn.softmax(folded(x)).numpy(), model(x).numpy(), atol=1e-6)
    assert gs.select_trainable(folded, "all") == ["conv1", "dw1", "pw1", "dw2", "dense"]


def test_mobilenet_layers_convert_with_every_layer_trainable(tmp_path):
    """All weight layers trainable (depthwise kernels as [1, H, W, C*mult] inputs); ReLU6 that clips on
    27% of conv1's outputs: the int8 graph saturates where ReLU6 clips (its range ends at 6)."""
    folded = gs.fold_batchnorm_and_relu(_mobilenet_like(clip_relu6=True))
    x = np.random.default_rng(1).uniform(-1, 1, (128, 24, 24, 3)).astype(np.float32)
    cfg = pipeline.ConvertConfig(trainable="all", input_range=(-1.0, 1.0))
    qat_model, trainable = pipeline.quantize_aware(folded, cfg, x)
    ranges = {v.name.split("/")[-1].split(":")[0]: float(v.numpy()) for v in qat_model.get_layer("quant_conv1").weights
              if "post_activation" in v.name}
    assert ranges == {"post_activation_min": 0.0, "post_activation_max": 6.0}
    path = tmp_path / "m.tflite"
    pipeline.save(path, *pipeline.to_tflite(qat_model, trainable, cfg))
    model = FgModel(path, engine="builtin")
    assert [(t.layer, t.op, t.shape) for t in model.meta.trainable] == [
        ("conv1", "Conv2D", (8, 3, 3, 3)), ("dw1", "DepthwiseConv2D", (1, 3, 3, 8)),
        ("pw1", "Conv2D", (16, 1, 1, 8)), ("dw2", "DepthwiseConv2D", (1, 3, 3, 32)), ("dense", "Dense", (5, 32))]
    xq = model.quantize_input(x)
    logits = model.infer(xq)
    np.testing.assert_array_equal(model.forward(xq, model.initial_params()), logits)
    ref = folded(x).numpy()
    assert (logits.argmax(1) == ref.argmax(1)).mean() >= 0.95


def _cnn_layers():
    """A small CNN with fixed names and seeded initialisers: ReLU both as ReLU() and Activation("relu"),
    a conv without bias before BN, max and average pooling, Flatten, a softmax Dense."""
    L, init = keras.layers, keras.initializers.GlorotUniform
    return [L.Conv2D(8, 3, padding="same", use_bias=False, kernel_initializer=init(0), name="conv1"),
            L.BatchNormalization(name="bn1"), L.ReLU(name="relu1"), L.MaxPooling2D(name="pool1"),
            L.Conv2D(16, 3, strides=2, kernel_initializer=init(1), name="conv2"),
            L.BatchNormalization(name="bn2"), L.Activation("relu", name="relu2"),
            L.AveragePooling2D(name="pool2"), L.Flatten(name="flatten"),
            L.Dense(10, activation="softmax", kernel_initializer=init(2), name="head")]


@pytest.fixture(scope="module")
def sequential_cnn(fewshot_task):
    """The CNN as a Sequential on the task's 32x32x3 images, random BN statistics, prototype head."""
    model = keras.Sequential([keras.Input((32, 32, 3), name="image"), *_cnn_layers()], name="cnn")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.2, shape),
                               rng.normal(0, 0.2, shape), rng.uniform(0.5, 2.0, shape)])
    features = gs.feature_model(model).predict(fewshot_task.x_support, verbose=0)
    model.get_layer("head").set_weights(gs.prototype_head(features, fewshot_task.y_support, 10))
    return model


def _convert(model, x, path):
    """Logits range 1x (no headroom): the agreement check below measures the conversion, and a wider
    range halves the logits' resolution (89% instead of 94% agreement on this small CNN)."""
    cfg = pipeline.ConvertConfig(trainable="last:2", output_headroom=1.0)
    pipeline.save(path, *pipeline.convert_keras_model(model, cfg, x))
    return FgModel(path)


@pytest.fixture(scope="module")
def sequential_cnn_fg(sequential_cnn, fewshot_task, tmp_path_factory):
    return _convert(sequential_cnn, fewshot_task.x_support, tmp_path_factory.mktemp("seq") / "cnn.tflite")


def test_sequential_is_rebuilt_from_fresh_layers(sequential_cnn, fewshot_task):
    """Issue 16: a Sequential used to fail in _consumers (KeyError on its input layer's name)."""
    flat = gs.as_functional(sequential_cnn)
    assert [l.name for l in flat.layers] == ["image"] + [l.name for l in sequential_cnn.layers]
    assert all(len(l._inbound_nodes) == 1 for l in flat.layers + sequential_cnn.layers)
    assert not {id(l) for l in flat.layers} & {id(l) for l in sequential_cnn.layers}
    x = fewshot_task.x_test[:128]
    ref = sequential_cnn(x).numpy()
    np.testing.assert_array_equal(flat(x).numpy(), ref)
    folded = gs.fold_batchnorm_and_relu(sequential_cnn)
    assert [l.name for l in folded.layers] == ["image", "conv1", "pool1", "conv2", "pool2", "flatten", "head"]
    assert [folded.get_layer(n).get_config()["activation"] for n in ("conv1", "conv2", "head")] == \
        ["relu", "relu", "linear"]
    np.testing.assert_allclose(tf.nn.softmax(folded(x)).numpy(), ref, atol=1e-6)
    # The few-shot path: prototype_model reads the features of a Sequential too (its head is the prototype one).
    proto = ctasks.prototype_model(sequential_cnn, fewshot_task.x_support, fewshot_task.y_support, 10)
    np.testing.assert_allclose(proto(x).numpy(), folded(x).numpy(), rtol=1e-5, atol=1e-4)


def test_sequential_converts(sequential_cnn, sequential_cnn_fg, fewshot_task):
    model = sequential_cnn_fg
    assert [(t.layer, t.op) for t in model.meta.trainable] == [("conv2", "Conv2D"), ("head", "Dense")]
    x = fewshot_task.x_test
    xq = model.quantize_input(x)
    logits = model.infer(xq)
    np.testing.assert_array_equal(model.forward(xq, model.initial_params()), logits)
    ref = sequential_cnn.predict(x, verbose=0).argmax(1)
    assert (logits.argmax(1) == ref).mean() >= 0.9


def test_sequential_and_functional_convert_alike(sequential_cnn, sequential_cnn_fg, fewshot_task, tmp_path):
    inputs = keras.Input((32, 32, 3), name="image")
    x = inputs
    for layer in _cnn_layers():
        x = layer(x)
    functional = keras.Model(inputs, x, name="cnn")
    for layer in sequential_cnn.layers:
        functional.get_layer(layer.name).set_weights(layer.get_weights())
    model = _convert(functional, fewshot_task.x_support, tmp_path / "functional.tflite")
    assert model.meta.trainable == sequential_cnn_fg.meta.trainable
    xq = model.quantize_input(fewshot_task.x_test[:256])
    np.testing.assert_array_equal(sequential_cnn_fg.forward(xq, sequential_cnn_fg.initial_params()),
                                  model.forward(xq, model.initial_params()))


def _prototype_wrapped(resnet8, task):
    """ResNet-8's feature part nested, as one layer, in a Sequential with a new prototype head."""
    wrapped = keras.Sequential([gs.feature_model(resnet8), keras.layers.Dense(10, name="head")], name="wrapped")
    wrapped.build((None, 32, 32, 3))
    features = gs.feature_model(wrapped).predict(task.x_support, verbose=0)
    head = gs.prototype_head(features, task.y_support, 10)
    wrapped.get_layer("head").set_weights(head)
    return wrapped, gs.replace_head(resnet8, *head)


def test_nested_models_are_inlined(resnet8, fewshot_task):
    """Nested at depth 1 (a Model inside a Sequential) and 2 (inside a Sequential inside a functional
    model): flat, the same layers as the unnested network, the same float outputs."""
    wrapped, unnested = _prototype_wrapped(resnet8, fewshot_task)
    inputs = keras.Input((32, 32, 3), name="image")
    deeper = keras.Model(inputs, wrapped.get_layer("head")(keras.Sequential([gs.feature_model(resnet8)])(inputs)))
    x = fewshot_task.x_test[:64]
    ref = unnested(x).numpy()
    for model in (wrapped, deeper):
        flat = gs.as_functional(model)
        assert not any(isinstance(l, keras.Model) for l in flat.layers)
        assert [l.name for l in flat.layers[1:]] == [l.name for l in unnested.layers[1:]]
        np.testing.assert_array_equal(flat(x).numpy(), ref)
        folded = gs.fold_batchnorm_and_relu(model)
        assert gs.select_trainable(folded, "last:2") == ["conv2d_7", "head"]
        np.testing.assert_allclose(folded(x).numpy(), ref, rtol=1e-5, atol=1e-4)


def test_nested_resnet8_converts(resnet8, fewshot_task, tmp_path):
    wrapped, unnested = _prototype_wrapped(resnet8, fewshot_task)
    model = _convert(wrapped, fewshot_task.x_support, tmp_path / "nested.tflite")
    assert [t.layer for t in model.meta.trainable] == ["conv2d_7", "head"]
    logits = model.infer(model.quantize_input(fewshot_task.x_test))
    assert (logits.argmax(1) == unnested.predict(fewshot_task.x_test, verbose=0).argmax(1)).mean() >= 0.9


def test_unbuilt_sequential_is_rejected():
    model = keras.Sequential([keras.layers.Dense(4)], name="unbuilt")
    with pytest.raises(ValueError, match="'unbuilt' has no input shape: build it first"):
        gs.fold_batchnorm_and_relu(model)


def test_duplicate_names_and_shared_layers_are_rejected():
    def block():
        return keras.Sequential([keras.layers.Dense(4, name="fc")])
    model = keras.Sequential([keras.Input((4,)), block(), block()], name="twice")
    with pytest.raises(ValueError, match=r"'twice': layer name\(s\) \['fc'\] occur more than once"):
        gs.as_functional(model)
    inputs = keras.Input((4,))
    dense, inner = keras.layers.Dense(4, name="shared"), block()
    for outputs, name in ((dense(dense(inputs)), "shared"), (inner(inner(inputs)), inner.name)):
        with pytest.raises(ValueError, match=f"layer '{name}' is shared"):
            gs.as_functional(keras.Model(inputs, outputs))
