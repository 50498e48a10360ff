import numpy as np
import pytest

from tflite_fg import quant, rng, schedules, updates


def test_scale_by_learning_rate_is_descent_in_float32():
    t = updates.scale_by_learning_rate(2.5)
    out, state = t.update([np.array([1.0, -0.4, 0.0], np.float32)], t.init([]), None)
    assert out[0].dtype == np.float32 and state == updates.EmptyState()
    np.testing.assert_array_equal(out[0], np.array([-2.5, 1.0, 0.0], np.float32))


@pytest.mark.parametrize("lr", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_learning_rate(lr):
    with pytest.raises(ValueError, match="lr"):
        updates.scale_by_learning_rate(lr)


def test_round_to_int_half_to_even():
    t = updates.round_to_int()
    out, _ = t.update([np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, -2.51, 1e30], np.float32)], t.init([]), None)
    assert out[0].dtype == np.int32
    np.testing.assert_array_equal(out[0], [0, 2, 2, 0, -2, 0, -3, 1 << 24])
    with pytest.raises(ValueError, match="non-finite"):
        t.update([np.array([np.nan], np.float32)], (), None)


def test_chain_applies_in_order_and_keeps_states():
    t = updates.chain(updates.scale_by_learning_rate(0.5), updates.round_to_int())
    state = t.init([np.zeros(3, np.int8)])
    assert state == (updates.EmptyState(), updates.EmptyState())
    out, new_state = t.update([np.array([3.0, -1.0, 1.0], np.float32)], state, None)
    np.testing.assert_array_equal(out[0], [-2, 0, 0])  # -1.5 -> -2, 0.5 -> 0, -0.5 -> 0
    assert new_state == state
    reversed_order = updates.chain(updates.round_to_int(), updates.scale_by_learning_rate(0.5))
    out2, _ = reversed_order.update([np.array([3.0, -1.0, 1.0], np.float32)], reversed_order.init([]), None)
    np.testing.assert_array_equal(out2[0], np.array([-1.5, 0.5, -0.5], np.float32))
    with pytest.raises(ValueError, match="chain state"):
        t.update([np.zeros(3, np.float32)], (updates.EmptyState(),), None)


# ---- schedules, stochastic rounding, integer SGD ----------------------------------------------


def test_scale_by_schedule_counts_steps():
    t = updates.scale_by_schedule(schedules.step_decay(1, 0.5))
    state = t.init([])
    assert int(state.count) == 0
    outs = []
    for _ in range(3):
        out, state = t.update([np.array([2.0, -4.0], np.float32)], state, None)
        outs.append(out[0].tolist())
    assert outs == [[2.0, -4.0], [1.0, -2.0], [0.5, -1.0]] and int(state.count) == 3
    assert out[0].dtype == np.float32


def test_stochastic_round_floor_or_ceil_unbiased_deterministic():
    t = updates.stochastic_round(seed=4)
    n = 100_000
    x = [np.full(n, 0.3, np.float32), np.full(n, -2.75, np.float32), np.array([1.0, -3.0, 0.0], np.float32)]
    out, state = t.update(x, t.init([]), None)
    assert int(state.count) == 1 and all(o.dtype == np.int32 for o in out)
    assert set(np.unique(out[0]).tolist()) == {0, 1} and set(np.unique(out[1]).tolist()) == {-3, -2}
    assert abs(out[0].mean() - 0.3) < 0.005 and abs(out[1].mean() + 2.75) < 0.005  # unbiased
    assert out[2].tolist() == [1, -3, 0]  # whole numbers are exact
    # the documented stream: round up iff frac * 2**32 > u, u from (seed, count, UPDATE_ROUND_INDEX, tensor)
    u = rng.uint32_stream(rng.stream_key(4, 0, rng.UPDATE_ROUND_INDEX, 1), n).astype(np.float64)
    np.testing.assert_array_equal(out[1], -3 + (0.25 * 2**32 > u))
    again, _ = t.update(x, t.init([]), None)
    assert all(np.array_equal(a, b) for a, b in zip(out, again))
    next_step, _ = t.update(x, state, None)  # count 1: new draws
    assert not np.array_equal(next_step[0], out[0])
    other_seed, _ = updates.stochastic_round(5).update(x, t.init([]), None)
    assert not np.array_equal(other_seed[0], out[0])


