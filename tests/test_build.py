import dataclasses
import itertools

import numpy as np
import pytest

from tflite_fg import build, config, masks, precision, samplers, trainer
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


def test_head_optimizer_needs_the_exact_head():
    with pytest.raises(ValueError, match="head_optimizer='adam' is the exact head's optimizer"):
        TrainConfig(steps=1, batch_size=1, lr=1.0, head_optimizer="adam")
    assert TrainConfig(steps=1, batch_size=1, lr=1.0, exact_head=True, head_optimizer="adam", precision="w16")


def test_config_defaults_and_frozen():
    cfg = TrainConfig(steps=10, batch_size=8, lr=0.5)
    assert (cfg.seed, cfg.m, cfg.eps_lsb, cfg.distribution, cfg.estimator) == (0, 3, 1, "gaussian", "sign_spsa")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.m = 4
    assert dataclasses.asdict(cfg)["lr"] == 0.5


@pytest.mark.parametrize("field,value", [
    ("seed", -1), ("seed", 1 << 64), ("steps", 0), ("batch_size", 0), ("batch_size", 2.0), ("m", 0),
    ("m", True), ("eps_lsb", 0), ("eps_lsb", 128), ("lr", 0.0), ("lr", float("nan")), ("lr", "1"),
    ("distribution", "uniform"), ("estimator", "adam"), ("grad_average", 1.0), ("grad_average", -0.1),
    ("exact_head", 1), ("head_optimizer", "lbfgs"),
])
def test_config_validation_names_field_and_value(field, value):
    kwargs = {"steps": 10, "batch_size": 8, "lr": 0.5, field: value}
    with pytest.raises(ValueError, match=field) as err:
        TrainConfig(**kwargs)
    assert repr(value) in str(err.value)


# ---- the enhancements: every config field reaches its piece --------------------------------------


INIT = [np.random.default_rng(0).integers(-40, 41, size=(5, 6)).astype(np.int8), np.array([-20, 25], np.int8)]


def cfg_of(**kw):
    base = {"steps": 40, "batch_size": 1, "m": 2, "eps_lsb": 1, "lr": 1.0, "seed": 3}
    return TrainConfig(**{**base, **kw})


def run_full(cfg, init=INIT):
    """Train through build.* exactly as tools/train.py composes it; returns (final state, space)."""
    space = build.build_space(cfg)
    est, tx = build.build_estimator(cfg, init, space), build.build_transform(cfg)
    state = trainer.init_state(init, est, tx, space)
    for state, _ in trainer.fit(state, lambda step: quadratic, est, tx, cfg.seed, cfg.steps, space):
        pass
    return state, space


def engine(cfg):
    state, space = run_full(cfg)
    return [np.asarray(p) for p in space.to_engine(state.params)]


def test_build_space_per_precision():
    assert build.build_space(cfg_of()).name == "w8"
    assert build.build_space(cfg_of(precision="w16")).lsb == 256.0
    assert build.build_space(cfg_of(precision="w16", engine_rounding="stochastic")).name == "w16-sr"
    assert build.build_space(cfg_of(arithmetic="paper")).name == "w8-paper"
    fp = build.build_space(cfg_of(precision="fp32", eps_lsb=0.3))
    assert fp.name == "fp32" and not fp.integer


def test_momentum_makes_the_sampler_stateful():
    plain = build.build_sampler(cfg_of())
    assert isinstance(plain.init(INIT), samplers.ShapeState)
    s = build.build_sampler(cfg_of(momentum_alpha=0.5, momentum_beta_min=0.2, momentum_decay_steps=1))
    state = s.init(INIT)
    assert isinstance(state, samplers.MomentumState)
    state = s.observe(state, [np.full(p.shape, 50, np.int8) for p in INIT])
    assert int(state.steps_seen) == 1 and state.history[1].tolist() == [50, 50]
    # trained through build_estimator: the estimator state is the momentum history after each step
    final, _ = run_full(cfg_of(momentum_alpha=0.5, steps=5))
    assert int(final.estimator_state.steps_seen) == 5


