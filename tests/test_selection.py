"""Neuron selection: budgets are respected exactly, strategies rank as documented, NEq velocity
matches a hand-computed example, and masks freeze what they say (FF on the real int8 graph in
test_budget.py; here the numpy parts)."""
import numpy as np
import pytest

from tflite_fg import rng, selection

# conv 4 channels x 9, conv 6 x 36, dense 5 x 6 (TFLite layouts)
SHAPES = [(4, 3, 3, 1), (6, 3, 3, 4), (5, 6)]
AXES = [0, 0, 0]
LAY = selection.layout(["c1", "c2", "fc"], SHAPES, AXES)


def test_layout_counts_neurons_and_parameters():
    assert LAY.channels == (4, 6, 5) and LAY.params_per_channel == (9, 36, 6)
    assert LAY.total_params == 4 * 9 + 6 * 36 + 5 * 6 == 282
    assert LAY.num_neurons == 15 and LAY.neuron_params().tolist() == [9] * 4 + [36] * 6 + [6] * 5


@pytest.mark.parametrize("fraction", [0.088, 0.151, 0.274, 0.5, 1.0, 0.03])
@pytest.mark.parametrize("strategy", ["static", "random", "magnitude"])
def test_fill_fits_the_budget_exactly_or_just_under(fraction, strategy):
    budget = selection.budget_params(LAY, fraction)
    order = {"static": selection.static_order(LAY), "random": selection.random_order(LAY, 3, 0),
             "magnitude": np.arange(LAY.num_neurons)[::-1]}[strategy]
    chosen = selection.fill(LAY, order, budget)
    used = LAY.selected_params(chosen)
    assert used <= budget
    left_out = LAY.neuron_params()[~np.concatenate(chosen)]
    assert (left_out > budget - used).all()  # no unselected neuron would still fit
    if fraction == 1.0:
        assert used == LAY.total_params


def test_static_takes_the_last_layers_first_then_channels_in_order():
    chosen = selection.fill(LAY, selection.static_order(LAY), 30 + 36 * 2 + 9)
    assert [c.tolist() for c in chosen] == [[True, False, False, False], [True, True] + [False] * 4, [True] * 5]


def test_a_neuron_that_does_not_fit_is_skipped_for_smaller_ones():
    order = np.array([4, 0, 5, 1, 2, 3] + list(range(6, 15)))  # a conv2 neuron (36) first
    chosen = selection.fill(LAY, order, 40)
    assert LAY.selected_params(chosen) == 36  # 36 + 9 > 40: the 9-parameter neurons are skipped
    chosen = selection.fill(LAY, np.arange(15), 40)
    assert LAY.selected_params(chosen) == 36 and chosen[0].all()  # 4 x 9, then 36 no longer fits


def test_budget_errors_name_the_problem():
    with pytest.raises(ValueError, match="fraction in"):
        selection.budget_params(LAY, 0.0)
    with pytest.raises(ValueError, match="smallest neuron"):
        selection.fill(LAY, np.arange(15), 5)
    with pytest.raises(ValueError, match="permutation"):
        selection.fill(LAY, np.zeros(15, np.int64), 100)
    with pytest.raises(ValueError, match="strategy"):
        selection.SelectionConfig("bogus")


def test_random_order_is_the_documented_stream_and_changes_per_round():
    u = rng.uint32_stream(rng.stream_key(7, 2, rng.SELECT_INDEX, 0), 15).astype(np.int64)
    order = selection.random_order(LAY, 7, 2)
    assert order.tolist() == sorted(range(15), key=lambda i: (u[i], i))
    assert order.tolist() != selection.random_order(LAY, 7, 3).tolist()
    assert np.array_equal(order, selection.random_order(LAY, 7, 2))


def test_magnitude_ranks_mean_absolute_weight_times_scale():
    w = [np.stack([np.full((3, 3, 1), v, np.int8) for v in (1, -5, 3, 2)]),
         np.zeros((6, 3, 3, 4), np.int8), np.array([[1] * 6, [-2] * 6, [0] * 6, [4] * 6, [1] * 6], np.int8)]
    mag = selection.channel_magnitude(w, AXES, [1.0, 1.0, 0.5])
    assert mag[:4].tolist() == [1, 5, 3, 2] and mag[10:].tolist() == [0.5, 1.0, 0.0, 2.0, 0.5]
    sel = selection.Selector(selection.SelectionConfig("magnitude", 18 / 282), LAY, mag)
    assert [c.tolist() for c in sel.select(0)][0] == [False, True, True, False]  # 5 and 3 (9 params each)


