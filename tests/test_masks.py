import numpy as np
import pytest

from tflite_fg import masks, rng


def test_topk_keeps_the_largest_magnitudes():
    w = np.array([[5, -9, 0, 3], [-1, 7, -7, 2]], np.int8)  # |w| = 5 9 0 3 1 7 7 2
    m = masks.topk_magnitude([w], 0.5)[0]  # keep 8 - floor(0.5*8) = 4: 9, 7, 7, 5
    assert m.dtype == bool and m.shape == w.shape
    np.testing.assert_array_equal(m, [[True, True, False, False], [False, True, True, False]])
    # 0.6 -> keep 8 - floor(4.8) = 4 too; 0.75 -> keep 2: the tie 7 / -7 broken by flat index
    np.testing.assert_array_equal(masks.topk_magnitude([w], 0.75)[0],
                                  [[False, True, False, False], [False, True, False, False]])
    # at least one element is always kept
    assert masks.topk_magnitude([np.zeros(3, np.int8)], 0.9)[0].tolist() == [True, False, False]
    assert masks.topk_magnitude([w], 0.0)[0].all()


@pytest.mark.parametrize("size,sparsity,keep", [(1000, 0.9, 100), (999, 0.9, 100), (10, 0.95, 1), (7, 0.5, 4)])
def test_counts_are_exact(size, sparsity, keep):
    # keep = size - floor(sparsity * size), at least 1: 999 -> 999 - 899 = 100; 7 -> 7 - 3 = 4
    w = np.random.default_rng(size).integers(-127, 128, size).astype(np.int8)
    for m in (masks.topk_magnitude([w], sparsity)[0], masks.random_mask([w], sparsity, 3)[0]):
        assert int(m.sum()) == keep
    top = masks.topk_magnitude([w], sparsity)[0]
    assert np.abs(w[top].astype(int)).min() >= np.abs(w[~top].astype(int)).max(initial=0)


def test_random_masks_are_deterministic_per_seed():
    params = [np.zeros((20, 30), np.int8), np.zeros(50, np.int8)]
    a = masks.random_mask(params, 0.8, 5)
    b = masks.random_mask(params, 0.8, 5)
    c = masks.random_mask(params, 0.8, 6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert [int(m.sum()) for m in a] == [120, 10]
    # the documented rule: keep the elements with the smallest draws of the MASK_INDEX stream
    u = rng.uint32_stream(rng.stream_key(5, 0, rng.MASK_INDEX, 1), 50)
    np.testing.assert_array_equal(np.flatnonzero(a[1]), np.sort(np.argsort(u, kind="stable")[:10]))
    # independent of the weights
    assert all(np.array_equal(x, y) for x, y in zip(a, masks.random_mask([p + 1 for p in params], 0.8, 5)))


def test_threshold_mask():
    w = np.array([0, 7, -8, 8, 100, -127], np.int8)
    np.testing.assert_array_equal(masks.threshold_mask([w], 8)[0], [False, False, True, True, True, True])
    np.testing.assert_array_equal(masks.threshold_mask([w], 0)[0], np.ones(6, bool))
    # a tensor below the threshold keeps its largest element
    np.testing.assert_array_equal(masks.threshold_mask([np.array([1, -3, 2], np.int8)], 8)[0], [False, True, False])
    # master units: lsb 256 -> the same mask for w << 8
    np.testing.assert_array_equal(masks.threshold_mask([w.astype(np.int16) << 8], 8, 256)[0],
                                  masks.threshold_mask([w], 8)[0])
    with pytest.raises(ValueError, match="threshold"):
        masks.threshold_mask([w], -1)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_validation(bad):
    with pytest.raises(ValueError, match="sparsity"):
        masks.topk_magnitude([np.zeros(4, np.int8)], bad)
    with pytest.raises(ValueError, match="sparsity"):
        masks.random_mask([np.zeros(4, np.int8)], bad, 0)


def test_make_masks_and_frozen_fraction():
    params = [np.arange(-50, 50, dtype=np.int8).reshape(10, 10), np.arange(10, dtype=np.int8)]
    assert masks.make_masks("none", params, 0.9, 0) is None
    top = masks.make_masks("topk", params, 0.9, 0)
    assert [int(m.sum()) for m in top] == [10, 1]
    assert masks.frozen_fraction(top) == pytest.approx(1 - 11 / 110)
    rnd = masks.make_masks("random", params, 0.5, 1)
    assert all(np.array_equal(a, b) for a, b in zip(rnd, masks.random_mask(params, 0.5, 1)))
    thr = masks.make_masks("threshold", params, 0.9, 0, threshold_lsb=45)
    assert [int(m.sum()) for m in thr] == [11, 1]  # |w| >= 45: -50..-45 (6), 45..49 (5); tensor 2 keeps its max
    assert masks.frozen_fraction([np.ones(4, bool), np.zeros(4, bool)]) == 0.5
    with pytest.raises(ValueError, match="mask must be one of"):
        masks.make_masks("bottomk", params, 0.9, 0)
