"""BN folding, head replacement and trainable-layer selection on the real ResNet-8."""
import numpy as np
import pytest

from converters import graph_surgery as gs
from converters import tasks as ctasks
from converters.keras_compat import tf


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


def test_prototype_head_is_nearest_prototype():
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(40, 8)).astype(np.float32), np.repeat(np.arange(4), 10)
    w, b = gs.prototype_head(feats, labels, 4)
    protos = np.stack([feats[labels == c].mean(0) for c in range(4)])
    q = rng.normal(size=(100, 8)).astype(np.float32)
    nearest = ((q[:, None] - protos[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal((q @ w + b).argmax(1), nearest)