def test_stochastic_round_rejects_non_finite():
    t = updates.stochastic_round(0)
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="non-finite"):
            t.update([np.array([1.0, bad], np.float32)], t.init([]), None)
    big, _ = t.update([np.array([1e30, -1e30], np.float32)], t.init([]), None)
    assert big[0].tolist() == [1 << 24, -(1 << 24)]  # finite but huge: clipped, as round_to_int


def test_integer_sgd_nearest_hand_worked():
    # M = round(lr * Dz * 2**24) = round(462364.22) = 462364 for lr = 1 LSB per unit z.
    # u = (-g * M + 2**23) >> 24: g = 36 (z = 1): -16645104 + 8388608 = -8256496 >> 24 = -1 (-0.992);
    # g = 18: -0.496 -> 0; g = 19: -0.524 -> -1; g = 10 -> 0; g = 127: -3.49999 -> -3; g = -127 -> 3.
    t = updates.integer_sgd(1.0)
    g = np.array([36, -36, 10, 18, 19, 127, -127], np.int8)
    out, state = t.update([g], t.init([]), None)
    assert out[0].dtype == np.int32 and int(state.count) == 1
    np.testing.assert_array_equal(out[0], [-1, 1, 0, 0, -1, -3, 3])
    # per-tensor rates: lr = 0.3 -> M = 138709: g = 36 -> -0.298 -> 0; g = 127 -> -1.05 -> -1
    t2 = updates.integer_sgd([1.0, 0.3])
    out2, _ = t2.update([g, np.array([36, 127, -127], np.int8)], t2.init([]), None)
    np.testing.assert_array_equal(out2[0], out[0])
    np.testing.assert_array_equal(out2[1], [0, -1, 1])
    with pytest.raises(ValueError, match="lr has 2 entries"):
        t2.update([g], t2.init([]), None)


def test_integer_sgd_schedule_changes_the_multiplier_per_step():
    # lr = 2, step decay 0.5 per step, g = 36: -1.984 -> -2; -0.992 -> -1; -0.496 -> 0
    t = updates.integer_sgd(2.0, schedules.step_decay(1, 0.5))
    state, outs = t.init([]), []
    for _ in range(3):
        out, state = t.update([np.array([36], np.int8)], state, None)
        outs.append(int(out[0][0]))
    assert outs == [-2, -1, 0] and int(state.count) == 3


def test_integer_sgd_stochastic_is_unbiased():
    n = 100_000
    t = updates.integer_sgd(0.3, stochastic_seed=7)
    g = np.full(n, 36, np.int8)
    out, state = t.update([g], t.init([]), None)
    expected = -36 * 138709 / 2**24  # -0.29764
    assert set(np.unique(out[0]).tolist()) == {-1, 0}
    assert abs(out[0].mean() - expected) < 0.005
    # the documented stream: (-g M + (u >> 8)) >> 24
    u = rng.uint32_stream(rng.stream_key(7, 0, rng.UPDATE_ROUND_INDEX, 0), n).astype(np.int64)
    np.testing.assert_array_equal(out[0], (-36 * 138709 + (u >> 8)) >> 24)
    again, _ = t.update([g], t.init([]), None)
    np.testing.assert_array_equal(again[0], out[0])
    assert not np.array_equal(t.update([g], state, None)[0][0], out[0])
    # a rate so small that nearest never moves still moves on average
    tiny = updates.integer_sgd(0.01, stochastic_seed=1)
    moved, _ = tiny.update([g], tiny.init([]), None)
    assert abs(moved[0].mean() - (-36 * round(0.01 * quant.Z_SCALE * 2**24) / 2**24)) < 0.002
    nearest, _ = updates.integer_sgd(0.01).update([g], updates.integer_sgd(0.01).init([]), None)
    assert not np.any(nearest[0])


