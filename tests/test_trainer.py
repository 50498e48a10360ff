import numpy as np
import pytest

from tflite_fg import estimators, rng, samplers, trainer, updates

TARGET = [np.arange(-30, 30, 3, dtype=np.float64).reshape(4, 5), np.array([90.0, -100.0, 7.0])]


def quadratic(params):
    return float(sum(np.sum((w.astype(np.float64) - t) ** 2) for w, t in zip(params, TARGET)))


def setup(lr=1.0, m=3):
    est = estimators.sign_m_spsa(samplers.gaussian_q8(), m, 1)
    tx = updates.chain(updates.scale_by_learning_rate(lr), updates.round_to_int())
    state = trainer.init_state([np.zeros((4, 5), np.int8), np.zeros(3, np.int8)], est, tx)
    return state, est, tx


def run(seed, steps, state=None):
    fresh, est, tx = setup()
    return list(trainer.fit(state or fresh, lambda step: quadratic, est, tx, seed, steps))


def test_train_step_counts_and_log():
    state, est, tx = setup()
    new, log = trainer.train_step(state, quadratic, est, tx, seed=0)
    assert (new.step, new.forward_passes) == (1, 6) and state.step == 0
    assert log["step"] == 1 and log["forward_passes"] == 6 and log["changed_weights"] > 0
    assert np.isfinite(log["loss"])
    assert all(not np.any(p) for p in state.params)  # the old state is untouched


def test_fit_converges_on_integer_quadratic():
    history = run(seed=0, steps=400)
    start = quadratic([np.zeros((4, 5)), np.zeros(3)])
    final = history[-1][0]
    assert len(history) == 400 and final.step == 400 and final.forward_passes == 2400
    assert quadratic(final.params) < 0.02 * start
    assert all(p.dtype == np.int8 for p in final.params)


def test_fit_uses_the_steps_minibatch_and_stops_at_total_steps():
    seen = []

    def make_loss_fn(step):
        seen.append(rng.minibatch_indices(0, step, 100, 4).tolist())
        return quadratic

    state, est, tx = setup()
    out = list(trainer.fit(state, make_loss_fn, est, tx, 0, 3))
    assert [s.step for s, _ in out] == [1, 2, 3] and len(seen) == 3 and seen[0] != seen[1]
    assert list(trainer.fit(out[-1][0], make_loss_fn, est, tx, 0, 3)) == []


def test_determinism():
    a, b, c = run(1, 20)[-1][0], run(1, 20)[-1][0], run(2, 20)[-1][0]
    assert all(np.array_equal(x, y) for x, y in zip(a.params, b.params))
    assert not all(np.array_equal(x, y) for x, y in zip(a.params, c.params))


def test_init_state_copies_and_checks_dtype():
    params = [np.ones(3, np.int8)]
    est = estimators.sign_m_spsa(samplers.rademacher(), 1, 1)
    state = trainer.init_state(params, est, updates.round_to_int())
    assert state.params[0] is not params[0] and state.step == 0 and state.forward_passes == 0
    with pytest.raises(TypeError, match="int8"):
        trainer.init_state([np.ones(3, np.int32)], est, updates.round_to_int())
