import numpy as np
import pytest

from tflite_fg import quant, rng, samplers

PARAMS = [np.zeros((4, 5), np.int8), np.zeros((3,), np.int8), np.zeros((2, 2, 2), np.int8)]


@pytest.mark.parametrize("make", [samplers.gaussian_q8, samplers.rademacher])
def test_shapes_dtype_and_determinism(make):
    s = make()
    state = s.init(PARAMS)
    z, state2 = s.sample(state, 7, 3, 1)
    assert [a.shape for a in z] == [p.shape for p in PARAMS] and all(a.dtype == np.int8 for a in z)
    assert state2 == state
    again, _ = s.sample(state, 7, 3, 1)
    assert all(np.array_equal(a, b) for a, b in zip(z, again))
    for other in [(8, 3, 1), (7, 4, 1), (7, 3, 2)]:
        diff, _ = s.sample(state, *other)
        assert not np.array_equal(diff[0], z[0])
    assert not np.array_equal(z[0].ravel()[:3], z[1])  # tensors use different streams


def test_gaussian_uses_the_documented_stream():
    s = samplers.gaussian_q8()
    z, _ = s.sample(s.init(PARAMS), 11, 12, 2)
    u = rng.uint32_stream(rng.stream_key(11, 12, 2, 2), 8)
    np.testing.assert_array_equal(z[2].ravel(), quant.gaussian_q8_from_uint32(u))


def test_rademacher_values_and_balance():
    s = samplers.rademacher()
    big = [np.zeros((100_000,), np.int8)]
    z, _ = s.sample(s.init(big), 0, 0, 0)
    assert set(np.unique(z[0]).tolist()) == {-36, 36}
    assert abs(np.mean(z[0] > 0) - 0.5) < 0.005
    u = rng.uint32_stream(rng.stream_key(0, 0, 0, 0), 10)
    np.testing.assert_array_equal(z[0][:10], np.where(u < 2**31, 36, -36))


def test_gaussian_sampler_moments():
    s = samplers.gaussian_q8()
    z, _ = s.sample(s.init([np.zeros((500, 400), np.int8)]), 5, 0, 0)
    zf = z[0].astype(np.float64) * quant.Z_SCALE
    assert abs(zf.mean()) < 0.01 and abs(zf.std() - 1.0) < 0.01


def _sample(sampler, params, seed=0, step=0, index=0, state=None):
    z, _ = sampler.sample(state if state is not None else sampler.init(params), seed, step, index, params)
    return z


def test_sample_accepts_params_and_default_observe_keeps_state():
    s = samplers.gaussian_q8()
    state = s.init(PARAMS)
    a, _ = s.sample(state, 1, 2, 3)
    b, _ = s.sample(state, 1, 2, 3, PARAMS)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert s.observe(state, [np.ones(p.shape, np.int8) for p in PARAMS]) is state


# ---- binomial ------------------------------------------------------------------------------

def test_binomial_values_and_moments():
    s = samplers.binomial(4)
    z = _sample(s, [np.zeros((400, 500), np.int8)], seed=3)[0]
    assert z.dtype == np.int8
    # z = (k - 2) / 1 for k = popcount of the top 4 bits; round(z / Dz): +-1 -> +-36,
    # +-2 -> round(72.57) = +-73 (2 / Dz = 2 * 127 / 3.5).
    values, counts = np.unique(z, return_counts=True)
    assert values.tolist() == [-73, -36, 0, 36, 73]
    np.testing.assert_allclose(counts / z.size, np.array([1, 4, 6, 4, 1]) / 16, atol=0.003)
    zf = z.astype(np.float64) * quant.Z_SCALE
    assert abs(zf.mean()) < 0.01
    # exact variance of the quantized table: (2*73**2 + 8*36**2) / 16 * Dz**2 = 0.998
    assert abs((2 * 73**2 + 8 * 36**2) / 16 * quant.Z_SCALE**2 - 0.998) < 0.001
    assert abs(zf.var() - 1.0) < 0.01


