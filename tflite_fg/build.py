"""Config -> composed objects: the only place that branches on the config."""

from __future__ import annotations

from tflite_fg import estimators, samplers, updates
from tflite_fg.config import TrainConfig

_SAMPLERS = {"gaussian": samplers.gaussian_q8, "rademacher": samplers.rademacher}
_ESTIMATORS = {"sign_spsa": estimators.sign_m_spsa, "spsa": estimators.spsa}


def build_sampler(cfg: TrainConfig) -> samplers.Sampler:
    return _SAMPLERS[cfg.distribution]()


def build_estimator(cfg: TrainConfig) -> estimators.Estimator:
    return _ESTIMATORS[cfg.estimator](build_sampler(cfg), cfg.m, cfg.eps_lsb)


def build_transform(cfg: TrainConfig) -> updates.GradientTransformation:
    """SGD on the integer grid: w <- w - round(lr * g)."""
    return updates.chain(updates.scale_by_learning_rate(cfg.lr), updates.round_to_int())
