import json
import pathlib

import numpy as np
import pytest

from tflite_fg import estimators, quant, rng

GOLDEN = json.loads((pathlib.Path(__file__).parent / "golden" / "rng_golden.json").read_text())
M64 = (1 << 64) - 1


def ref_mix(z: int) -> int:
    """Pure-Python-int SplitMix64 finaliser: the differential reference."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def ref_key(seed: int, step: int, index: int, tensor: int) -> int:
    g = 0x9E3779B97F4A7C15
    k = ref_mix((seed + g) & M64)
    for pos, v in ((2, step), (3, index), (4, tensor)):
        k = ref_mix(k ^ ref_mix((v + pos * g) & M64))
    return k


def test_splitmix64_reference_output():
    # SplitMix64 seeded with 0: first output is mix(GAMMA) = 0xE220A8397B1DCDAF (published value).
    assert int(rng.mix(np.array(rng.GAMMA, dtype=np.uint64))) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("case", GOLDEN["mix"])
def test_mix_golden(case):
    assert int(rng.mix(np.array(int(case["in"], 16), dtype=np.uint64))) == int(case["out"], 16)


def test_constants_golden():
    c = GOLDEN["constants"]
    assert int(c["GAMMA"], 16) == rng.GAMMA and int(c["MINIBATCH_INDEX"], 16) == rng.MINIBATCH_INDEX
    assert (c["ONE_Q"], c["Z_MULTIPLIER"], c["Z_SHIFT"]) == (quant.ONE_Q, estimators.Z_MULTIPLIER, estimators.Z_SHIFT)
    assert c["GAUSSIAN_THRESHOLDS_SUM"] == int(quant.GAUSSIAN_THRESHOLDS.astype(np.int64).sum())


@pytest.mark.parametrize("case", GOLDEN["streams"])
def test_streams_golden(case):
    seed = int(case["seed"], 16)
    key = rng.stream_key(seed, case["step"], case["index"], case["tensor"])
    assert key == int(case["key"], 16) == ref_key(seed, case["step"], case["index"], case["tensor"])
    u = rng.uint32_stream(key, len(case["uint32"]))
    assert u.dtype == np.uint32 and u.tolist() == case["uint32"]
    z = quant.gaussian_q8_from_uint32(u)
    assert z.tolist() == case["gaussian_q8"]
    assert quant.round_shift(z, estimators.Z_MULTIPLIER, estimators.Z_SHIFT).tolist() == case["delta_eps1"]


@pytest.mark.parametrize("case", GOLDEN["minibatches"])
def test_minibatch_golden(case):
    idx = rng.minibatch_indices(int(case["seed"], 16), case["step"], case["n_total"], case["batch_size"])
    assert idx.dtype == np.int64 and idx.tolist() == case["indices"]


def test_stream_matches_pure_python_and_prefix_property():
    key = rng.stream_key(3, 17, 2, 5)
    long = rng.uint32_stream(key, 1000)
    for n in (0, 1, 7, 999):
        np.testing.assert_array_equal(rng.uint32_stream(key, n), long[:n])
    for i in (0, 1, 500, 999):  # element i alone, from its counter
        assert int(long[i]) == ref_mix((key + (i + 1) * rng.GAMMA) & M64) >> 32


def test_keys_differ_per_field_and_are_not_symmetric():
    base = (5, 6, 7, 8)
    keys = {rng.stream_key(*base)}
    for pos in range(4):
        for delta in (1, 2):
            args = list(base)
            args[pos] += delta
            keys.add(rng.stream_key(*args))
    assert len(keys) == 9
    assert rng.stream_key(0, 1, 2, 0) != rng.stream_key(0, 2, 1, 0)
    assert rng.stream_key(-1, 0, 0, 0) == rng.stream_key(M64, 0, 0, 0)  # Java long semantics


def test_uniformity_of_stream():
    u = rng.uint32_stream(rng.stream_key(0, 0, 0, 0), 200_000).astype(np.float64) / 2**32
    assert abs(u.mean() - 0.5) < 0.003 and abs(u.var() - 1 / 12) < 0.001
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01


def test_minibatch_properties():
    idx = rng.minibatch_indices(9, 4, 50, 50)
    assert sorted(idx.tolist()) == list(range(50))  # a full permutation
    np.testing.assert_array_equal(rng.minibatch_indices(9, 4, 50, 10), idx[:10])  # prefix property
    assert not np.array_equal(rng.minibatch_indices(9, 5, 50, 10), idx[:10])
    assert not np.array_equal(rng.minibatch_indices(10, 4, 50, 10), idx[:10])
    counts = np.bincount(np.concatenate([rng.minibatch_indices(1, s, 10, 1) for s in range(5000)]), minlength=10)
    assert counts.min() > 400 and counts.max() < 600


@pytest.mark.parametrize("n_total,batch", [(0, 1), (10, 0), (10, 11), (1 << 32, 1)])
def test_minibatch_rejects_bad_sizes(n_total, batch):
    with pytest.raises(ValueError):
        rng.minibatch_indices(0, 0, n_total, batch)


@pytest.mark.parametrize("case", GOLDEN["sign_gradient"])
def test_sign_gradient_float_golden(case):
    g = estimators.sign_gradient_from_sum(np.array(case["S"], np.int32), case["m"])
    assert g.dtype == np.float32
    assert [f"0x{b:08x}" for b in g.view(np.uint32).tolist()] == case["float32_bits"]


def test_reserved_indices_are_distinct_negative_java_longs():
    reserved = [rng.MINIBATCH_INDEX, rng.ASCENT_INDEX, rng.ENGINE_ROUND_INDEX, rng.UPDATE_ROUND_INDEX, rng.MASK_INDEX,
                rng.SELECT_INDEX]
    # -1 .. -6 as Java longs (two's complement)
    assert [r - (1 << 64) for r in reserved] == [-1, -2, -3, -4, -5, -6]
    # never a perturbation index 0..m-1, nor a momentum second draw index + 2**32 (m < 2**32)
    assert rng.SECOND_DRAW == 1 << 32 and min(reserved) > 2 * rng.SECOND_DRAW
    keys = {rng.stream_key(0, 0, r, 0) for r in reserved} | {rng.stream_key(0, 0, i, 0) for i in range(4)}
    keys |= {rng.stream_key(0, 0, i + rng.SECOND_DRAW, 0) for i in range(4)}
    assert len(keys) == len(reserved) + 8
    assert rng.stream_key(1, 2, rng.ASCENT_INDEX, 3) == rng.stream_key(1, 2, -2, 3)