def test_binomial_uses_the_top_bits_of_the_stream():
    s = samplers.binomial(4)
    z = _sample(s, [np.zeros(1000, np.int8)], seed=5, step=6, index=7)[0]
    u = rng.uint32_stream(rng.stream_key(5, 6, 7, 0), 1000)
    k = np.array([bin(int(x) >> 28).count("1") for x in u])
    np.testing.assert_array_equal(z, np.array([-73, -36, 0, 36, 73])[k])
    z1 = _sample(samplers.binomial(1), [np.zeros(1000, np.int8)], seed=5, step=6, index=7)[0]
    np.testing.assert_array_equal(z1, np.where(u >> 31, 36, -36))  # n = 1: Rademacher (k - 1/2) / (1/2)
    samplers.binomial(32)
    for bad in (0, 33):
        with pytest.raises(ValueError, match="binomial"):
            samplers.binomial(bad)


# ---- momentum-guided -------------------------------------------------------------------------

def test_momentum_beta_schedule():
    assert samplers.momentum_beta(0, 0.5, 100) == 1.0
    assert samplers.momentum_beta(50, 0.5, 100) == 0.75
    assert samplers.momentum_beta(100, 0.5, 100) == 0.5 == samplers.momentum_beta(10_000, 0.5, 100)
    assert samplers.momentum_beta(0, 0.2, 0) == 0.2  # no decay: beta_min from the start


def test_momentum_step0_is_scaled_base_draw():
    params = [np.zeros((30, 40), np.int8), np.zeros(7, np.int8)]
    base = samplers.gaussian_q8()
    s = samplers.momentum_guided(base, alpha=0.5, beta_min=0.5, decay_steps=10)
    state = s.init(params)
    assert int(state.steps_seen) == 0 and all(not np.any(h) for h in state.history)
    z, state2 = s.sample(state, 4, 2, 1, params)
    z1 = _sample(base, params, seed=4, step=2, index=1)
    c1 = round(0.5**0.5 * 2**15)  # 23170, Q15 of beta*sqrt(alpha) with beta = 1
    assert c1 == 23170
    for a, b in zip(z, z1):
        assert a.dtype == np.int16
        np.testing.assert_array_equal(a, (b.astype(np.int64) * c1 + 2**14) >> 15)
    # hand check: z1 = 36 -> 36*23170 = 834120; + 16384 = 850504; >> 15 = 25 (36 sqrt(.5) = 25.46 -> 25)
    assert (36 * 23170 + 16384) >> 15 == 25
    again, _ = s.sample(state, 4, 2, 1, params)
    assert all(np.array_equal(a, b) for a, b in zip(z, again))  # deterministic


def test_momentum_after_observe_follows_the_history():
    params = [np.zeros(20_000, np.int8)]
    base = samplers.gaussian_q8()
    s = samplers.momentum_guided(base, alpha=0.5, beta_min=0.5, decay_steps=1)
    # a previous gradient (int8 g_q on the scale Dz), e.g. a Gaussian sample of another stream
    g = _sample(base, params, seed=99)[0]
    state = s.observe(s.init(params), [g])
    assert int(state.steps_seen) == 1 and np.array_equal(state.history[0], g)
    z = s.sample(state, 1, 1, 0, params)[0][0]
    # beta = 0.5: c1 = Q15(0.5 sqrt(.5)) = 11585, c2 = Q15(0.5) = 16384, c3 = Q15(0.5 sqrt(.5)) = 11585
    z1 = _sample(base, params, seed=1, step=1, index=0)[0].astype(np.int64)
    z2 = _sample(base, params, seed=1, step=1, index=rng.SECOND_DRAW)[0].astype(np.int64)
    np.testing.assert_array_equal(z, (11585 * z1 + 16384 * g.astype(np.int64) + 11585 * z2 + 2**14) >> 15)
    corr = np.corrcoef(z.astype(np.float64), g.astype(np.float64))[0, 1]
    assert corr > 0.5  # 0.5 / sqrt(0.25 + 0.25*0.5 + 0.25*0.5) = 0.71
    fresh = s.sample(s.init(params), 1, 1, 0, params)[0][0]
    assert abs(np.corrcoef(fresh.astype(np.float64), g.astype(np.float64))[0, 1]) < 0.03
    # float gradients are taken on the scale Dz: g = 1.0 -> 36
    st = s.observe(s.init([np.zeros(3, np.int8)]), [np.array([1.0, -0.5, 100.0], np.float32)])
    np.testing.assert_array_equal(st.history[0], [36, -18, 127])


