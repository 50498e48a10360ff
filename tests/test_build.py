import dataclasses
import itertools

import numpy as np
import pytest

from tflite_fg import build, config, samplers, trainer
from tflite_fg.config import TrainConfig

TARGET = [np.arange(-45, 45, 3, dtype=np.float64).reshape(5, 6), np.array([40.0, -50.0])]


def quadratic(params):
    return float(sum(np.sum((w.astype(np.float64) - t) ** 2) for w, t in zip(params, TARGET)))


def run(cfg):
    est, tx = build.build_estimator(cfg), build.build_transform(cfg)
    state = trainer.init_state([np.zeros((5, 6), np.int8), np.zeros(2, np.int8)], est, tx)
    return list(trainer.fit(state, lambda step: quadratic, est, tx, cfg.seed, cfg.steps))


# spsa's gradient is in loss per LSB (here ~2*|w - t| ~ 100), so it needs a far smaller lr.
LR = {"sign_spsa": 1.0, "spsa": 0.005}


@pytest.mark.parametrize("distribution,estimator", list(itertools.product(config.DISTRIBUTIONS, config.ESTIMATORS)))
def test_every_composition_trains(distribution, estimator):
    cfg = TrainConfig(steps=150, batch_size=1, m=2, eps_lsb=2, lr=LR[estimator],
                      distribution=distribution, estimator=estimator)
    history = run(cfg)
    final = history[-1][0]
    assert final.step == 150 and final.forward_passes == 150 * 2 * cfg.m
    assert quadratic(final.params) < 0.2 * quadratic([np.zeros((5, 6)), np.zeros(2)])
    again = run(cfg)[-1][0]
    assert all(np.array_equal(a, b) for a, b in zip(final.params, again.params))


def test_distribution_selects_sampler():
    params = [np.zeros(50, np.int8)]
    for name, reference in (("rademacher", samplers.rademacher()), ("gaussian", samplers.gaussian_q8())):
        built = build.build_sampler(TrainConfig(steps=1, batch_size=1, lr=1.0, distribution=name))
        z, _ = built.sample(built.init(params), 0, 0, 0)
        np.testing.assert_array_equal(z[0], reference.sample(reference.init(params), 0, 0, 0)[0][0])
    assert len(set(np.abs(z[0]).tolist())) > 5  # the Gaussian one is not +-36


def test_config_defaults_and_frozen():
    cfg = TrainConfig(steps=10, batch_size=8, lr=0.5)
    assert (cfg.seed, cfg.m, cfg.eps_lsb, cfg.distribution, cfg.estimator) == (0, 3, 1, "gaussian", "sign_spsa")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.m = 4
    assert dataclasses.asdict(cfg)["lr"] == 0.5


@pytest.mark.parametrize("field,value", [
    ("seed", -1), ("seed", 1 << 64), ("steps", 0), ("batch_size", 0), ("batch_size", 2.0), ("m", 0),
    ("m", True), ("eps_lsb", 0), ("eps_lsb", 128), ("lr", 0.0), ("lr", float("nan")), ("lr", "1"),
    ("distribution", "uniform"), ("estimator", "adam"),
])
def test_config_validation_names_field_and_value(field, value):
    kwargs = {"steps": 10, "batch_size": 8, "lr": 0.5, field: value}
    with pytest.raises(ValueError, match=field) as err:
        TrainConfig(**kwargs)
    assert repr(value) in str(err.value)
