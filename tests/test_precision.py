import numpy as np
import pytest

from tflite_fg import precision, quant, rng

W8, W16 = precision.integer_space(8), precision.integer_space(16)
W16_SR = precision.integer_space(16, engine_rounding="stochastic")


def test_names_lsb_and_validation():
    assert (W8.name, W8.lsb, W8.integer) == ("w8", 1.0, True)
    assert (W16.name, W16.lsb) == ("w16", 256.0)
    assert W16_SR.name == "w16-sr" and precision.integer_space(16, "paper").name == "w16-paper"
    assert precision.integer_space(8, engine_rounding="stochastic").name == "w8"  # nothing to round at 8 bits
    assert (precision.Z_MULTIPLIER, precision.Z_SHIFT) == (1806, 16)
    with pytest.raises(ValueError, match="bits"):
        precision.integer_space(32)
    with pytest.raises(ValueError, match="arithmetic"):
        precision.integer_space(8, "exact")
    with pytest.raises(ValueError, match="engine_rounding"):
        precision.integer_space(16, engine_rounding="floor")


def test_master_eps():
    assert precision.master_eps(1, 1) == 1 and precision.master_eps(3, 1) == 3
    assert precision.master_eps(0.5, 256) == 128 and precision.master_eps(1 / 256, 256) == 1
    for eps, lsb in ((0.5, 1), (1 / 512, 256), (0.3, 256), (0, 1)):
        with pytest.raises(ValueError, match="whole number"):
            precision.master_eps(eps, lsb)


def test_w16_from_int8_is_a_shift_and_to_engine_inverts_it():
    k = [np.arange(-127, 128, dtype=np.int8), np.array([[0, 1], [-1, 127]], np.int8)]
    master = W16.from_int8(k)
    assert all(m.dtype == np.int16 for m in master)
    np.testing.assert_array_equal(master[0], np.arange(-127, 128) * 256)
    np.testing.assert_array_equal(master[1], [[0, 256], [-256, 32512]])
    for space in (W16, W16_SR):
        for seed in (None, 3):  # whole int8 values are exact whatever the rounding
            back = space.to_engine(master, seed, 5)
            assert all(b.dtype == np.int8 and np.array_equal(b, a) for a, b in zip(k, back))
    with pytest.raises(TypeError, match="int8"):
        W16.from_int8([np.zeros(3, np.int16)])
    # w8: the master copy is the kernels themselves
    assert all(np.array_equal(a, b) and b.dtype == np.int8 for a, b in zip(k, W8.from_int8(k)))
    assert W8.to_engine(k, 1, 2)[0] is k[0]


def test_w16_to_engine_nearest_hand_worked():
    # (w + 128) >> 8: 383 = 1.496 -> 1; 384 = 1.5 -> 2 (half up); -384 = -1.5 -> -1; -385 -> -2;
    # 32767 = 127.996 -> 128 saturates to 127; -32767 -> -128 (floor of -127.496) saturates to -127.
    w = [np.array([383, 384, -384, -385, 127, 128, 32767, -32767], np.int16)]
    np.testing.assert_array_equal(W16.to_engine(w), [[1, 2, -1, -2, 0, 1, 127, -127]])
    np.testing.assert_array_equal(W16_SR.to_engine(w, None, 7), W16.to_engine(w))  # seed None: nearest


def test_w16_stochastic_engine_rounding():
    n = 100_000
    w = [np.full(n, 64 + 3 * 256, np.int16), np.full(n, -64 - 3 * 256, np.int16)]  # 3.25 and -3.25
    out = W16_SR.to_engine(w, 11, 4)
    assert set(np.unique(out[0]).tolist()) == {3, 4} and set(np.unique(out[1]).tolist()) == {-4, -3}
    assert abs(out[0].astype(np.float64).mean() - 3.25) < 0.005  # unbiased
    assert abs(out[1].astype(np.float64).mean() + 3.25) < 0.005
    # the documented stream: (w + (u >> 24)) >> 8, u from stream_key(seed, step, ENGINE_ROUND_INDEX, tensor)
    u = rng.uint32_stream(rng.stream_key(11, 4, rng.ENGINE_ROUND_INDEX, 1), n)
    np.testing.assert_array_equal(out[1], (-64 - 3 * 256 + (u.astype(np.int64) >> 24)) >> 8)
    # common random numbers: a function of (seed, step, tensor) only, whatever the probe
    again = W16_SR.to_engine([a.copy() for a in w], 11, 4)
    assert all(np.array_equal(a, b) for a, b in zip(out, again))
    assert not np.array_equal(W16_SR.to_engine(w, 11, 5)[0], out[0])
    assert not np.array_equal(W16_SR.to_engine(w, 12, 4)[0], out[0])
    # so w+ and w- of a probe that differ in one element round the same everywhere else
    plus, minus = w[0].copy(), w[0].copy()
    plus[0] += 256
    minus[0] -= 256
    ep, em = W16_SR.to_engine([plus], 11, 4)[0], W16_SR.to_engine([minus], 11, 4)[0]
    np.testing.assert_array_equal(ep[1:], em[1:])
    assert int(ep[0]) - int(em[0]) == 2


