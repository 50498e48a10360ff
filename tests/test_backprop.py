"""Keras backprop reference (converters/backprop.py) on the real ResNet-8 prototype model and the real
Fashion-MNIST few-shot task."""
import numpy as np
import pytest

from converters import backprop as bp
from converters import tasks as ctasks
from tflite_fg import rng, tasks

BLOCK = "last:4"  # conv2d_6, conv2d_8, conv2d_7 and the head: the last residual block


@pytest.fixture(scope="module")
def float_model(fewshot_task, cache_dir):
    return ctasks.prototype_model(ctasks.load_source_model(cache=cache_dir), fewshot_task.x_support,
                                  fewshot_task.y_support, 10)


def _weights_by_layer(model):
    return {l.name: [w.copy() for w in l.get_weights()] for l in model.layers}


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def test_only_trainable_kernels_change(float_model, fewshot_task):
    caller_before = _weights_by_layer(float_model)
    m = bp.build_bp_model(float_model, "head", "fp32")
    assert m.trainable == ["head"]
    before = _weights_by_layer(m.model)
    trainer = bp.BackpropTrainer(m, "sgd", 0.05)
    for _ in trainer.fit_steps(fewshot_task.x_support, fewshot_task.y_support, 5, 32, seed=0):
        pass
    after = _weights_by_layer(m.model)
    (name,) = m.trainable
    assert not np.array_equal(after[name][0], before[name][0])           # the head's kernel moved
    np.testing.assert_array_equal(after[name][1], before[name][1])       # its bias is frozen, as in FF
    assert all(_same(after[n], before[n]) for n in before if n != name)  # every other layer is untouched
    assert trainer.steps == trainer.forward_passes == trainer.backward_passes == 5
    # The caller's model is copied, never trained nor re-flagged.
    assert all(_same(w, caller_before[n]) for n, w in _weights_by_layer(float_model).items())
    assert all(l.trainable for l in float_model.layers)
    assert [l.name for l in m.model.layers if l.trainable] == [name]

    with_bias = bp.BackpropTrainer(bp.build_bp_model(float_model, "head", "fp32"), "sgd", 0.05, train_bias=True)
    b0 = with_bias.bp.bias_variables()[0].numpy().copy()
    with_bias.step(fewshot_task.x_support[:32], fewshot_task.y_support[:32])
    assert not np.array_equal(with_bias.bp.bias_variables()[0].numpy(), b0)


def _run(float_model, task, seed, steps, spec=BLOCK, optimizer="adam", lr=1e-3):
    trainer = bp.BackpropTrainer(bp.build_bp_model(float_model, spec, "fp32"), optimizer, lr)
    records = list(trainer.fit_steps(task.x_support, task.y_support, steps, 32, seed))
    return trainer, records


def test_same_seed_gives_bit_identical_weights(float_model, fewshot_task):
    """Measured bit-identical on 2 x86-64 CPU cores without tf.config.experimental.enable_op_determinism()
    (the test asserts exact equality; it would need that switch on a GPU)."""
    a, ra = _run(float_model, fewshot_task, 3, 20)
    b, rb = _run(float_model, fewshot_task, 3, 20)
    assert all(np.array_equal(u, v) for u, v in zip(a.trainable_values(), b.trainable_values()))
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
    c, _ = _run(float_model, fewshot_task, 4, 20)
    assert not np.array_equal(a.trainable_values()[0], c.trainable_values()[0])


def test_batches_are_the_ff_minibatches(float_model, fewshot_task):
    """fit_steps draws step t's batch as FF does: rng.minibatch_indices(seed, t, n, batch_size)."""
    x, y = fewshot_task.x_support, fewshot_task.y_support
    fitted, records = _run(float_model, fewshot_task, 7, 6, spec="head", optimizer="momentum", lr=0.01)
    manual = bp.BackpropTrainer(bp.build_bp_model(float_model, "head", "fp32"), "momentum", 0.01)
    losses = []
    for t in range(6):
        idx = rng.minibatch_indices(7, t, len(x), 32)
        losses.append(manual.step(x[idx], y[idx]))
    assert losses == [r["loss"] for r in records]
    assert all(np.array_equal(u, v) for u, v in zip(fitted.trainable_values(), manual.trainable_values()))
    # A second call goes on numbering steps from where the first stopped.
    more = list(fitted.fit_steps(x, y, 2, 32, 7))
    idx = rng.minibatch_indices(7, 6, len(x), 32)
    assert [r["step"] for r in more] == [7, 8] and more[0]["loss"] == pytest.approx(manual.loss(x[idx], y[idx]), rel=1e-5)


def test_records_and_time_to_target(float_model, fewshot_task):
    trainer = bp.BackpropTrainer(bp.build_bp_model(float_model, "head", "fp32"), "adam", 1e-2)
    x_eval, y_eval = fewshot_task.x_test[:200], fewshot_task.y_test[:200]
    records = list(trainer.fit_steps(fewshot_task.x_support, fewshot_task.y_support, 7, 500, 0,
                                     eval_fn=lambda t: t.accuracy(x_eval, y_eval), eval_every=3))
    assert [r["step"] for r in records] == list(range(1, 8))
    assert [r["step"] for r in records if "eval" in r] == [3, 6, 7]      # every 3 steps and the last one
    walls = [r["wall_s"] for r in records]
    assert all(w > 0 for w in walls) and walls == sorted(walls)
    assert all(r["forward_passes"] == r["step"] for r in records)
    hit = bp.time_to_target(records, records[-1]["eval"])
    assert hit is not None and hit["eval"] >= records[-1]["eval"] and hit["step"] <= 7
    assert bp.time_to_target(records, 1.01) is None
    assert trainer.accuracy(x_eval, y_eval) == records[-1]["eval"]


