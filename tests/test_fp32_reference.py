"""The "FF fp32" baseline: the float Keras model under the runtime's own estimators and trainer.

Real converter outputs (conftest), real Fashion-MNIST images, real TensorFlow.
"""
import dataclasses

import numpy as np
import pytest

from converters import fp32_reference as fr
from converters import qat
from converters import tasks as ctasks
from tflite_fg import build, rng
from tflite_fg.config import TrainConfig
from tflite_fg.model import FgModel

# Measured on the default task (1000 test images): float 0.569, int8 head 0.565, int8 last:4 0.563.
MAX_ACCURACY_GAP = 0.02
# Measured: 300 head-only steps lower the support-set loss 1.104 -> 0.971.
MIN_LOSS_DROP = 0.05


@pytest.fixture(scope="module")
def float_model(fewshot_task, cache_dir):
    return ctasks.prototype_model(ctasks.load_source_model(cache=cache_dir), fewshot_task.x_support,
                                  fewshot_task.y_support, 10)


@pytest.fixture(scope="module")
def head(head_model_path):
    return FgModel(head_model_path)


@pytest.fixture(scope="module")
def head_ref(float_model, head):
    return fr.FloatReference(float_model, head.meta)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"precision": "fp32", "steps": 300, "batch_size": 64, "m": 3, "eps_lsb": 8, "lr": 1.0,
                          "seed": 0, **kw})


def test_initial_params_are_the_int8_kernels_before_rounding(head_ref, head):
    floats, ints = head_ref.initial_params(), head.initial_params()
    assert [p.shape for p in floats] == [t.shape for t in head.meta.trainable]
    for f, q in zip(floats, ints):
        assert f.dtype == np.float32
        assert np.abs(f - q.astype(np.float32)).max() <= 0.5 + 1e-4
        assert not np.array_equal(f, np.rint(f))  # not rounded: the float baseline starts from float weights
    floats[0][...] = 0  # a copy: the reference keeps its own
    assert np.abs(head_ref.initial_params()[0]).max() > 100


def _meta_for(meta, model, layers):
    """Metadata as the converter would write it for these trainable layers (scale = max|w| / 127)."""
    tensors = []
    for name in layers:
        layer = model.get_layer(name)
        kernel = layer.get_weights()[0]
        op = type(layer).__name__
        tensors.append(dataclasses.replace(meta.trainable[0], layer=name, input_name=f"w_{name}", op=op,
                                           shape=qat.keras_to_native(op, kernel).shape,
                                           scale=float(np.abs(kernel).max() / 127)))
    return dataclasses.replace(meta, trainable=tuple(tensors))


@pytest.mark.parametrize("layers", [("conv2d_6", "conv2d_8", "conv2d_7", "head"), ("conv2d", "conv2d_4")])
def test_trunk_tail_split_matches_the_full_float_model(float_model, head, fewshot_task, layers):
    """last:4 cuts ResNet-8 at one tensor with two trainable consumers; with the first conv trainable
    nothing is frozen (the tail is the whole model)."""
    ref = fr.FloatReference(float_model, _meta_for(head.meta, float_model, layers))
    assert (ref._trunk is None) == (layers[0] == "conv2d")
    x, y = fewshot_task.x_test[:100], fewshot_task.y_test[:100]
    p = ref.initial_params()
    assert max(float(np.abs(w).max()) for w in p) == pytest.approx(127, abs=1e-3)
    np.testing.assert_allclose(ref.logits(x, p), float_model(x, training=False).numpy(), rtol=1e-5, atol=1e-4)
    moved = [w * 0.5 for w in p]
    make = ref.minibatch_loss(x, y, seed=0, batch_size=32)
    idx = rng.minibatch_indices(0, 0, len(x), 32)
    assert make(0)(moved) == pytest.approx(ref.loss(moved, x[idx], y[idx]), rel=1e-5)
    assert make(0)(moved) != pytest.approx(make(0)(p), rel=1e-3)


