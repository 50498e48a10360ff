import numpy as np
import pytest

from tflite_fg import estimators, precision, quant, rng, samplers

M, K = estimators.Z_MULTIPLIER, estimators.Z_SHIFT


class Recorder:
    """A toy loss that records every call (copies of the params it saw)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, params):
        self.calls.append([np.array(p, copy=True) for p in params])
        return self.fn(params)


def quadratic(target):
    return lambda p: float(sum(np.sum((w.astype(np.float64) - t) ** 2) for w, t in zip(p, target)))


def linear(coef):
    return lambda p: float(sum(np.sum(w.astype(np.float64) * c) for w, c in zip(p, coef)))


@pytest.mark.parametrize("make", [estimators.sign_m_spsa, estimators.spsa])
@pytest.mark.parametrize("m", [1, 3])
def test_two_m_calls_and_anchor_untouched(make, m):
    params = [np.array([[127, -127, 0], [5, -5, 100]], np.int8), np.array([1, 2], np.int8)]
    before = [p.copy() for p in params]
    est = make(samplers.gaussian_q8(), m, 2)
    loss = Recorder(quadratic([np.zeros((2, 3)), np.zeros(2)]))
    grads, _, info = est.estimate(loss, params, est.init(params), 0, 0)
    assert len(loss.calls) == 2 * m and info["forward_passes"] == 2 * m and len(info["losses"]) == 2 * m
    assert all(np.array_equal(a, b) and a.dtype == np.int8 for a, b in zip(params, before))
    assert all(g.dtype == np.float32 and g.shape == p.shape for g, p in zip(grads, params))


def test_perturbations_are_exact_integers_from_the_anchor():
    params = [np.array([127, -127, 0, 10, -3, 126], np.int8)]
    sampler = samplers.gaussian_q8()
    est = estimators.sign_m_spsa(sampler, 2, 3)
    loss = Recorder(linear([np.ones(6)]))
    est.estimate(loss, params, est.init(params), 9, 4)
    w = params[0].astype(np.int64)
    for i in range(2):
        z, _ = sampler.sample(sampler.init(params), 9, 4, i)
        delta = (3 * z[0].astype(np.int64) * 1806 + 32768) >> 16
        np.testing.assert_array_equal(loss.calls[2 * i][0], np.clip(w + delta, -127, 127))
        np.testing.assert_array_equal(loss.calls[2 * i + 1][0], np.clip(w - delta, -127, 127))
        assert loss.calls[2 * i][0].dtype == np.int8


def test_sign_gradient_exact_value():
    params = [np.zeros((3, 4), np.int8), np.zeros(5, np.int8)]
    coef = [np.linspace(-1, 1, 12).reshape(3, 4), np.array([3.0, -2, 1, 0.5, -4])]
    sampler, m = samplers.gaussian_q8(), 3
    est = estimators.sign_m_spsa(sampler, m, 1)
    grads, _, info = est.estimate(linear(coef), params, est.init(params), 1, 2)
    s = [np.zeros(p.shape, np.int32) for p in params]
    for i in range(m):
        z, _ = sampler.sample(sampler.init(params), 1, 2, i)
        sign = np.sign(info["losses"][2 * i] - info["losses"][2 * i + 1])
        s = [acc + np.int32(sign) * zt.astype(np.int32) for acc, zt in zip(s, z)]
    for g, acc in zip(grads, s):
        np.testing.assert_array_equal(g, acc.astype(np.float32) * np.float32(quant.Z_SCALE / m))


def test_sign_gradient_points_along_true_gradient():
    rng = np.random.default_rng(0)
    target = [rng.integers(-60, 60, size=(8, 5)), rng.integers(-60, 60, size=7)]
    params = [np.zeros((8, 5), np.int8), np.zeros(7, np.int8)]
    est = estimators.sign_m_spsa(samplers.gaussian_q8(), 256, 2)
    grads, _, _ = est.estimate(quadratic(target), params, est.init(params), 0, 0)
    g = np.concatenate([x.ravel() for x in grads]).astype(np.float64)
    true = np.concatenate([(-2.0 * t).ravel() for t in target])  # d/dw sum (w - t)^2 at w = 0
    assert g @ true / (np.linalg.norm(g) * np.linalg.norm(true)) > 0.8  # random: ~N(0, 1/47)
    assert np.mean(np.sign(g) == np.sign(true)) > 0.75


def test_constant_loss_gives_zero_gradient():
    params = [np.arange(-5, 5, dtype=np.int8)]
    est = estimators.sign_m_spsa(samplers.rademacher(), 3, 1)
    grads, _, _ = est.estimate(lambda p: 1.0, params, est.init(params), 0, 0)
    assert not np.any(grads[0])


def test_spsa_magnitude_on_a_linear_loss():
    params = [np.zeros(6, np.int8)]
    coef = np.array([1.0, -2.0, 0.5, 0.0, 3.0, -1.0])
    sampler, m, eps = samplers.gaussian_q8(), 2, 4
    est = estimators.spsa(sampler, m, eps)
    grads, _, _ = est.estimate(linear([coef]), params, est.init(params), 3, 0)
    expected = np.zeros(6)
    for i in range(m):
        z, _ = sampler.sample(sampler.init(params), 3, 0, i)
        delta = quant.round_shift(eps * z[0].astype(np.int64), 1806, 16)
        expected += (2.0 * coef @ delta) / (2.0 * eps) * z[0] * quant.Z_SCALE
    np.testing.assert_allclose(grads[0], (expected / m).astype(np.float32), rtol=1e-6)


def test_per_tensor_eps():
    params = [np.zeros(4, np.int8), np.zeros(4, np.int8)]
    sampler = samplers.rademacher()
    est = estimators.sign_m_spsa(sampler, 1, [1, 3])
    loss = Recorder(lambda p: 0.0)
    est.estimate(loss, params, est.init(params), 0, 0)
    z, _ = sampler.sample(sampler.init(params), 0, 0, 0)
    np.testing.assert_array_equal(loss.calls[0][0], np.sign(z[0]) * 1)  # round(1 * 36 * Dz) = 1
    np.testing.assert_array_equal(loss.calls[0][1], np.sign(z[1]) * 3)  # round(3 * 36 * Dz) = 3
    with pytest.raises(ValueError, match="eps_lsb has 2 entries"):
        est.estimate(loss, params[:1], est.init(params[:1]), 0, 0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, [1, 0]])
def test_bad_eps_rejected(bad):
    with pytest.raises(ValueError, match="eps_lsb"):
        estimators.sign_m_spsa(samplers.gaussian_q8(), 3, bad)


@pytest.mark.parametrize("bad", [0, -2, 2.0])
def test_bad_m_rejected(bad):
    with pytest.raises(ValueError, match="m must"):
        estimators.spsa(samplers.gaussian_q8(), bad, 1)


def test_non_finite_loss_raises():
    params = [np.zeros(3, np.int8)]
    est = estimators.sign_m_spsa(samplers.gaussian_q8(), 1, 1)
    with pytest.raises(ValueError, match="non-finite|nan"):
        est.estimate(lambda p: float("nan"), params, est.init(params), 0, 0)


def test_deterministic_in_seed_and_step():
    params = [np.zeros((4, 4), np.int8)]
    est = estimators.sign_m_spsa(samplers.gaussian_q8(), 3, 1)
    loss = quadratic([np.full((4, 4), 50.0)])
    run = lambda seed, step: est.estimate(loss, params, est.init(params), seed, step)[0][0]
    np.testing.assert_array_equal(run(1, 1), run(1, 1))
    assert not np.array_equal(run(1, 1), run(2, 1)) and not np.array_equal(run(1, 1), run(1, 2))


# ---- precision spaces, the paper's quantized g_q, sharpness-aware ------------------------------


def _sum_s(sampler, params, info, seed, step, m):
    s = [np.zeros(p.shape, np.int64) for p in params]
    for i in range(m):
        z, _ = sampler.sample(sampler.init(params), seed, step, i, params)
        sign = int(np.sign(info["losses"][2 * i] - info["losses"][2 * i + 1]))
        s = [acc + sign * zt.astype(np.int64) for acc, zt in zip(s, z)]
    return s


@pytest.mark.parametrize("m", [1, 2, 4])
def test_quantized_sign_gradient_is_the_papers_g_q(m):
    params = [np.zeros((3, 4), np.int8), np.zeros(5, np.int8)]
    coef = [np.linspace(-1, 1, 12).reshape(3, 4), np.array([3.0, -2, 1, 0.5, -4])]
    sampler = samplers.gaussian_q8()
    est = estimators.sign_m_spsa(sampler, m, 1, quantized=True)
    grads, _, info = est.estimate(linear(coef), params, est.init(params), 1, 2)
    s = _sum_s(sampler, params, info, 1, 2, m)
    for g, acc in zip(grads, s):
        assert g.dtype == np.int8
        np.testing.assert_array_equal(g, quant.sign_gradient_q8(acc, m))
    # and it is round(float gradient / Dz) up to ties (half away from zero vs the float value)
    float_est = estimators.sign_m_spsa(sampler, m, 1)
    fg, _, _ = float_est.estimate(linear(coef), params, float_est.init(params), 1, 2)
    assert all(np.max(np.abs(g - f / quant.Z_SCALE)) <= 0.5 + 1e-4 for g, f in zip(grads, fg))


def test_estimator_on_a_w16_master_copy():
    space = precision.integer_space(16)
    params = [np.array([1000, -1000, 0, 32767], np.int16)]
    sampler = samplers.gaussian_q8()
    est = estimators.sign_m_spsa(sampler, 1, 0.5, space)  # eps 0.5 int8 LSB = 128 master LSBs
    loss = Recorder(linear([np.ones(4)]))
    est.estimate(loss, params, est.init(params), 3, 0)
    z, _ = sampler.sample(sampler.init(params), 3, 0, 0)
    delta = (128 * z[0].astype(np.int64) * 1806 + 32768) >> 16
    assert loss.calls[0][0].dtype == np.int16
    np.testing.assert_array_equal(loss.calls[0][0], np.clip(params[0] + delta, -32767, 32767))
    np.testing.assert_array_equal(loss.calls[1][0], np.clip(params[0] - delta, -32767, 32767))
    with pytest.raises(ValueError, match="whole number"):
        estimators.sign_m_spsa(sampler, 1, 1 / 512, space)
    with pytest.raises(ValueError, match="whole number"):
        estimators.sign_m_spsa(sampler, 1, 0.5)  # w8: whole LSBs only
    estimators.spsa(sampler, 1, 0.3, precision.float_space())  # any eps > 0 in float


def test_estimators_call_observe_with_their_gradient():
    params = [np.zeros(10, np.int8)]
    sampler = samplers.momentum_guided(samplers.gaussian_q8(), 0.5)
    est = estimators.sign_m_spsa(sampler, 2, 1, quantized=True)
    grads, state, _ = est.estimate(linear([np.arange(10.0)]), params, est.init(params), 0, 0)
    assert int(state.steps_seen) == 1 and np.array_equal(state.history[0], grads[0])


@pytest.mark.parametrize("m,rho", [(1, 1.0), (3, 2.0)])
def test_sharpness_aware_probes_around_the_ascent_neighbour(m, rho):
    params = [np.array([[10, -20, 30], [0, 5, -5]], np.int8), np.array([100, -100], np.int8)]
    coef = [np.array([[1.0, -2, 0.5], [3, -1, 2]]), np.array([-1.0, 4.0])]
    sampler, space, eps = samplers.gaussian_q8(), precision.integer_space(8), 2
    inner = estimators.sign_m_spsa(sampler, m, eps)
    est = estimators.sharpness_aware(inner, sampler, eps, rho)
    loss = Recorder(linear(coef))
    grads, _, info = est.estimate(loss, params, est.init(params), 5, 6)
    assert len(loss.calls) == 2 * m + 2 and info["forward_passes"] == 2 * m + 2 and len(info["losses"]) == 2 * m + 2
    # calls 0, 1: the ascent probe along z_a = the sampler's draw at index ASCENT_INDEX
    z_a, _ = sampler.sample(sampler.init(params), 5, 6, rng.ASCENT_INDEX)
    for call, sign in ((0, 1), (1, -1)):
        assert all(np.array_equal(a, b) for a, b in zip(loss.calls[call], space.perturb(params, z_a, (eps,) * 2, sign)))
    uphill = 1 if info["losses"][0] >= info["losses"][1] else -1
    neighbour = space.perturb(params, z_a, (eps * rho,) * 2, uphill)
    assert linear(coef)(neighbour) >= linear(coef)(params)  # it went uphill
    # calls 2..: the inner probes, evaluated around the neighbour, not around params
    for i in range(m):
        z, _ = sampler.sample(sampler.init(params), 5, 6, i)
        for k, sign in ((2 + 2 * i, 1), (3 + 2 * i, -1)):
            expected = space.perturb(neighbour, z, (eps,) * 2, sign)
            assert all(np.array_equal(a, b) for a, b in zip(loss.calls[k], expected))
    # the gradient is the inner one at the neighbour; the anchor is untouched
    ref, _, _ = inner.estimate(linear(coef), neighbour, inner.init(params), 5, 6)
    assert all(np.array_equal(a, b) for a, b in zip(grads, ref))
    assert params[1].tolist() == [100, -100]


def test_sharpness_aware_with_quantized_inner_and_validation():
    params = [np.zeros(8, np.int8)]
    sampler = samplers.rademacher()
    est = estimators.sharpness_aware(estimators.sign_m_spsa(sampler, 2, 1, quantized=True), sampler, 1, 3.0)
    grads, _, info = est.estimate(linear([np.arange(8.0)]), params, est.init(params), 0, 0)
    assert grads[0].dtype == np.int8 and info["forward_passes"] == 6
    for rho in (0.0, -1.0):
        with pytest.raises(ValueError, match="rho"):
            estimators.sharpness_aware(estimators.sign_m_spsa(sampler, 1, 1), sampler, 1, rho)
    with pytest.raises(ValueError, match="whole number"):  # rho * eps must stay on the grid
        est = estimators.sharpness_aware(estimators.sign_m_spsa(sampler, 1, 1), sampler, 1, 0.5)
        est.estimate(linear([np.ones(8)]), params, est.init(params), 0, 0)
