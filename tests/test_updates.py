import numpy as np
import pytest

from tflite_fg import updates


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


def test_apply_updates_saturates_and_returns_new_arrays():
    params = [np.array([120, -120, 0, 5], np.int8)]
    new = updates.apply_updates_int8(params, [np.array([10, -10, 300, -2], np.int32)])
    assert new[0].dtype == np.int8 and new[0] is not params[0]
    np.testing.assert_array_equal(new[0], [127, -127, 127, 3])
    np.testing.assert_array_equal(params[0], [120, -120, 0, 5])


def test_apply_updates_rejects_floats_and_bad_shapes():
    params = [np.zeros(2, np.int8)]
    with pytest.raises(TypeError, match="round_to_int"):
        updates.apply_updates_int8(params, [np.array([0.6, 1.0], np.float32)])
    with pytest.raises(ValueError, match="shape"):
        updates.apply_updates_int8(params, [np.zeros(3, np.int32)])
    with pytest.raises(ValueError, match="params"):
        updates.apply_updates_int8(params, [])
