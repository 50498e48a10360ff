"""Loss-landscape directions and projections (tflite_fg/landscape.py)."""
import numpy as np
import pytest

from tflite_fg import landscape as ls

PARAMS = [np.random.default_rng(0).normal(size=(8, 3, 3, 4)) * 20,  # conv OHWI: filters along axis 0
          np.random.default_rng(1).normal(size=(5, 8)) * 3]         # dense [out, in]
AXES = [0, 0]


def test_flatten_roundtrip():
    flat = ls.flatten(PARAMS)
    assert flat.size == 8 * 36 + 40
    back = ls.unflatten(flat, PARAMS)
    assert all(np.array_equal(a, b) for a, b in zip(back, PARAMS))
    with pytest.raises(ValueError, match="flat vector"):
        ls.unflatten(flat[:-1], PARAMS)


def test_filter_normalisation_preserves_every_filter_norm():
    params = [PARAMS[0].copy(), PARAMS[1].copy()]
    params[0][3] = 0.0  # a dead filter gets a zero direction
    d = ls.unflatten(ls.filter_normalized_direction(params, AXES, seed=5), params)
    for w, dd in zip(params, d):
        np.testing.assert_allclose(np.linalg.norm(dd.reshape(len(dd), -1), axis=1),
                                   np.linalg.norm(w.reshape(len(w), -1), axis=1), rtol=1e-12)
    assert not d[0][3].any()
    again = ls.filter_normalized_direction(params, AXES, seed=5)
    assert np.array_equal(again, ls.flatten(d)) and not np.array_equal(again, ls.filter_normalized_direction(params, AXES, 6))


def test_filter_normalisation_follows_the_channel_axis():
    w = [np.random.default_rng(2).normal(size=(3, 3, 2, 6))]  # Keras HWIO: filters along axis 3
    d = ls.unflatten(ls.filter_normalized_direction(w, [3], seed=0), w)[0]
    np.testing.assert_allclose(np.linalg.norm(d.reshape(-1, 6), axis=0), np.linalg.norm(w[0].reshape(-1, 6), axis=0))


def _trajectory():
    r = np.random.default_rng(3)
    origin = ls.flatten(PARAMS)
    steps = np.cumsum(r.normal(size=(12, origin.size)) * np.linspace(2, 0.2, origin.size), axis=0)
    return origin, np.vstack([origin, origin + steps])


def test_pca_directions_are_orthonormal_and_the_start_projects_to_the_origin():
    origin, traj = _trajectory()
    d1, d2, ratio = ls.pca_directions(traj, origin)
    assert abs(np.linalg.norm(d1) - 1) < 1e-12 and abs(np.linalg.norm(d2) - 1) < 1e-12 and abs(d1 @ d2) < 1e-12
    assert ratio[0] >= ratio[1] > 0 and ratio.sum() <= 1
    coords = ls.project(traj, origin, d1, d2)
    np.testing.assert_allclose(coords[0], [0.0, 0.0], atol=1e-9)
    with pytest.raises(ValueError, match="at least 3"):
        ls.pca_directions(traj[:2], origin)
    with pytest.raises(ValueError, match="did not move"):
        ls.pca_directions(np.vstack([origin] * 4), origin)


def test_projection_recovers_plane_coordinates_for_non_orthogonal_directions():
    origin = ls.flatten(PARAMS)
    d1 = ls.filter_normalized_direction(PARAMS, AXES, 0)
    d2 = ls.filter_normalized_direction(PARAMS, AXES, 1)
    pts = np.stack([origin + a * d1 + b * d2 for a, b in [(0, 0), (0.3, -0.2), (-1, 0.5)]])
    np.testing.assert_allclose(ls.project(pts, origin, d1, d2), [[0, 0], [0.3, -0.2], [-1, 0.5]], atol=1e-9)


def test_grid_interpolation_and_roughness_on_a_quadratic():
    origin = ls.flatten(PARAMS)
    d1, d2 = np.zeros_like(origin), np.zeros_like(origin)
    d1[0], d2[1] = 1.0, 1.0
    loss = lambda p: float(p[0].ravel()[0] ** 2 + 2 * p[0].ravel()[1] ** 2)  # noqa: E731
    a = np.linspace(-1, 1, 5)
    grid = ls.grid_losses(loss, np.zeros_like(origin), d1, d2, a, a, PARAMS)
    np.testing.assert_allclose(grid, a[None, :] ** 2 + 2 * a[:, None] ** 2)
    assert ls.roughness(grid) < 1e-12 and ls.roughness(np.zeros((3, 3))) == 0.0
    jagged = grid + np.where((np.add.outer(range(5), range(5)) % 2) == 0, 0.5, -0.5)
    assert ls.roughness(jagged) > 1
    ts = np.linspace(0, 1, 3)
    np.testing.assert_allclose(ls.interpolate(loss, np.zeros_like(origin), d1, ts, PARAMS), ts ** 2)
    assert ls.plane_range(np.array([1.0, 3.0])) == (-0.75, 3.75)


def test_path_stats():
    traj = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 0.0]])
    s = ls.path_stats(traj, [0, 10, 20], steps_per_epoch=5)
    assert s["path_length"] == 9.0 and s["displacement"] == 3.0 and s["per_epoch"] == 9.0 / 4