def test_load_default_reference_builds_the_same_float_model(head_ref, head, fewshot_task, cache_dir):
    ref = fr.load_default_reference(fewshot_task, head.meta, cache=cache_dir)
    for a, b in zip(ref.initial_params(), head_ref.initial_params()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def test_float_accuracy_is_close_to_int8(head_ref, head, fewshot_task):
    t = fewshot_task
    float_acc = head_ref.accuracy(t.x_test, t.y_test, head_ref.initial_params())
    int8_acc = head.accuracy(head.quantize_input(t.x_test), t.y_test, head.initial_params())
    assert float_acc > 0.4 and abs(float_acc - int8_acc) <= MAX_ACCURACY_GAP, (float_acc, int8_acc)


def test_loss_is_deterministic_and_follows_params(head_ref, float_model, fewshot_task):
    x, y = fewshot_task.x_support[:64], fewshot_task.y_support[:64]
    p = head_ref.initial_params()
    base = head_ref.loss(p, x, y)
    moved = [w + 4.0 for w in p]
    assert head_ref.loss(moved, x, y) != base
    assert head_ref.loss(p, x, y) == base and head_ref.loss(p, x[:10], y[:10]) != base
    assert head_ref._tail.experimental_get_tracing_count() == 1  # one trace for every batch size
    # The caller's model is untouched by the kernel assignments.
    logits = float_model(x, training=False).numpy()
    np.testing.assert_allclose(head_ref.logits(x, p), logits, rtol=1e-5, atol=1e-4)


def test_minibatch_loss_uses_the_runtime_batches(head_ref, fewshot_task):
    t = fewshot_task
    make = head_ref.minibatch_loss(t.x_support, t.y_support, seed=3, batch_size=64)
    p = head_ref.initial_params()
    for step in (0, 7):
        idx = rng.minibatch_indices(3, step, len(t.x_support), 64)
        assert make(step)(p) == pytest.approx(head_ref.loss(p, t.x_support[idx], t.y_support[idx]), rel=1e-6)
    assert make(0)(p) != make(1)(p)


@pytest.mark.parametrize("mutate, message", [
    (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y), "NaN or inf"),
    (lambda x, y: (x[:, :16], y), "expects"),
    (lambda x, y: (x.astype(np.int8), y), "float"),
    (lambda x, y: (x, y + 10), "out of range"),
    (lambda x, y: (x, y[:-1]), "labels must be"),
    (lambda x, y: (x, y.astype(np.float32)), "labels must be"),
])
def test_bad_inputs_raise(head_ref, fewshot_task, mutate, message):
    x, y = mutate(fewshot_task.x_support[:8], fewshot_task.y_support[:8])
    with pytest.raises(ValueError, match=message):
        head_ref.loss(head_ref.initial_params(), x, y)


def test_bad_params_and_models_raise(head_ref, head, float_model, fewshot_task):
    x, y = fewshot_task.x_support[:8], fewshot_task.y_support[:8]
    p = head_ref.initial_params()
    with pytest.raises(ValueError, match="expected 1 trainable"):
        head_ref.loss(p + p, x, y)
    with pytest.raises(ValueError, match="native layout"):
        head_ref.loss([p[0].T], x, y)
    with pytest.raises(ValueError, match="NaN or inf"):
        head_ref.loss([np.full_like(p[0], np.inf)], x, y)
    t = head.meta.trainable[0]
    for bad, message in [(dataclasses.replace(t, layer="nope"), "not in the float model"),
                         (dataclasses.replace(t, op="Conv2D"), "is a Dense"),
                         (dataclasses.replace(t, shape=(64, 10)), "metadata says")]:
        with pytest.raises(ValueError, match=message):
            fr.FloatReference(float_model, dataclasses.replace(head.meta, trainable=(bad,)))
    with pytest.raises(ValueError, match="precision='fp32'"):
        fr.setup_training(head_ref, _cfg(precision="w8"), x, y)


def _train(ref, task, **kw):
    run = fr.setup_training(ref, _cfg(**kw), task.x_support, task.y_support)
    return run, list(fr.fit(run))


def test_short_fp32_run_lowers_the_loss_and_is_reproducible(head_ref, fewshot_task):
    t = fewshot_task
    run, history = _train(head_ref, t)
    final = history[-1][0]
    assert run.space.name == "fp32" and final.step == 300 and final.forward_passes == 1800
    assert all(p.dtype == np.float32 for p in final.params)
    start_loss = head_ref.loss(run.state.params, t.x_support, t.y_support)
    end_loss = head_ref.loss(final.params, t.x_support, t.y_support)
    assert end_loss < start_loss - MIN_LOSS_DROP, (start_loss, end_loss)
    logged = [log["loss"] for _, log in history]
    assert np.mean(logged[-50:]) < np.mean(logged[:50])
    # Updates are float: weights move off the int8 grid by fractions of an LSB.
    assert not np.array_equal(final.params[0], np.rint(final.params[0]))
    _, again = _train(head_ref, t)
    assert all(np.array_equal(a, b) for a, b in zip(final.params, again[-1][0].params))
    _, other = _train(head_ref, t, seed=1, steps=5)
    assert not np.array_equal(other[-1][0].params[0], history[4][0].params[0])


def test_masks_freeze_the_float_weights(head_ref, fewshot_task):
    """Masks are built from the int8 rounding of the float start (fr.int8_grid)."""
    run, history = _train(head_ref, fewshot_task, steps=5, mask="topk", sparsity=0.9)
    start, end = run.state.params[0], history[-1][0].params[0]
    (keep,) = build.build_masks(run.cfg, fr.int8_grid([start]))
    changed = start != end
    assert changed.any() and not (changed & ~keep).any() and keep.sum() == 64
