import numpy as np
import pytest

from tflite_fg import quant, rng


def test_saturate_clips_instead_of_wrapping():
    x = np.array([-300, -128, -127, 0, 127, 128, 200, 2**31 - 1], dtype=np.int64)
    np.testing.assert_array_equal(quant.saturate_int8(x), [-127, -127, -127, 0, 127, 127, 127, 127])
    assert quant.saturate_int8(x).dtype == np.int8
    with pytest.raises(TypeError):
        quant.saturate_int8(np.array([1.5]))


def test_round_shift_hand_worked():
    # Dz = 3.5/127 -> M = round(Dz * 2**16) = round(1806.11) = 1806, k = 16.
    assert quant.multiplier_shift(quant.Z_SCALE) == (1806, 16)
    # 36*1806 = 65016; +32768 = 97784; >>16 = 1.   127*1806 + 32768 = 262130 < 4*65536 -> 3.
    # 18*1806 + 32768 = 65276 -> 0;  19*1806 + 32768 = 67082 -> 1;  -19*1806 + 32768 = -1546 -> -1.
    # 2*127*1806 + 32768 = 491492 -> 7.
    x = np.array([0, 36, -36, 127, -127, 18, -18, 19, -19, 254])
    np.testing.assert_array_equal(quant.round_shift(x, 1806, 16), [0, 1, -1, 3, -3, 0, 0, 1, -1, 7])


def test_round_shift_rounds_half_up():
    x = np.array([1, -1, 3, -3, 5, -5])  # x/2 = .5, -.5, 1.5, -1.5, 2.5, -2.5
    np.testing.assert_array_equal(quant.round_shift(x, 1, 1), [1, 0, 2, -1, 3, -2])
    with pytest.raises(ValueError):
        quant.round_shift(x, 1, 0)


def test_quantize_dequantize():
    q = quant.quantize(np.array([0.0, 0.3, -0.3, 1.25, 100.0, -100.0]), 0.5)
    np.testing.assert_array_equal(q, [0, 1, -1, 2, 127, -127])  # 2.5 -> 2 (ties to even), saturated ends
    assert q.dtype == np.int8
    np.testing.assert_array_equal(quant.dequantize(q, 0.5), [0, 0.5, -0.5, 1.0, 63.5, -63.5])
    np.testing.assert_array_equal(quant.dequantize(np.array([5], np.int8), 0.5, zero_point=1), [2.0])


def test_gaussian_table_literals_match_generator():
    t = quant.GAUSSIAN_THRESHOLDS
    assert t.shape == (254,) and t.tolist() == quant.gaussian_thresholds()
    assert np.all(np.diff(t.astype(np.int64)) > 0)
    assert np.all(t.astype(np.int64) + t[::-1].astype(np.int64) == 2**32)  # symmetric
    assert quant.ONE_Q == round(1.0 / quant.Z_SCALE) == 36


def test_gaussian_inverse_cdf_edges():
    u = np.array([0, int(quant.GAUSSIAN_THRESHOLDS[0]) - 1, int(quant.GAUSSIAN_THRESHOLDS[0]),
                  2**31, int(quant.GAUSSIAN_THRESHOLDS[-1]), 2**32 - 1], dtype=np.uint32)
    np.testing.assert_array_equal(quant.gaussian_q8_from_uint32(u), [-127, -127, -126, 0, 127, 127])


def test_gaussian_moments_over_a_million_draws():
    u = rng.uint32_stream(rng.stream_key(1, 2, 3, 4), 1_000_000)
    z_q = quant.gaussian_q8_from_uint32(u).astype(np.float64)
    assert abs(z_q.mean()) < 0.005 * 36
    assert abs(z_q.std() - 1 / quant.Z_SCALE) < 0.005 * 36  # std 1 in z units = 36.3 in z_q units
    # P(|z_q| <= 36) = P(|z| < 36.5 Dz) = 2 Phi(1.0059) - 1 = 0.6855, read off the table.
    t = quant.GAUSSIAN_THRESHOLDS.astype(np.int64)
    expected = (t[36 + 127] - t[-37 + 127]) / 2**32
    assert abs(expected - 0.6855) < 1e-4
    assert abs(np.mean(np.abs(z_q) <= 36) - expected) < 0.002


# ---- saturate / stochastic round-shift / QZO-FF steps (Eq. 6-8) ---------------------------

def test_saturate_int8_and_int16_ranges():
    x = np.array([-40000, -32768, -32767, -128, -127, 0, 127, 128, 32767, 32768, 40000], np.int64)
    s8 = quant.saturate(x, 8)
    assert s8.dtype == np.int8
    np.testing.assert_array_equal(s8, [-127, -127, -127, -127, -127, 0, 127, 127, 127, 127, 127])
    s16 = quant.saturate(x, 16)
    assert s16.dtype == np.int16  # narrow range: -32768 is never produced
    np.testing.assert_array_equal(s16, [-32767, -32767, -32767, -128, -127, 0, 127, 128, 32767, 32767, 32767])
    with pytest.raises(TypeError):
        quant.saturate(np.array([0.5]), 16)