def test_kernel_norm_and_mask_reach_the_sampler():
    s = build.build_sampler(cfg_of(kernel_norm=True))
    with pytest.raises(ValueError, match="params"):
        s.sample(s.init(INIT), 0, 0, 0)
    z = s.sample(s.init(INIT), 0, 0, 0, INIT)[0]
    assert z[0].dtype == np.int32
    # w16: kernel_norm uses lsb 256, so the master copy normalizes like its int8 kernels
    s16 = build.build_sampler(cfg_of(kernel_norm=True, precision="w16"))
    master = precision.integer_space(16).from_int8(INIT)
    assert all(np.array_equal(a, b) for a, b in zip(z, s16.sample(s16.init(master), 0, 0, 0, master)[0]))
    with pytest.raises(ValueError, match="initial int8"):
        build.build_sampler(cfg_of(mask="topk"))
    m = build.build_masks(cfg_of(mask="random", sparsity=0.5), INIT)
    assert all(np.array_equal(a, b) for a, b in zip(m, masks.random_mask(INIT, 0.5, 3)))  # the config's seed
    assert build.build_masks(cfg_of(), INIT) is None


def test_sam_rho_adds_two_forward_passes_per_step():
    for rho, per_step in ((0.0, 4), (1.0, 6), (2.0, 6)):
        final, _ = run_full(cfg_of(sam_rho=rho, steps=3))
        assert final.forward_passes == 3 * per_step


def test_transform_per_config():
    g = [np.full((5, 6), 1.0, np.float32), np.array([0.3, -0.3], np.float32)]
    cases = {  # first update of -lr * g in master LSBs
        "plain": (cfg_of(lr=2.0), [-2, [-1, 1]]),                       # -0.6 -> -1 nearest
        "w16": (cfg_of(lr=2.0, precision="w16"), [-512, [-154, 154]]),  # -153.6 -> -154
        "per-tensor": (cfg_of(lr=(1.0, 10.0)), [-1, [-3, 3]]),
    }
    for name, (cfg, (first, second)) in cases.items():
        tx = build.build_transform(cfg)
        out, _ = tx.update(g, tx.init(INIT), None)
        assert out[0].dtype == np.int32 and np.all(out[0] == first), name
        assert out[1].tolist() == second, name
    fp = build.build_transform(cfg_of(precision="fp32", lr=2.0, eps_lsb=0.5))
    out, _ = fp.update(g, fp.init(INIT), None)
    assert out[1].dtype == np.float32 and out[1].tolist() == pytest.approx([-0.6, 0.6])  # no rounding
    # schedule: the multiplier follows the step count (cosine over 40 steps: 0.5 at step 20)
    tx = build.build_transform(cfg_of(lr=4.0, schedule="cosine"))
    state = tx.init(INIT)
    for _ in range(20):
        _, state = tx.update(g, state, None)
    out, _ = tx.update(g, state, None)
    assert np.all(out[0] == -2)
    # stochastic update rounding: only floor/ceil of -0.6, seeded by the config
    tx = build.build_transform(cfg_of(lr=0.6, update_rounding="stochastic"))
    out, _ = tx.update([np.ones(10_000, np.float32)], tx.init(INIT), None)
    assert set(np.unique(out[0]).tolist()) == {-1, 0} and abs(out[0].mean() + 0.6) < 0.02
    # the paper's recipe: integer_sgd on the int8 g_q (floats rejected)
    tx = build.build_transform(cfg_of(arithmetic="paper", lr=1.0))
    out, _ = tx.update([np.array([36, -127], np.int8)], tx.init(INIT), None)
    assert out[0].tolist() == [-1, 3]
    with pytest.raises(TypeError):
        tx.update(g, tx.init(INIT), None)