def test_momentum_validation():
    for alpha, beta in ((0.0, 0.5), (1.0, 0.5), (0.5, -0.1), (0.5, 1.1)):
        with pytest.raises(ValueError, match="momentum"):
            samplers.momentum_guided(samplers.gaussian_q8(), alpha, beta)


# ---- kernel-wise normalization ---------------------------------------------------------------

def test_kernel_norm_factor_exact_integers():
    # F = ||w|| / (||z_q|| Dz 32) in Q16. w = 112 (one element), z_q = 127: 112 / (127 * 3.5/127 * 32)
    # = 112 / 112 = 1 -> 65536 exactly (num = 112^2 2^32 127^2, den = 127^2 112^2).
    assert samplers.kernel_norm_factor_q16(112**2, 127**2) == 65536
    # w = 28 -> 1/4 -> 16384; w = 1, z = 127: sqrt(2**32 / 112**2) = 585.14 -> floor 585
    assert samplers.kernel_norm_factor_q16(28**2, 127**2) == 16384
    assert samplers.kernel_norm_factor_q16(1, 127**2) == 585
    assert samplers.kernel_norm_factor_q16(5, 0) == 0
    # w16 (lsb 256): the master copy w << 8 gives exactly the factor of its int8 kernel
    for w_sq, z_sq in ((112**2, 127**2), (12345, 678), (1, 1), (10**9, 3)):
        assert samplers.kernel_norm_factor_q16(w_sq * 65536, z_sq, 256) == \
            samplers.kernel_norm_factor_q16(w_sq, z_sq, 1)
    # a non-integer lsb takes the float path and agrees to the last bit or so
    assert abs(samplers.kernel_norm_factor_q16(4 * 12345, 678, 2.0) -
               samplers.kernel_norm_factor_q16(12345, 678, 1)) <= 1
    assert abs(samplers.kernel_norm_factor_q16(0.25 * 12345, 678, 0.5) -
               samplers.kernel_norm_factor_q16(12345, 678, 1)) <= 1


def test_kernel_normalized_scales_by_weight_rms():
    n = 10_000
    signs = np.where(np.arange(n) % 2, 1, -1)
    params = [(32 * signs).astype(np.int8), (8 * signs).astype(np.int8)]  # RMS 32 and 8 LSB
    base = samplers.gaussian_q8()
    s = samplers.kernel_normalized(base)
    z = s.sample(s.init(params), 0, 0, 0, params)[0]
    raw = _sample(base, params)
    assert all(a.dtype == np.int32 for a in z)
    # RMS 32: z unchanged up to the sample norm (F z_q has RMS 1 in z units before the
    # rounding to integer z_q; here F = 1.006, which rounding to integers mostly undoes)
    rms = [np.sqrt(np.mean((a.astype(np.float64) * quant.Z_SCALE) ** 2)) for a in z]
    assert abs(rms[0] - 1.0) < 0.01 and abs(rms[1] - 0.25) < 0.005
    assert np.max(np.abs(z[0] - raw[0])) <= 1 + 0.03 * 127
    np.testing.assert_allclose(z[1], raw[1] / 4, atol=1 + 0.03 * 32)
    # exactly (z_q * F + 2**15) >> 16 with F of the integer formula
    f = samplers.kernel_norm_factor_q16(64 * n, int(np.sum(raw[1].astype(np.int64) ** 2)))
    np.testing.assert_array_equal(z[1], (raw[1].astype(np.int64) * f + 2**15) >> 16)
    # w16 master copy (lsb 256) gives the same z as its int8 kernels
    s16 = samplers.kernel_normalized(base, 256.0)
    master = [p.astype(np.int16) << 8 for p in params]
    assert all(np.array_equal(a, b) for a, b in zip(z, s16.sample(s16.init(master), 0, 0, 0, master)[0]))
    with pytest.raises(ValueError, match="params"):
        s.sample(s.init(params), 0, 0, 0)


def test_kernel_normalized_zero_tensor_is_never_perturbed():
    # documented consequence of z / ||z|| * ||w||: an all-zero tensor gets z = 0 (it can never move)
    s = samplers.kernel_normalized(samplers.gaussian_q8())
    params = [np.zeros(50, np.int8)]
    assert not np.any(s.sample(s.init(params), 0, 0, 0, params)[0][0])


# ---- masked ----------------------------------------------------------------------------------

