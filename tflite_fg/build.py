"""Config -> composed objects: the only place that branches on the config.

The composition order is fixed and documented here once:
sampler = block_coordinate(masked(kernel_normalized(momentum_guided(base(support)))))   (each only if enabled)
          with `support` the selected neurons' elements (selection.py): base draws only those, and a
          final masked(support) keeps momentum's history of a previous selection out
estimator = exact_head(sharpness_aware(sign_m_spsa | spsa))   (SAM, exact head only if enabled;
          with the exact head the samplers' support leaves the head out, and a head-only model has no probes)
transform = chain(average_gradients, scale_by_learning_rate, scale_by_schedule, round_to_int | stochastic_round)
            (averaging and the schedule only if enabled; with head_optimizer="adam" the first part is
            split_head(scale_by_adam, average_gradients): Adam on the exact head, averaging on the body)
            or, with arithmetic="paper", integer_sgd (the paper's integer g_q and lr).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tflite_fg import estimators, exact_head, masks, precision, samplers, schedules, updates
from tflite_fg.config import MASTER_LSB, TrainConfig

_SAMPLERS = {"gaussian": samplers.gaussian_q8, "rademacher": samplers.rademacher, "binomial": samplers.binomial}


def build_space(cfg: TrainConfig) -> precision.WeightSpace:
    """The precision mode's WeightSpace (fp32 lives in converters/: it needs TensorFlow)."""
    if cfg.precision == "fp32":
        return precision.float_space()
    bits = 8 * (1 + (cfg.precision == "w16"))
    return precision.integer_space(bits, cfg.arithmetic, cfg.engine_rounding)


def build_masks(cfg: TrainConfig, initial_int8: Sequence[np.ndarray]) -> list[np.ndarray] | None:
    """Static masks from the initial int8 kernels (so a resumed run rebuilds them)."""
    return masks.make_masks(cfg.mask, initial_int8, cfg.sparsity, cfg.seed, cfg.mask_threshold_lsb)


def build_sampler(cfg: TrainConfig, initial_int8: Sequence[np.ndarray] | None = None,
                  support: Sequence[np.ndarray] | None = None) -> samplers.Sampler:
    """support: boolean masks shaped like the kernels (the selected neurons), or None for all."""
    sampler = _SAMPLERS[cfg.distribution](support=support)
    if cfg.momentum_alpha > 0:
        sampler = samplers.momentum_guided(sampler, cfg.momentum_alpha, cfg.momentum_beta_min,
                                           cfg.momentum_decay_steps)
    if cfg.kernel_norm:
        sampler = samplers.kernel_normalized(sampler, float(MASTER_LSB.get(cfg.precision, 1)))
    if cfg.mask != "none":
        if initial_int8 is None:
            raise ValueError(f"mask={cfg.mask!r} needs the initial int8 kernels")
        sampler = samplers.masked(sampler, build_masks(cfg, initial_int8))
    if support is not None and cfg.momentum_alpha > 0:
        sampler = samplers.masked(sampler, support)
    if cfg.block_coordinate:
        sampler = samplers.block_coordinate(sampler, support)
    return sampler


def build_estimator(cfg: TrainConfig, initial_int8: Sequence[np.ndarray] | None = None,
                    space: precision.WeightSpace | None = None,
                    support: Sequence[np.ndarray] | None = None,
                    head_quant: exact_head.HeadQuant | None = None) -> estimators.Estimator:
    """head_quant: the model's quantization the exact head needs (FgModel.head_quant())."""
    space = space or build_space(cfg)
    if not cfg.exact_head:
        return _zeroth_order(cfg, initial_int8, space, support)
    if head_quant is None or initial_int8 is None:
        raise ValueError("exact_head needs the model's head_quant and the initial int8 kernels")
    head_mask = support[-1] if support is not None else None
    if cfg.mask != "none":
        static = build_masks(cfg, initial_int8)[-1]
        head_mask = static if head_mask is None else head_mask & static
    if len(initial_int8) == 1:
        return exact_head.exact_head(None, head_quant, head_mask)
    body = list(support[:-1]) if support is not None else [np.ones(np.shape(w), bool) for w in initial_int8[:-1]]
    inner = _zeroth_order(cfg, initial_int8, space, body + [np.zeros(np.shape(initial_int8[-1]), bool)])
    return exact_head.exact_head(inner, head_quant, head_mask)


def _zeroth_order(cfg: TrainConfig, initial_int8: Sequence[np.ndarray] | None, space: precision.WeightSpace,
                  support: Sequence[np.ndarray] | None) -> estimators.Estimator:
    sampler = build_sampler(cfg, initial_int8, support)
    if cfg.estimator == "spsa":
        est = estimators.spsa(sampler, cfg.m, cfg.eps_lsb, space)
    else:
        est = estimators.sign_m_spsa(sampler, cfg.m, cfg.eps_lsb, space, quantized=cfg.arithmetic == "paper")
    if cfg.sam_rho > 0:
        est = estimators.sharpness_aware(est, sampler, cfg.eps_lsb, cfg.sam_rho, space)
    return est


def build_schedule(cfg: TrainConfig) -> schedules.Schedule:
    return schedules.make_schedule(cfg.schedule, cfg.steps, cfg.schedule_final, cfg.schedule_every,
                                   cfg.schedule_factor)


def build_transform(cfg: TrainConfig) -> updates.GradientTransformation:
    """SGD on the master grid: w <- w - round(lr * sched(t) * g), lr scaled to master LSBs."""
    lsb = MASTER_LSB.get(cfg.precision, 1)
    lr = tuple(r * lsb for r in cfg.lr) if isinstance(cfg.lr, tuple) else cfg.lr * lsb
    stochastic = cfg.update_rounding == "stochastic"
    if cfg.arithmetic == "paper":
        return updates.integer_sgd(lr, build_schedule(cfg), cfg.seed if stochastic else None)
    average = updates.average_gradients(cfg.grad_average) if cfg.grad_average else None
    if cfg.head_optimizer == "adam":
        parts = [updates.split_head(updates.scale_by_adam(), average)]
    else:
        parts = [average] if average else []
    parts.append(updates.scale_by_learning_rate(lr))
    if cfg.schedule != "constant":
        parts.append(updates.scale_by_schedule(build_schedule(cfg)))
    if cfg.precision != "fp32":
        parts.append(updates.stochastic_round(cfg.seed) if stochastic else updates.round_to_int())
    return updates.chain(*parts)