def test_integer_sgd_rejects_float_gradients_and_bad_rates():
    t = updates.integer_sgd(1.0)
    with pytest.raises(TypeError, match="integer"):
        t.update([np.array([0.5], np.float32)], t.init([]), None)
    for bad in (0.0, -1.0, float("nan"), [1.0, 0.0]):
        with pytest.raises(ValueError, match="lr"):
            updates.integer_sgd(bad)


def test_average_gradients_is_an_exponential_average_in_float32():
    tx = updates.average_gradients(0.75)
    g1, g2 = [np.array([4.0, -8.0], np.float32)], [np.array([0.0, 8.0], np.float32)]
    state = tx.init([np.zeros(2, np.int8)])
    out, state = tx.update(g1, state)
    np.testing.assert_array_equal(out[0], [1.0, -2.0])
    out, state = tx.update(g2, state)
    np.testing.assert_array_equal(out[0], [0.75, 0.5])  # 0.75 * [1, -2] + 0.25 * [0, 8]
    assert out[0].dtype == np.float32 and state.average[0] is out[0]
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="decay"):
            updates.average_gradients(bad)


def test_scale_by_adam_matches_the_algorithm_in_float64_and_is_scale_free():
    rs = np.random.default_rng(0)
    grads = [rs.normal(size=(3, 4)).astype(np.float32) * 1e-3 for _ in range(20)]
    tx = updates.scale_by_adam(0.9, 0.999, 1e-7)
    state = tx.init([np.zeros((3, 4))])
    m = v = np.zeros((3, 4))
    for t, g in enumerate(grads, 1):
        (d,), state = tx.update([g], state)
        assert d.dtype == np.float32
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g.astype(np.float64) ** 2
        ref = (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-7)
        np.testing.assert_allclose(d, ref, rtol=2e-5)
    # the direction does not depend on the gradient's scale (up to eps): what makes its rate a step in LSBs
    state = tx.init([np.zeros((3, 4))])
    (first,), _ = tx.update([grads[0] * 1000], state)
    np.testing.assert_allclose(first, np.sign(grads[0]), rtol=1e-3)
    np.testing.assert_array_equal(tx.update([np.zeros((3, 4), np.float32)], tx.init([np.zeros((3, 4))]))[0][0], 0)


def test_scale_by_adam_rejects_bad_constants():
    for b1, b2, eps in ((1.0, 0.999, 1e-7), (0.9, -0.1, 1e-7), (0.9, 0.999, 0.0)):
        with pytest.raises(ValueError, match="adam needs"):
            updates.scale_by_adam(b1, b2, eps)


def test_split_head_runs_its_transforms_on_head_and_body_only():
    tx = updates.split_head(updates.scale_by_adam(), updates.average_gradients(0.5))
    params = [np.zeros(2), np.zeros(3), np.zeros(1)]
    state = tx.init(params)
    assert len(state.body.average) == 2 and len(state.head.mu) == 1
    g = [np.full(2, 4, np.float32), np.full(3, -2, np.float32), np.full(1, 1e-2, np.float32)]
    out, state = tx.update(g, state, params)
    np.testing.assert_array_equal(out[0], 2)  # 0.5 * 0 + 0.5 * 4
    np.testing.assert_array_equal(out[1], -1)
    np.testing.assert_allclose(out[2], 1, rtol=1e-3)  # Adam's first step is the sign
    plain = updates.split_head(updates.scale_by_adam())
    out, _ = plain.update(g, plain.init(params), params)
    assert out[0] is g[0] and out[1] is g[1]
