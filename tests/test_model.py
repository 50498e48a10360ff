"""Bad input to the runtime gets a clear error and leaves nothing behind."""
import shutil

import numpy as np
import pytest

from tflite_fg import assets
from tflite_fg.metadata import metadata_path
from tflite_fg.model import FgModel, ModelError


def _copy(src, dst_dir, name="m.tflite"):
    dst = dst_dir / name
    shutil.copy(src, dst)
    shutil.copy(metadata_path(src), metadata_path(dst))
    return dst


def test_model_without_forward_signature_is_refused(cache_dir, tmp_path, head_model_path):
    """MLPerf's own int8 ResNet-8 .tflite: a real inference-only graph."""
    plain = tmp_path / "plain.tflite"
    shutil.copy(assets.model_dir("image_classification", cache_dir) / "image_classification.tflite", plain)
    with pytest.raises(ModelError, match="no 'forward' training signature.*tools/convert.py"):
        FgModel(plain)


def test_float_model_is_refused(tmp_path):
    from converters.keras_compat import tf

    class Fwd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                      tf.TensorSpec([3, 4], tf.float32, name="w_dense")])
        def forward(self, x, w):
            return {"logits": tf.matmul(x, w, transpose_b=True)}
    m = Fwd()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.forward.get_concrete_function()], m)
    path = tmp_path / "float.tflite"
    path.write_bytes(conv.convert())
    with pytest.raises(ModelError, match="forward|float"):
        FgModel(path)


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_corrupt_model_bytes(head_model_path, tmp_path, damage):
    path = _copy(head_model_path, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncate" else np.random.default_rng(0).bytes(len(data)))
    with pytest.raises(ModelError, match="corrupt or truncated|does not match its metadata"):
        FgModel(path)


def test_missing_or_mismatched_metadata(head_model_path, block_model_path, tmp_path):
    path = tmp_path / "m.tflite"
    shutil.copy(head_model_path, path)
    with pytest.raises(ModelError, match="metadata.*tools/convert.py"):
        FgModel(path)
    shutil.copy(metadata_path(block_model_path), metadata_path(path))
    with pytest.raises(ModelError, match="sha256 differs"):
        FgModel(path)


def test_bad_batches_and_labels(head_model_path, fewshot_task):
    model = FgModel(head_model_path, engine="builtin")
    x = fewshot_task.x_test[:4]
    with pytest.raises(ValueError, match=r"shape \(4, 32, 32\).*expects \(batch, 32, 32, 3\)"):
        model.quantize_input(x[..., 0])
    with pytest.raises(ValueError, match="dtype uint8"):
        model.quantize_input((x * 100).astype(np.uint8))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        model.quantize_input(bad)
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        model.quantize_input(bad)
    xq = model.quantize_input(x)
    with pytest.raises(ValueError, match=r"labels out of range \[0, 10\)"):
        model.accuracy(xq, np.array([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="integer array of shape"):
        model.accuracy(xq, np.array([0.0, 1.0, 2.0, 3.0]))
    params = model.initial_params()
    with pytest.raises(ValueError, match="must be int8"):
        model.forward(xq, [params[0].astype(np.int16)])
    with pytest.raises(ValueError, match="expected 1 trainable tensors"):
        model.forward(xq, params * 2)


def test_unknown_engine(head_model_path):
    with pytest.raises(ValueError, match="engine 'gpu'"):
        FgModel(head_model_path, engine="gpu")
