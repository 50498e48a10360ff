"""Loss landscapes around a training run (Li et al. 2018, "Visualizing the Loss Landscape of Neural
Nets"): two directions in the space of the trainable kernels, losses on a grid in their plane, and
the run's weight trajectory projected onto it.

Params are lists of float arrays in int8-LSB units (w / Δw, TFLite native layout), the units every
method of this project shares, so one plane holds an int8 run, a float run and a Keras run alike.
The plane is centred on the run's start point. Directions:

- filter-normalised random (Li et al. §4): d ~ N(0, 1), each filter (output channel) rescaled to
  the norm of the same filter of the start weights, so that a step of 1 is as large as the weights
  themselves in every filter, whatever their scale;
- PCA (Li et al. §7): the top two principal directions of the trajectory's displacements from the
  start, orthonormal, so the plane is the one the run moved in most.

numpy only: the loss function is whatever the caller evaluates (the int8 graph, a float model).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Params = Sequence[np.ndarray]


def flatten(params: Params) -> np.ndarray:
    return np.concatenate([np.asarray(p, np.float64).ravel() for p in params])


def unflatten(flat: np.ndarray, like: Params) -> list[np.ndarray]:
    total = sum(int(np.size(p)) for p in like)
    if flat.size != total:
        raise ValueError(f"flat vector has {flat.size} values; the params have {total}")
    out, i = [], 0
    for p in like:
        n = int(np.size(p))
        out.append(np.asarray(flat[i:i + n]).reshape(np.shape(p)))
        i += n
    return out


def filter_normalized_direction(params: Params, axes: Sequence[int], seed: int) -> np.ndarray:
    """A Gaussian direction (flat), each filter (slice along its tensor's output-channel axis)
    rescaled to the norm of that filter of `params`; filters of norm 0 get a zero direction."""
    rng = np.random.default_rng(seed)
    out = []
    for w, axis in zip(params, axes):
        w = np.moveaxis(np.asarray(w, np.float64), axis, 0)
        d = rng.standard_normal(w.shape)
        wn = np.linalg.norm(w.reshape(len(w), -1), axis=1)
        dn = np.linalg.norm(d.reshape(len(d), -1), axis=1)
        scale = np.divide(wn, dn, out=np.zeros_like(wn), where=dn > 0)
        out.append(np.moveaxis(d * scale.reshape((-1,) + (1,) * (d.ndim - 1)), 0, axis).ravel())
    return np.concatenate(out)


def pca_directions(trajectory: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top two principal directions (unit, orthogonal) of the displacements trajectory - origin
    (rows: flat params at each snapshot), and the fraction of their variance each explains."""
    m = np.asarray(trajectory, np.float64) - origin
    if len(m) < 3:
        raise ValueError(f"PCA directions need at least 3 trajectory points, got {len(m)}")
    m = m - m.mean(axis=0)
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    if s[1] <= 0:
        raise ValueError("the trajectory does not span two dimensions (the run did not move)")
    return vt[0], vt[1], (s[:2] ** 2) / np.sum(s ** 2)


def project(points: np.ndarray, origin: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Coordinates (a, b) of each point (rows) in the plane origin + a d1 + b d2 (least squares,
    so non-orthogonal random directions are handled too)."""
    basis = np.stack([d1, d2], axis=1)
    coords, *_ = np.linalg.lstsq(basis, (np.atleast_2d(points) - origin).T, rcond=None)
    return coords.T


def grid_losses(loss_fn: Callable[[list[np.ndarray]], float], origin: np.ndarray, d1: np.ndarray, d2: np.ndarray,
                alphas: np.ndarray, betas: np.ndarray, like: Params,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """losses[j, i] = loss_fn(origin + alphas[i] d1 + betas[j] d2) (rows: beta, as contour plots read)."""
    out = np.empty((len(betas), len(alphas)))
    for j, b in enumerate(betas):
        for i, a in enumerate(alphas):
            out[j, i] = loss_fn(unflatten(origin + a * d1 + b * d2, like))
        if progress:
            progress(j + 1, len(betas))
    return out


def interpolate(loss_fn: Callable[[list[np.ndarray]], float], start: np.ndarray, end: np.ndarray, ts: np.ndarray,
                like: Params) -> np.ndarray:
    """Losses along (1 - t) start + t end (Goodfellow et al. 2015's 1-D plot)."""
    return np.array([loss_fn(unflatten((1 - t) * start + t * end, like)) for t in ts])


def plane_range(coords: np.ndarray, margin: float = 0.25, minimum: float = 1e-6) -> tuple[float, float]:
    """A range covering 0 and every coordinate, widened by `margin` of its span on both sides."""
    lo, hi = min(0.0, float(np.min(coords))), max(0.0, float(np.max(coords)))
    pad = max(margin * (hi - lo), minimum)
    return lo - pad, hi + pad


def roughness(grid: np.ndarray) -> float:
    """Mean |third difference| of the loss along both grid axes, relative to the grid's loss range:
    0 on any quadratic bowl (however curved), larger where the surface is jagged (e.g. int8 rounding
    steps) or changes curvature abruptly."""
    span = float(np.ptp(grid))
    if span == 0:
        return 0.0
    d3 = np.concatenate([np.abs(np.diff(grid, 3, axis=0)).ravel(), np.abs(np.diff(grid, 3, axis=1)).ravel()])
    return float(d3.mean() / span)


def path_stats(trajectory: np.ndarray, steps: Sequence[int], steps_per_epoch: float) -> dict:
    """Distances in int8-LSB units: the path length, the net displacement from the start, and the
    path length per epoch (the mean step size of the issue's "step size per epoch")."""
    t = np.asarray(trajectory, np.float64)
    seg = np.linalg.norm(np.diff(t, axis=0), axis=1)
    epochs = (steps[-1] - steps[0]) / steps_per_epoch
    return {"path_length": float(seg.sum()), "displacement": float(np.linalg.norm(t[-1] - t[0])),
            "per_epoch": float(seg.sum() / epochs) if epochs > 0 else 0.0,
            "start_norm": float(np.linalg.norm(t[0]))}
