"""selective.fit_selected: trainer.fit under a neuron selection, re-selected every round. A numpy
quadratic loss stands in for the network here (the loop is what is tested; tests/test_budget.py runs
it on the real int8 graph)."""
import numpy as np
import pytest

from tflite_fg import build, selection, selective, trainer
from tflite_fg.config import TrainConfig

SHAPES = [(6, 4), (3, 6)]  # two dense kernels [out, in]: 6 neurons of 4, 3 neurons of 6
AXES = [0, 0]
LAY = selection.layout(["a", "b"], SHAPES, AXES)
TARGET = [np.full(SHAPES[0], 20, np.int8), np.full(SHAPES[1], -20, np.int8)]


def _loss(params):
    return float(sum(np.sum((p.astype(np.float64) - t) ** 2) for p, t in zip(params, TARGET)))


def _fit(strategy, budget=0.5, steps=12, every=4):
    cfg = TrainConfig(seed=3, steps=steps, batch_size=1, m=2, eps_lsb=2, lr=1.0)
    start = [np.zeros(s, np.int8) for s in SHAPES]
    space, tx = build.build_space(cfg), build.build_transform(cfg)
    sel = selection.Selector(selection.SelectionConfig(strategy, budget, every, seed=3), LAY)
    ever = [np.zeros(s, bool) for s in SHAPES]

    def make_estimator(support):
        for e, s in zip(ever, support):
            e |= s
        return build.build_estimator(cfg, start, space, support)

    rng = np.random.default_rng(0)
    outputs_of = lambda s: [rng.normal(size=(5, c)) for c in LAY.channels]  # noqa: E731
    state = trainer.init_state(start, build.build_estimator(cfg, start, space), tx, space)
    logs = list(selective.fit_selected(state, lambda step: _loss, make_estimator, tx, cfg.seed, steps, space, sel,
                                       lambda c: selection.element_masks(c, SHAPES, AXES), outputs_of))
    return logs[-1][0], logs, sel, ever, start


@pytest.mark.parametrize("strategy", ["static", "random", "velocity"])
def test_only_ever_selected_weights_move_and_rounds_reselect(strategy):
    state, logs, sel, ever, start = _fit(strategy)
    assert state.step == 12 and len(logs) == 12
    assert len(sel.history) == (1 if strategy == "static" else 3)
    assert all(log["selected_params"] <= sel.budget for _, log in logs)
    for p, s, e in zip(state.params, start, ever):
        np.testing.assert_array_equal(p[~e], s[~e])
    assert any(np.any(p[e] != s[e]) for p, s, e in zip(state.params, start, ever))
    assert _loss(state.params) < _loss(start)


def test_same_seed_is_bit_identical():
    a, b = _fit("random")[0], _fit("random")[0]
    assert all(np.array_equal(x, y) for x, y in zip(a.params, b.params))


def test_velocity_without_outputs_is_refused():
    cfg = TrainConfig(steps=2, batch_size=1, lr=1.0)
    start = [np.zeros(s, np.int8) for s in SHAPES]
    sel = selection.Selector(selection.SelectionConfig("velocity", 0.5), LAY)
    est, tx = build.build_estimator(cfg, start), build.build_transform(cfg)
    with pytest.raises(ValueError, match="outputs_of"):
        next(selective.fit_selected(trainer.init_state(start, est, tx), lambda s: _loss, lambda m: est, tx, 0, 2,
                                    build.build_space(cfg), sel, lambda c: c))