def test_adam_on_the_last_block_improves_test_accuracy(float_model, fewshot_task):
    """Measured (seed 0, batch 32, lr 1e-3): 56.9% (prototype head) -> 73.4% after 100 steps."""
    trainer = bp.BackpropTrainer(bp.build_bp_model(float_model, BLOCK, "fp32"), "adam", 1e-3)
    before = trainer.accuracy(fewshot_task.x_test, fewshot_task.y_test)
    for _ in trainer.fit_steps(fewshot_task.x_support, fewshot_task.y_support, 100, 32, 0):
        pass
    after = trainer.accuracy(fewshot_task.x_test, fewshot_task.y_test)
    assert before == pytest.approx(0.569, abs=0.01)
    assert after >= before + 0.12, (before, after)


def test_qat_kind_trains_and_keeps_its_grid(float_model, fewshot_task):
    """The tfmot QAT model of the converter: measured 56.1% -> 71.7% after 100 Adam steps (lr 1e-3).
    Frozen layers, including every quantizer range, stay as calibrated."""
    m = bp.build_bp_model(float_model, BLOCK, "qat", representative=fewshot_task.x_support,
                          input_range=tasks.INPUT_RANGE)
    assert [l.name for l in m.layers] == ["quant_conv2d_6", "quant_conv2d_8", "quant_conv2d_7", "quant_head"]
    frozen = m.frozen_weights()
    trainer = bp.BackpropTrainer(m, "adam", 1e-3)
    before = trainer.accuracy(fewshot_task.x_test, fewshot_task.y_test)
    k0 = trainer.trainable_values()
    for _ in trainer.fit_steps(fewshot_task.x_support, fewshot_task.y_support, 100, 32, 0):
        pass
    after = trainer.accuracy(fewshot_task.x_test, fewshot_task.y_test)
    assert all(not np.array_equal(a, b) for a, b in zip(k0, trainer.trainable_values()))
    assert _same(frozen, m.frozen_weights())
    assert after >= before + 0.1, (before, after)


def test_bad_arguments(float_model, fewshot_task):
    with pytest.raises(ValueError, match="choices: fp32, qat"):
        bp.build_bp_model(float_model, "head", "int8")
    with pytest.raises(ValueError, match="representative"):
        bp.build_bp_model(float_model, "head", "qat")
    with pytest.raises(ValueError, match="unknown trainable"):
        bp.build_bp_model(float_model, "conv2d_99", "fp32")
    m = bp.build_bp_model(float_model, "head", "fp32")
    with pytest.raises(ValueError, match="choices: sgd, momentum, adam"):
        bp.BackpropTrainer(m, "rmsprop")
    trainer = bp.BackpropTrainer(m, "sgd", 0.1)
    with pytest.raises(ValueError, match="labels out of range"):
        trainer.step(fewshot_task.x_support[:4], np.array([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="expects"):
        trainer.step(fewshot_task.x_support[:4, :16], fewshot_task.y_support[:4])
    with pytest.raises(ValueError, match="batch_size"):
        next(trainer.fit_steps(fewshot_task.x_support, fewshot_task.y_support, 1, 0, 0))


def test_update_masks_freeze_weights_bit_exactly_even_after_adam_saw_them(float_model, fewshot_task):
    """A weight that Adam updated while selected must not move once it is masked out (its first and
    second moments are non-zero), and the layer outputs come back one per trainable layer."""
    m = bp.build_bp_model(float_model, BLOCK, "fp32")
    trainer = bp.BackpropTrainer(m, "adam", 1e-2)
    x, y = fewshot_task.x_support, fewshot_task.y_support
    for _ in trainer.fit_steps(x, y, 3, 32, seed=0):  # everything moves: moments everywhere
        pass
    kernels = m.kernel_variables()
    masks = [np.zeros(v.shape, bool) for v in kernels]
    masks[-1][:, 0] = True  # one output channel of the head (Keras Dense kernel [in, out])
    before = [v.numpy().copy() for v in kernels]
    trainer.set_update_masks(masks)
    for _ in trainer.fit_steps(x, y, 3, 32, seed=0):
        pass
    after = [v.numpy() for v in kernels]
    for b, a, mk in zip(before, after, masks):
        np.testing.assert_array_equal(a[~mk], b[~mk])
    assert not np.array_equal(after[-1][:, 0], before[-1][:, 0])
    trainer.set_update_masks(None)
    for _ in trainer.fit_steps(x, y, 1, 32, seed=0):
        pass
    assert not np.array_equal(kernels[0].numpy(), after[0])
    with pytest.raises(ValueError, match="shaped like the trainable kernels"):
        trainer.set_update_masks([np.ones((2, 2), bool)])
    outs = m.neuron_outputs(x[:5])
    assert [o.shape[0] for o in outs] == [5] * len(kernels)
    assert [o.shape[-1] for o in outs] == [v.shape[a] for v, a in zip(kernels, m.channel_axes())]