def test_masked_zeroes_outside_the_mask():
    base = samplers.gaussian_q8()
    masks = [np.arange(20).reshape(4, 5) % 3 == 0, np.array([True, False, True]), np.zeros((2, 2, 2), bool)]
    s = samplers.masked(base, masks)
    z = s.sample(s.init(PARAMS), 2, 3, 4, PARAMS)[0]
    raw = _sample(base, PARAMS, 2, 3, 4)
    for a, b, m in zip(z, raw, masks):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, np.where(m, b, 0))
    bad = samplers.masked(base, masks[:2] + [np.ones(3, bool)])
    with pytest.raises(ValueError, match="mask shapes"):
        bad.sample(bad.init(PARAMS), 0, 0, 0)


def test_masked_sign_spsa_gradient_is_exactly_zero_outside_the_mask():
    from tflite_fg import estimators
    params = [np.zeros((6, 6), np.int8)]
    mask = np.random.default_rng(0).random((6, 6)) < 0.3
    target = np.arange(36).reshape(6, 6) - 18.0
    loss = lambda p: float(np.sum((p[0].astype(np.float64) - target) ** 2))  # noqa: E731
    for quantized in (False, True):
        est = estimators.sign_m_spsa(samplers.masked(samplers.gaussian_q8(), [mask]), 8, 2, quantized=quantized)
        g = est.estimate(loss, params, est.init(params), 1, 0)[0][0]
        assert not np.any(g[~mask]) and np.count_nonzero(g[mask]) > 0.5 * mask.sum()


def test_wrappers_forward_observe():
    params = [np.ones(4, np.int8)]
    mom = samplers.momentum_guided(samplers.gaussian_q8(), 0.5)
    wrapped = samplers.masked(samplers.kernel_normalized(mom), [np.ones(4, bool)])
    state = wrapped.observe(wrapped.init(params), [np.full(4, 7, np.int8)])
    assert int(state.steps_seen) == 1 and state.history[0].tolist() == [7, 7, 7, 7]


@pytest.mark.parametrize("make", [samplers.gaussian_q8, samplers.rademacher, samplers.binomial])
def test_support_draws_only_the_selected_elements_in_row_major_order(make):
    params = [np.zeros((4, 3), np.int8), np.zeros((2, 5), np.int8), np.zeros((3,), np.int8)]
    support = [np.array([[True] * 3, [False] * 3, [True] * 3, [False] * 3]), np.zeros((2, 5), bool),
               np.ones(3, bool)]
    dense = make()
    sparse = make(support=support)
    z, _ = sparse.sample(sparse.init(params), 11, 4, 2)
    assert not z[0][[1, 3]].any() and not z[1].any()
    # the selected elements are the first k draws of the tensor's own stream
    zd, _ = dense.sample(dense.init(params), 11, 4, 2)
    k = int(support[0].sum())
    full_first = dense.sample(dense.init([np.zeros(k, np.int8)]), 11, 4, 2)[0][0]
    assert np.array_equal(z[0][support[0]], full_first)
    assert np.array_equal(z[2], zd[2])  # an all-selected tensor is the dense draw


def test_support_shapes_must_match_params():
    s = samplers.gaussian_q8(support=[np.ones((2, 2), bool)])
    with pytest.raises(ValueError, match="support shapes"):
        s.sample(s.init([np.zeros((3, 2), np.int8)]), 0, 0, 0)


def test_block_coordinate_perturbs_one_tensor_per_probe_cycling_over_the_support():
    params = [np.zeros((4, 3)), np.zeros((5,)), np.zeros((2, 2))]
    support = [np.ones((4, 3), bool), np.ones((5,), bool), np.zeros((2, 2), bool)]  # the last one frozen (a head)
    base = samplers.gaussian_q8(support)
    block = samplers.block_coordinate(base, support)
    state = block.init(params)
    for step in range(3):
        for index in range(3):
            z, _ = block.sample(state, 7, step, index)
            dense, _ = base.sample(base.init(params), 7, step, index)
            chosen = (step + index) % 2  # tensors 0 and 1 may train
            for t in range(3):
                expected = dense[t] if t == chosen else np.zeros_like(dense[t])
                np.testing.assert_array_equal(z[t], expected)
    z, _ = samplers.block_coordinate(samplers.gaussian_q8()).sample(state, 7, 2, 0)  # no support: all 3 cycle
    assert [bool(np.any(a)) for a in z] == [False, False, True]
