import numpy as np
import pytest

from tflite_fg import estimators, precision, rng, samplers, trainer, updates

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


# ---- precision modes and update rounding --------------------------------------------------------

ZEROS = [np.zeros((4, 5), np.int8), np.zeros(3, np.int8)]
START = quadratic([np.zeros((4, 5)), np.zeros(3)])


def _fit(space, est, tx, steps, loss=quadratic, seed=0):
    state = trainer.init_state(ZEROS, est, tx, space)
    for state, _ in trainer.fit(state, lambda step: loss, est, tx, seed, steps, space):
        pass
    return state


@pytest.mark.parametrize("engine_rounding", ["nearest", "stochastic"])
def test_w16_training_converges_and_the_engine_sees_int8(engine_rounding):
    space = precision.integer_space(16, engine_rounding=engine_rounding)
    est = estimators.sign_m_spsa(samplers.gaussian_q8(), 3, 0.5, space)  # eps: half an int8 LSB
    tx = updates.chain(updates.scale_by_learning_rate(1.0 * 256), updates.round_to_int())  # 1 int8 LSB
    seen = set()

    def loss(params):
        seen.update(p.dtype for p in params)
        return quadratic(params)

    final = _fit(space, est, tx, 400, loss)
    assert seen == {np.dtype(np.int8)}
    assert all(p.dtype == np.int16 for p in final.params)
    assert quadratic(space.to_engine(final.params)) < 0.02 * START
    assert final.forward_passes == 2400


def test_w16_loss_fn_receives_the_engine_rounding_of_each_probe():
    space = precision.integer_space(16, engine_rounding="stochastic")
    sampler = samplers.gaussian_q8()
    est = estimators.sign_m_spsa(sampler, 2, 0.5, space)
    tx = updates.chain(updates.scale_by_learning_rate(100.0), updates.round_to_int())
    state = trainer.init_state(ZEROS, est, tx, space)
    state, _ = trainer.train_step(state, quadratic, est, tx, seed=3, space=space)  # now at step 1
    calls = []
    trainer.train_step(state, lambda p: calls.append([a.copy() for a in p]) or 0.0, est, tx, seed=3, space=space)
    assert len(calls) == 4
    for i in range(2):
        z, _ = sampler.sample(sampler.init(ZEROS), 3, 1, i)
        for k, sign in ((2 * i, 1), (2 * i + 1, -1)):
            expected = space.to_engine(space.perturb(state.params, z, (0.5, 0.5), sign), 3, 1)
            assert all(np.array_equal(a, b) for a, b in zip(calls[k], expected))


def test_w8_stochastic_update_rounding_moves_where_nearest_cannot():
    # lr = 0.2 LSB per unit z with m = 3: |lr * g| < 0.5 unless |g| > 2.5 (g ~ a mean of 3 signed z),
    # so round-to-nearest (almost) never moves a weight, while unbiased stochastic rounding moves
    # them by lr * g on average and still converges (the documented reason for update_rounding).
    def run_with(last):
        est = estimators.sign_m_spsa(samplers.gaussian_q8(), 3, 1)
        tx = updates.chain(updates.scale_by_learning_rate(0.2), last)
        return quadratic(_fit(precision.integer_space(8), est, tx, 600).params)

    nearest = run_with(updates.round_to_int())
    stochastic = run_with(updates.stochastic_round(0))
    assert nearest > 0.95 * START
    assert stochastic < 0.3 * START


def test_paper_integer_recipe_trains():
    space = precision.integer_space(8, "paper")
    est = estimators.sign_m_spsa(samplers.gaussian_q8(), 3, 1, space, quantized=True)
    tx = updates.integer_sgd(1.0)
    final = _fit(space, est, tx, 300)
    assert quadratic(final.params) < 0.05 * START


def test_float_space_training():
    space = precision.float_space()
    est = estimators.sign_m_spsa(samplers.gaussian_q8(), 3, 0.5, space)
    tx = updates.scale_by_learning_rate(0.5)
    seen = set()

    def loss(params):
        seen.update(p.dtype for p in params)
        return quadratic(params)

    final = _fit(space, est, tx, 400, loss)
    assert seen == {np.dtype(np.float32)} and all(p.dtype == np.float32 for p in final.params)
    assert quadratic(final.params) < 0.01 * START