def test_paper_arithmetic_builds_the_quantized_estimator():
    cfg = cfg_of(arithmetic="paper")
    est = build.build_estimator(cfg, INIT)
    grads, _, _ = est.estimate(quadratic, INIT, est.init(INIT), 0, 0)
    assert all(g.dtype == np.int8 for g in grads)


def test_topk_mask_freezes_exactly_the_frozen_fraction():
    cfg = cfg_of(mask="topk", sparsity=0.7, steps=60)
    mask = build.build_masks(cfg, INIT)
    assert [int(m.sum()) for m in mask] == [30 - 21, 2 - 1]  # keep size - floor(0.7 size)
    assert masks.frozen_fraction(mask) == pytest.approx(22 / 32)
    final, _ = run_full(cfg)
    for w0, w1, m in zip(INIT, final.params, mask):
        np.testing.assert_array_equal(w1[~m], w0[~m])  # frozen weights never change
    assert any(np.any(w1[m] != w0[m]) for w0, w1, m in zip(INIT, final.params, mask))
    assert quadratic(final.params) < quadratic(INIT)


ENHANCEMENTS = {
    "binomial": {"distribution": "binomial"},
    "momentum": {"momentum_alpha": 0.5},
    "sam": {"sam_rho": 1.0},
    "kernel_norm": {"kernel_norm": True},
    "mask_topk": {"mask": "topk", "sparsity": 0.5},
    "mask_random": {"mask": "random", "sparsity": 0.5},
    "mask_threshold": {"mask": "threshold", "mask_threshold_lsb": 20.0},
    "cosine": {"schedule": "cosine"},
    "step": {"schedule": "step", "schedule_every": 10},
    "stochastic_update": {"update_rounding": "stochastic", "lr": 0.7},
    "paper": {"arithmetic": "paper"},
    "grad_average": {"grad_average": 0.8, "precision": "w16", "eps_lsb": 0.5},
    "w16": {"precision": "w16", "eps_lsb": 0.5},
    "fp32": {"precision": "fp32", "eps_lsb": 0.5},
}


@pytest.mark.parametrize("name", list(ENHANCEMENTS))
def test_each_enhancement_changes_the_result_and_is_deterministic(name):
    plain = cfg_of(lr=ENHANCEMENTS[name].get("lr", 1.0))
    cfg = dataclasses.replace(plain, **ENHANCEMENTS[name])
    base, result, again = engine(plain), engine(cfg), engine(cfg)
    assert all(np.array_equal(a, b) for a, b in zip(result, again))  # same seed -> identical
    assert not all(np.array_equal(a, b) for a, b in zip(base, result))
    other = engine(dataclasses.replace(cfg, seed=4))
    assert not all(np.array_equal(a, b) for a, b in zip(result, other))
    assert quadratic(result) < quadratic(INIT)  # and it still trains


def test_grad_average_heads_the_transform_chain_and_refuses_the_paper_arithmetic():
    tx = build.build_transform(cfg_of(lr=2.0, grad_average=0.5))
    g = [np.full((5, 6), 1.0, np.float32), np.array([0.3, -0.3], np.float32)]
    out, state = tx.update(g, tx.init(INIT), None)
    assert np.all(out[0] == -1) and out[1].tolist() == [0, 0]  # -2 * 0.5 * g, rounded
    out, _ = tx.update(g, state, None)
    assert np.all(out[0] == -2) and out[1].tolist() == [0, 0]  # -2 * 0.75 * g: -1.5 -> -2, -0.45 -> 0
    with pytest.raises(ValueError, match="grad_average"):
        cfg_of(grad_average=0.9, arithmetic="paper")


def test_w16_engine_rounding_changes_the_result():
    cfg = cfg_of(precision="w16", eps_lsb=0.5, lr=0.3)
    a, b = engine(cfg), engine(dataclasses.replace(cfg, engine_rounding="stochastic"))
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.array_equal(x, y) for x, y in
               zip(b, engine(dataclasses.replace(cfg, engine_rounding="stochastic"))))