def test_element_masks_broadcast_channels_along_each_layout_axis():
    masks = selection.element_masks([np.array([True, False]), np.array([False, True, True])],
                                    [(2, 3, 3, 1), (4, 3)], [0, 1])
    assert masks[0][0].all() and not masks[0][1].any()
    assert not masks[1][:, 0].any() and masks[1][:, 1:].all()


def test_velocity_matches_a_hand_computed_example():
    # one layer, two neurons; outputs over a batch of two, at rounds 0..3
    outs = [np.array([[1.0, 1.0], [0.0, 1.0]]), np.array([[1.0, 1.0], [1.0, 1.0]]),
            np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 0.0]])]
    st = selection.VelocityState()
    for o in outs[:2]:
        st = selection.observe_velocity(st, [o], mu=0.5)
    # phi_1: neuron 0 cos((1,0),(1,1)) = 1/sqrt2; neuron 1 cos((1,1),(1,1)) = 1
    assert np.allclose(st.phi, [2 ** -0.5, 1.0]) and np.allclose(st.velocity, 0) and not st.ready
    st = selection.observe_velocity(st, [outs[2]], mu=0.5)
    # phi_2: neuron 0 cos((0,1),(1,1)) = 1/sqrt2 -> dphi 0; neuron 1 = 1 -> dphi 0
    assert st.ready and np.allclose(st.velocity, [0.0, 0.0])
    st = selection.observe_velocity(st, [outs[3]], mu=0.5)
    # phi_3: neuron 0 cos((0,1),(0,1)) = 1 -> dphi 1 - 1/sqrt2; neuron 1 (0,0) vs (1,1) -> 0 -> dphi -1
    assert np.allclose(st.phi, [1.0, 0.0])
    assert np.allclose(st.velocity, [1 - 2 ** -0.5 - 0.5 * 0.0, -1.0 - 0.5 * 0.0])
    st2 = selection.observe_velocity(st, [outs[3]], mu=0.5)  # no change: phi = 1 for both
    assert np.allclose(st2.velocity, [(1 - 1) - 0.5 * (1 - 2 ** -0.5), (1 - 0) - 0.5 * -1.0])
    lay = selection.layout(["l"], [(2, 4)], [0])
    assert np.allclose(selection.velocity_scores(st2, lay), np.abs(st2.velocity) / 4)


def test_cosine_conventions_for_dead_neurons():
    z, one = np.zeros((3, 1)), np.ones((3, 1))
    assert selection.cosine_per_neuron([z], [z]).tolist() == [1.0]
    assert selection.cosine_per_neuron([z], [one]).tolist() == [0.0]
    with pytest.raises(ValueError, match="NaN"):
        selection.observe_velocity(selection.VelocityState(), [np.full((2, 2), np.nan)])


def test_velocity_selector_uses_init_strategy_until_three_rounds_then_highest_scores():
    cfg = selection.SelectionConfig("velocity", 60 / 282, every=10, init="static", seed=1)
    sel = selection.Selector(cfg, LAY)
    r = np.random.default_rng(0)
    outs = [[r.normal(size=(8, 2, 2, c)) for c in LAY.channels] for _ in range(3)]
    first = sel.select(0, outs[0])
    assert sel.history[-1]["by"] == "static" and sel.select(10, outs[1]) is not None
    assert sel.history[-1]["by"] == "static"
    chosen = np.concatenate(sel.select(20, outs[2]))
    assert sel.history[-1]["by"] == "velocity"
    expect = np.concatenate(selection.fill(LAY, np.lexsort((np.arange(15), -selection.velocity_scores(
        sel.velocity, LAY))), sel.budget))
    assert np.array_equal(chosen, expect) and LAY.selected_params(first) <= sel.budget
    assert sel.due(30) and not sel.due(31)
    with pytest.raises(ValueError, match="neuron outputs"):
        sel.select(30)


def test_static_strategies_are_chosen_once():
    sel = selection.Selector(selection.SelectionConfig("static", 0.5, every=10), LAY)
    assert sel.due(0) and not sel.due(10)


def test_cosine_sums_rows_in_order_even_for_one_channel():
    """The Java core adds rows in order; numpy's own sum is pairwise for a one-column matrix, so
    cosine_per_neuron fixes the order: each channel's cosine is the row-order loop's, bit for bit."""
    r = np.random.default_rng(5)
    for channels in (1, 3):
        a, b = r.standard_normal((1000, channels)), r.standard_normal((1000, channels))
        dot, na, nb = np.zeros(channels), np.zeros(channels), np.zeros(channels)
        for x, y in zip(a, b):
            dot, na, nb = dot + x * y, na + x * x, nb + y * y
        want = np.clip(dot / (np.sqrt(na) * np.sqrt(nb)), -1, 1)
        np.testing.assert_array_equal(selection.cosine_per_neuron([a], [b]), want)
