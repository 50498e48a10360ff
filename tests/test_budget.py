"""converters.budget: neuron selection in real FF int8 (LiteRT, probe signature) and BP fp32 (tf_keras)
runs on a real fmnist-c episode (a subset): budgets respected, never-selected weights bit-identical,
runs bit-reproducible for a seed, and the same neurons for both methods under random selection."""
import dataclasses

import numpy as np
import pytest

from converters import budget, suite
from converters.benchmark import Hyper
from tflite_fg import selection

STEPS = 40


@pytest.fixture(scope="module")
def episode(cache_dir):
    ep = suite.get_task("fmnist-c").make_episode("medium", "test", 0, str(cache_dir))
    return dataclasses.replace(ep, x_train=ep.x_train[:512], y_train=ep.y_train[:512], x_test=ep.x_test[:300],
                               y_test=ep.y_test[:300])


@pytest.fixture(scope="module")
def converted(episode, tmp_path_factory):
    return budget.Converted(episode, budget.ALL, tmp_path_factory.mktemp("budget"))


@pytest.fixture(scope="module")
def probe(episode):
    return selection.probe_batch(episode.x_train, episode.y_train, 2, seed=0)


def _setting(method, strategy, b, lr, every=10):
    return budget.Setting(method, strategy, b, Hyper(lr=lr, steps=STEPS, batch_size=32), every)


def test_probe_batch_is_fixed_and_spread_over_the_classes(episode, probe):
    assert len(probe) == 20
    again = selection.probe_batch(episode.x_train, episode.y_train, 2, seed=0)
    assert np.array_equal(probe, again)


@pytest.mark.parametrize("strategy", ["static", "velocity"])
def test_ff_trains_only_selected_neurons_within_budget_and_reproducibly(converted, probe, strategy):
    s = _setting("ff-w16", strategy, 0.151, 0.5)
    a = budget.run_ff(converted, probe, s, seed=1)
    assert a["frozen_unchanged"] and a["total_params"] == 32016 and a["budget_params"] == int(0.151 * 32016)
    assert all(sel["params"] <= a["budget_params"] for sel in a["selections"])
    assert len(a["selections"]) == (1 if strategy == "static" else STEPS // 10)
    if strategy == "velocity":
        assert [sel["by"] for sel in a["selections"]] == ["random", "random", "velocity", "velocity"]
    else:  # logits (10 x 64) and dec2 (64 x 64) whole, one dec1 neuron (64); the 34 left fit 3 conv1 ones (9)
        assert a["selections"][0]["per_layer"] == [3, 0, 0, 1, 64, 10] and a["selections"][0]["params"] == 4827
    b = budget.run_ff(converted, probe, s, seed=1)
    assert [p["acc"] for p in a["curve"]] == [p["acc"] for p in b["curve"]] and a["selections"] == b["selections"]


def test_ff_frozen_weights_are_bit_identical(converted, probe, monkeypatch):
    """Directly: after a static run, every kernel element outside the selection equals the start."""
    seen = {}
    real = budget._never_selected_unchanged

    def spy(before, after, ever):
        seen.update(before=before, after=after, ever=ever)
        return real(before, after, ever)

    monkeypatch.setattr(budget, "_never_selected_unchanged", spy)
    budget.run_ff(converted, probe, _setting("ff-w8", "static", 0.088, 2.0), seed=0)
    moved = sum(int(np.count_nonzero(b != a)) for b, a in zip(seen["before"], seen["after"]))
    assert moved > 0
    for b, a, m in zip(seen["before"], seen["after"], seen["ever"]):
        assert np.array_equal(b[~m], a[~m])
    assert sum(int(m.sum()) for m in seen["ever"]) <= int(0.088 * 32016)


def test_bp_masks_freeze_the_rest_and_random_picks_the_same_neurons_as_ff(episode, converted, probe):
    bp = budget.run_bp(episode, probe, _setting("bp-fp32", "random", 0.274, 3e-3), seed=2)
    ff = budget.run_ff(converted, probe, _setting("ff-w16", "random", 0.274, 0.5), seed=2)
    assert bp["frozen_unchanged"] and bp["total_params"] == ff["total_params"]
    assert [s["per_layer"] for s in bp["selections"]] == [s["per_layer"] for s in ff["selections"]]


def test_bp_on_the_last_layers_budget_clearly_improves(episode, converted, probe):
    zero_shot = converted.accuracy(converted.model.initial_params())
    r = budget.run_bp(episode, probe, _setting("bp-fp32", "static", 0.274, 1e-3), seed=0)
    assert r["frozen_unchanged"] and r["final_acc"] > zero_shot + 0.03, (zero_shot, r["final_acc"])


def test_bp_velocity_reads_keras_layer_outputs(episode, probe):
    r = budget.run_bp(episode, probe, _setting("bp-fp32", "velocity", 0.151, 3e-3), seed=0)
    assert r["frozen_unchanged"] and [s["by"] for s in r["selections"]][-1] == "velocity"