def test_new_config_defaults():
    cfg = TrainConfig(steps=10, batch_size=8, lr=0.5)
    assert (cfg.precision, cfg.arithmetic, cfg.update_rounding, cfg.engine_rounding) == \
        ("w8", "anchored", "nearest", "nearest")
    assert (cfg.momentum_alpha, cfg.sam_rho, cfg.kernel_norm, cfg.mask, cfg.schedule) == \
        (0.0, 0.0, False, "none", "constant")
    assert dataclasses.asdict(TrainConfig(steps=1, batch_size=1, lr=(0.5, 1.0)))["lr"] == (0.5, 1.0)


@pytest.mark.parametrize("field,value", [
    ("precision", "w4"), ("arithmetic", "exact"), ("update_rounding", "floor"), ("engine_rounding", "up"),
    ("momentum_alpha", -0.1), ("momentum_alpha", 1.5), ("momentum_alpha", float("nan")),
    ("momentum_beta_min", 1.5), ("momentum_decay_steps", -1), ("momentum_decay_steps", 1.5),
    ("sam_rho", -1.0), ("sam_rho", 17.0), ("kernel_norm", "yes"), ("mask", "bottomk"), ("sparsity", 1.0),
    ("sparsity", -0.1), ("mask_threshold_lsb", -1.0), ("schedule", "linear"), ("schedule_final", 1.5),
    ("schedule_every", 0), ("schedule_factor", 0.0), ("schedule_factor", 1.5), ("lr", (1.0, 0.0)),
    ("eps_lsb", 0.5),
])
def test_new_config_validation_names_field_and_value(field, value):
    kwargs = {"steps": 10, "batch_size": 8, "lr": 0.5, field: value}
    with pytest.raises(ValueError, match=field) as err:
        TrainConfig(**kwargs)
    assert repr(value) in str(err.value)


def test_cross_field_validation():
    TrainConfig(steps=1, batch_size=1, lr=1.0, precision="w16", eps_lsb=0.5)  # 128 master LSBs
    TrainConfig(steps=1, batch_size=1, lr=1.0, precision="fp32", eps_lsb=0.3)
    with pytest.raises(ValueError, match="eps_lsb.*1/256"):
        TrainConfig(steps=1, batch_size=1, lr=1.0, precision="w16", eps_lsb=1 / 512)
    with pytest.raises(ValueError, match="momentum_alpha"):
        TrainConfig(steps=1, batch_size=1, lr=1.0, momentum_alpha=1.0)
    for kw in ({"estimator": "spsa"}, {"precision": "fp32"}):
        with pytest.raises(ValueError, match="arithmetic"):
            TrainConfig(steps=1, batch_size=1, lr=1.0, arithmetic="paper", **kw)
    with pytest.raises(ValueError, match="sam_rho"):
        TrainConfig(steps=1, batch_size=1, lr=1.0, sam_rho=0.5)  # 0.5 LSB ascent at w8
    TrainConfig(steps=1, batch_size=1, lr=1.0, sam_rho=0.5, eps_lsb=2)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_support_keeps_every_unselected_element_at_zero_even_with_momentum_history(momentum):
    """A new selection after momentum saw other neurons: the history term must not leak into them."""
    cfg = TrainConfig(steps=5, batch_size=1, lr=1.0, momentum_alpha=momentum, momentum_decay_steps=0)
    params = [np.zeros((4, 3), np.int8), np.zeros((2, 2), np.int8)]
    support = [np.array([[True] * 3, [False] * 3, [True] * 3, [False] * 3]), np.zeros((2, 2), bool)]
    sampler = build.build_sampler(cfg, params, support)
    state = sampler.observe(sampler.init(params), [np.full(p.shape, 0.5, np.float32) for p in params])
    z, _ = sampler.sample(state, 0, 1, 0, params)
    assert not z[0][~support[0]].any() and not z[1].any() and z[0][support[0]].any()
