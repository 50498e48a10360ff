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
