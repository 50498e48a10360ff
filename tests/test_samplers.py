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