def test_integer_perturb_anchored_hand_worked():
    # w16, eps = 1 int8 LSB = 256 master LSBs, z_q = 36: delta = (256*36*1806 + 32768) >> 16 = 254
    # (254.47; eps * z = 256 * 0.992 = 254.0 master LSBs). The anchor itself is exact.
    w = [np.array([1000, 0, 32700, -32700], np.int16)]
    z = [np.array([36, 0, 36, -36], np.int8)]
    plus, minus = W16.perturb(w, z, (1.0,), 1), W16.perturb(w, z, (1.0,), -1)
    np.testing.assert_array_equal(plus[0], [1254, 0, 32767, -32767])  # saturates at +-32767
    np.testing.assert_array_equal(minus[0], [746, 0, 32446, -32446])
    assert plus[0].dtype == np.int16
    # eps = 0.5 int8 LSB = 128 master LSBs: (128*36*1806 + 32768) >> 16 = 127 (127.48)
    np.testing.assert_array_equal(W16.perturb(w, z, (0.5,), 1)[0][:2], [1127, 0])
    # w8: delta = (2*36*1806 + 32768) >> 16 = 2; saturation at +-127
    out = W8.perturb([np.array([0, 126, -126], np.int8)], [np.array([36, 36, -36], np.int8)], (2,), 1)
    assert out[0].dtype == np.int8 and out[0].tolist() == [2, 127, -127]


def test_integer_perturb_rejects_fractional_master_eps():
    w = [np.zeros(3, np.int16)]
    z = [np.ones(3, np.int8)]
    with pytest.raises(ValueError, match="whole number"):
        W16.perturb(w, z, (1 / 512,), 1)
    with pytest.raises(ValueError, match="whole number"):
        W8.perturb([np.zeros(3, np.int8)], z, (0.5,), 1)


def test_paper_arithmetic_matches_quant():
    paper16 = precision.integer_space(16, "paper")
    paper8 = precision.integer_space(8, "paper")
    w = np.array([32512, -1000, 0, 100], np.int16)
    z = np.array([0, 36, -90, 127], np.int8)
    np.testing.assert_array_equal(paper16.perturb([w], [z], (2,), -1)[0],
                                  quant.perturb_paper(w, z, 512, -1, 16, 1806, 16))
    assert paper16.perturb([w], [z], (2,), -1)[0][0] == 32254  # the anchor's 0.79% shrink
    w8 = np.array([100], np.int8)
    assert paper8.perturb([w8], [np.array([36], np.int8)], (2,), 1)[0].tolist() == [101]  # test_quant


def test_apply_saturates_and_checks_updates():
    w16 = [np.array([32700, -32700, 5], np.int16)]
    out = W16.apply(w16, [np.array([100, -100, -3], np.int32)])
    assert out[0].dtype == np.int16 and out[0].tolist() == [32767, -32767, 2]
    out8 = W8.apply([np.array([120, -120, 5], np.int8)], [np.array([10, -10, 1])])
    assert out8[0].dtype == np.int8 and out8[0].tolist() == [127, -127, 6]
    with pytest.raises(TypeError, match="integer"):
        W16.apply(w16, [np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match="shape"):
        W16.apply(w16, [np.zeros(4, np.int32)])
    with pytest.raises(ValueError, match="updates"):
        W16.apply(w16, [])


def test_float_space_arithmetic():
    fs = precision.float_space()
    assert (fs.name, fs.lsb, fs.integer) == ("fp32", 1.0, False)
    k = [np.array([1, -2, 127], np.int8)]
    w = fs.from_int8(k)
    assert w[0].dtype == np.float32 and w[0].tolist() == [1.0, -2.0, 127.0]
    z = [np.array([36, 0, -127], np.int8)]
    plus = fs.perturb(w, z, (0.5,), 1)
    minus = fs.perturb(w, z, (0.5,), -1)
    expected = np.float32(0.5 * quant.Z_SCALE) * z[0].astype(np.float32)  # eps * z in LSBs, no rounding
    np.testing.assert_array_equal(plus[0], w[0] + expected)
    np.testing.assert_array_equal(minus[0], w[0] - expected)
    assert plus[0][2] < 127 - 1.7  # no saturation, no grid: 127 - 0.5 * 3.5
    new = fs.apply(w, [np.array([0.25, -0.5, 1.0])])
    assert new[0].dtype == np.float32 and new[0].tolist() == [1.25, -2.5, 128.0]
    assert fs.to_engine(new, 1, 2)[0] is new[0]
    with pytest.raises(ValueError, match="updates"):
        fs.apply(w, [])
