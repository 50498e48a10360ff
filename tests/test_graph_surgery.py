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