def test_round_shift_stochastic_gives_floor_or_ceil_with_the_exact_probability():
    # 5 * 3 / 2**4 = 15/16 = 0.9375; -5 * 3 / 16 = -0.9375 (floor -1, ceil 0); 7 * 2 / 16 = 0.875.
    u = rng.uint32_stream(rng.stream_key(0, 0, 0, 0), 200_000)
    for x, mult, expected in ((5, 3, 15 / 16), (-5, 3, -15 / 16), (7, 2, 14 / 16), (1, 1, 1 / 16)):
        out = quant.round_shift_stochastic(np.full(u.shape, x, np.int64), mult, 4, u)
        lo = np.floor(expected)
        assert set(np.unique(out).tolist()) <= {lo, lo + 1}
        assert abs(out.mean() - expected) < 0.005  # unbiased: averages to the exact fraction
    # a whole result never moves: 32 * 1 / 16 = 2 exactly, whatever the draw
    np.testing.assert_array_equal(quant.round_shift_stochastic(np.full(1000, 32), 1, 4, u[:1000]), 2)


def test_round_shift_stochastic_uses_the_top_bits_of_the_draw():
    # k = 4: r = u >> 28. x*M = 8 (fraction 8/16): rounds up iff r >= 8, i.e. u >= 2**31.
    u = np.array([0, 2**31 - 1, 2**31, 2**32 - 1], np.uint32)
    np.testing.assert_array_equal(quant.round_shift_stochastic(np.full(4, 8), 1, 4, u), [0, 0, 1, 1])
    # k = 32: r = u itself. x*M = 1: rounds up only for u = 2**32 - 1.
    np.testing.assert_array_equal(quant.round_shift_stochastic(np.ones(4, np.int64), 1, 32, u), [0, 0, 0, 1])
    for bad in (0, 33):
        with pytest.raises(ValueError):
            quant.round_shift_stochastic(np.ones(4, np.int64), 1, bad, u)
    with pytest.raises(TypeError):
        quant.round_shift_stochastic(np.ones(4), 1, 4, u)


def test_quantize_eps():
    assert quant.quantize_eps(0.02, 0.01) == 2
    assert quant.quantize_eps(0.006, 0.01) == 1  # 0.6 LSB -> 1
    with pytest.raises(ValueError, match="below half"):
        quant.quantize_eps(0.004, 0.01)  # 0.4 LSB -> 0


def test_perturb_paper_hand_worked():
    # QZO-FF Eq. 6: w+- = ((w_q * 1_q +- eps_q * z_q) * M) >> k with 1_q = 36, M = 1806, k = 16.
    # w_q = 100, z_q = 36 (z = 1.0), eps_q = 2, sign +1:
    #   acc = 100*36 + 2*36 = 3672;  3672*1806 = 6631632;  + 32768 = 6664400;  >> 16 = 101 (101.69)
    # sign -1: acc = 3600 - 72 = 3528; 3528*1806 = 6371568; + 32768 = 6404336; >> 16 = 97 (97.72)
    w, z = np.array([100], np.int8), np.array([36], np.int8)
    plus = quant.perturb_paper(w, z, 2, 1, 8, 1806, 16)
    minus = quant.perturb_paper(w, z, 2, -1, 8, 1806, 16)
    assert plus.dtype == np.int8 and plus.tolist() == [101] and minus.tolist() == [97]
    # The float reference w + eps*z = 101.98 / 98.02 LSB would round to 102 / 98: the paper's
    # formula lands one LSB lower because the anchor is rescaled by 1_q * M / 2**k = 0.99207.


def test_perturb_paper_shrinks_a_large_anchor():
    # Zero perturbation (z = 0): the anchor alone goes through 1_q * Dz = 0.99213.
    # 127*36 = 4572; 4572*1806 = 8257032; + 32768 = 8289800; >> 16 = 126 (126.49): 127 -> 126.
    # 64*36*1806 + 32768 = 4193792 -> 63 (63.99): |w_q| >= 64 moves by one LSB at 8 bits;
    # 63*36*1806 + 32768 = 4128776 -> 63 (63.0): smaller ones stay.
    # -127: -8257032 + 32768 = -8224264 >> 16 = -126 (floor of -125.49).
    w = np.array([127, -127, 64, 63, 1, 0, -1], np.int8)
    out = quant.perturb_paper(w, np.zeros(7, np.int8), 5, 1, 8, 1806, 16)
    np.testing.assert_array_equal(out, [126, -126, 63, 63, 1, 0, -1])
    # In integers the anchor factor is 36*1806/2**16 = 65016/65536 = 0.99207 (a 0.79% shrink).
    # At 16 bits: 32512 (127 << 8): 32512*36*1806 = 2113800192; + 32768 >> 16 = 32254 (32254.53),
    # 258 master LSBs = 1.01 int8 LSB lower.
    assert quant.perturb_paper(np.array([32512], np.int16), np.zeros(1, np.int8), 1, 1, 16, 1806, 16).tolist() \
        == [32254]


