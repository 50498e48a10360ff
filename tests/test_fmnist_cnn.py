"""The fmnist-c benchmark's CNN: cached accuracy, deterministic training, the cache stamp, and int8
conversion through the project's pipeline with the decoder trainable."""
import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from converters import fmnist_cnn, graph_surgery, pipeline
from tflite_fg import assets, data, fmnist_c
from tflite_fg.model import FgModel

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Measured with RECIPE on 2 CPU cores (TF 2.21): 90.17% clean test accuracy.
MIN_CLEAN_ACCURACY = 0.895


@pytest.fixture(scope="module")
def cnn(cache_dir):
    return fmnist_cnn.load_or_train(cache_dir)


@pytest.fixture(scope="module")
def test_set(cache_dir):
    return data.load_fashion_mnist("test", cache_dir)


def test_architecture_is_small_with_a_three_dense_decoder():
    model = fmnist_cnn.build_model(0)
    assert model.count_params() < 50_000
    folded = pipeline.prepare_float_model(model)
    assert graph_surgery.select_trainable(folded, "last:3") == list(fmnist_cnn.DECODER)
    assert graph_surgery.select_trainable(folded, "last:1") == ["logits"]
    assert not any("batch_normalization" in type(l).__name__.lower() for l in folded.layers)


def test_cached_model_accuracy_and_stamp(cnn, test_set, cache_dir):
    acc = fmnist_cnn.accuracy(cnn, *test_set)
    stamp = fmnist_cnn.read_stamp(cache_dir)
    assert acc >= MIN_CLEAN_ACCURACY
    assert stamp["clean_test_accuracy"] == pytest.approx(acc, abs=1e-4)
    assert stamp["recipe"] == dataclasses.asdict(fmnist_cnn.RECIPE)
    assert stamp["sha256"] == assets.sha256_file(fmnist_cnn.weights_path(cache_dir))


def test_training_is_bit_identical_for_the_same_recipe(cache_dir):
    small = dataclasses.replace(fmnist_cnn.RECIPE, n_train=2000, epochs=1)
    first = fmnist_cnn.train(small, cache_dir, log=lambda _: None).get_weights()
    second = fmnist_cnn.train(small, cache_dir, log=lambda _: None).get_weights()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = fmnist_cnn.train(dataclasses.replace(small, seed=1), cache_dir, log=lambda _: None).get_weights()
    assert not np.array_equal(first[0], other[0])


def test_stale_stamp_is_not_reused(cache_dir, tmp_path):
    """A cache whose stamp holds another recipe, or whose .h5 was replaced, must be retrained."""
    src, dst = fmnist_cnn.weights_path(cache_dir), fmnist_cnn.weights_path(tmp_path)
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    stamp = fmnist_cnn.read_stamp(cache_dir)
    fmnist_cnn.stamp_path(tmp_path).write_text(json.dumps(stamp))
    assert fmnist_cnn._cached(tmp_path, fmnist_cnn.RECIPE) == (True, "")
    ok, why = fmnist_cnn._cached(tmp_path, dataclasses.replace(fmnist_cnn.RECIPE, epochs=1))
    assert not ok and "recipe changed" in why
    dst.write_bytes(dst.read_bytes() + b"\0")
    ok, why = fmnist_cnn._cached(tmp_path, fmnist_cnn.RECIPE)
    assert not ok and "sha256" in why


def test_recipe_validates_itself():
    with pytest.raises(ValueError, match="epochs=0"):
        dataclasses.replace(fmnist_cnn.RECIPE, epochs=0)
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        dataclasses.replace(fmnist_cnn.RECIPE, optimizer="sgd")
    with pytest.raises(ValueError, match="n_train=0"):
        dataclasses.replace(fmnist_cnn.RECIPE, n_train=0)


@pytest.mark.parametrize("trainable, layers", [("last:1", ["logits"]), ("last:3", list(fmnist_cnn.DECODER))])
def test_converts_to_int8_with_the_decoder_trainable(cnn, test_set, cache_dir, tmp_path, trainable, layers):
    model_bytes, meta = fmnist_cnn.convert(cnn, trainable, cache=cache_dir)
    path = tmp_path / "fmnist_cnn.tflite"
    pipeline.save(path, model_bytes, meta)
    model = FgModel(path)
    assert [t.layer for t in model.meta.trainable] == layers
    assert model.has_prefix and model.meta.input_shape == (28, 28, 1)
    assert model.meta.class_names == fmnist_c.CLASSES
    images, labels = test_set[0][:500], test_set[1][:500]
    x = fmnist_c.preprocess(images)
    xq = model.quantize_input(x)
    np.testing.assert_array_equal(xq[..., 0], images.astype(np.int16) - 128)   # int8 input = pixel - 128
    np.testing.assert_array_equal(model.forward(xq, model.initial_params()), model.infer(xq))
    int8_acc = model.accuracy(xq, labels)
    keras_acc = fmnist_cnn.accuracy(cnn, images, labels)
    print(f"\n{trainable}: int8 accuracy {int8_acc:.3f}, Keras {keras_acc:.3f} (500 clean test images)")
    assert abs(int8_acc - keras_acc) <= 0.02, (int8_acc, keras_acc)


def test_tool_reports_the_cached_model(cnn, cache_dir):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "pretrain_fmnist_cnn.py"), f"--cache_dir={cache_dir}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "clean test accuracy 0.9" in out.stdout and str(fmnist_cnn.weights_path(cache_dir)) in out.stdout
    assert "training" not in out.stdout