def test_perturb_paper_against_a_float_reference():
    # |paper - (w +- eps z)| <= 1 LSB (rounding) + 0.8% of |w| (the documented anchor shrink).
    gen = np.random.default_rng(0)
    w = gen.integers(-127, 128, 5000).astype(np.int8)
    z = quant.gaussian_q8_from_uint32(rng.uint32_stream(rng.stream_key(1, 0, 0, 0), 5000))
    for eps, sign in ((1, 1), (3, -1), (8, 1)):
        out = quant.perturb_paper(w, z, eps, sign, 8, 1806, 16).astype(np.float64)
        ref = np.clip(w + sign * eps * z.astype(np.float64) * quant.Z_SCALE, -127, 127)
        shrink = 1.0 - quant.ONE_Q * 1806 / 65536  # 0.79%: 1_q * M / 2**k = 65016 / 65536
        assert abs(shrink - 0.0079346) < 1e-6
        assert np.all(np.abs(out - ref) <= 1.0 + shrink * np.abs(w) + 1e-9)
        # and exactly the rounding of the scaled float value (int64 arithmetic has no other error)
        exact = np.floor((w.astype(np.int64) * 36 + sign * eps * z.astype(np.int64)) * 1806 / 65536 + 0.5)
        np.testing.assert_array_equal(out, np.clip(exact, -127, 127))


def test_perturb_paper_overflow_is_checked():
    w = np.array([30000], np.int64)
    # 30000*36 + 2**24*127 = 2131786432 <= 2**31 - 1 fits; 2**25 * 127 does not.
    assert quant.perturb_paper(w, np.array([127]), 2**24, 1, 16, 1806, 16).tolist() == [32767]
    with pytest.raises(OverflowError, match="32 bits"):
        quant.perturb_paper(w, np.array([127]), 2**25, 1, 16, 1806, 16)
    with pytest.raises(OverflowError):
        quant.perturb_paper(w, np.array([-127]), 2**25, 1, 16, 1806, 16)


def test_sign_gradient_q8_rounds_half_away_from_zero():
    # g_q = round(S / m): S=3, m=2 -> 1.5 -> 2; S=-3 -> -2; S=1 -> 0.5 -> 1; S=5 -> 2.5 -> 3;
    # S=4 -> 2; S=7, m=3 -> 2.33 -> 2; S=8, m=3 -> 2.67 -> 3; S=-8 -> -3; S=0 -> 0.
    s = np.array([3, -3, 1, -1, 5, -5, 4, 0])
    g = quant.sign_gradient_q8(s, 2)
    assert g.dtype == np.int8
    np.testing.assert_array_equal(g, [2, -2, 1, -1, 3, -3, 2, 0])
    np.testing.assert_array_equal(quant.sign_gradient_q8(np.array([7, 8, -8, -7]), 3), [2, 3, -3, -2])
    # extremes fit int8: |S| <= 127 m
    np.testing.assert_array_equal(quant.sign_gradient_q8(np.array([127 * 5, -127 * 5]), 5), [127, -127])


def test_update_paper_hand_worked():
    # Dlr * Dz / Dw = 1/2 -> M = 32768, k = 16: step = (g*32768 + 32768) >> 16 = floor((g + 1) / 2).
    # g = 3 -> 2; -3 -> -1 (half up: -1.5 -> -1); 1 -> 1; -1 -> 0; 0 -> 0; 127 -> 64.
    w = np.array([10, 10, 10, 10, 10, -120], np.int8)
    g = np.array([3, -3, 1, -1, 0, 127], np.int8)
    assert quant.multiplier_shift(0.5) == (32768, 16)
    out = quant.update_paper(w, g, 32768, 16, 8)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, [8, 11, 9, 10, 10, -127])  # -120 - 64 = -184 saturates
    # Dlr = 1 weight LSB per unit z: M/2**k = Dz (1806/65536): g_q = 36 (z = 1) -> step
    # (36*1806 + 32768) >> 16 = 97784 >> 16 = 1; g_q = 18 -> 65276 >> 16 = 0; g_q = 127 -> 3.
    np.testing.assert_array_equal(quant.update_paper(np.zeros(3, np.int8), np.array([36, 18, 127], np.int8),
                                                     1806, 16, 8), [-1, 0, -3])
    # 16 bits keeps the range: 32767 - (-2) saturates at 32767
    assert quant.update_paper(np.array([32767], np.int16), np.array([-4]), 32768, 16, 16).tolist() == [32767]


def test_java_core_embeds_the_same_gaussian_table():
    """android_demo's Quant.java carries the inverse-CDF table as a literal: it must not drift."""
    import pathlib
    import re
    src = (pathlib.Path(__file__).resolve().parents[1] / "android_demo/core/src/main/java/org/tflitefg/core/Quant.java").read_text()
    body = re.search(r"GAUSSIAN_THRESHOLDS = \{(.*?)\};", src, re.S).group(1)
    assert [int(v) for v in re.findall(r"(\d+)L", body)] == quant.GAUSSIAN_THRESHOLDS.tolist()
