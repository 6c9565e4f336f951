"""A 2-D map of the latent space: PCA of the latent means, computed once at audit time.

PCA, not UMAP or t-SNE: it is deterministic, linear (distances along an axis
mean the same everywhere, so a subgroup's spread reads off the map honestly),
and costs one d x d eigendecomposition plus one pass over the latents.
The report keeps a random sample of the points (`MAP_POINTS`) so pages stay
light; samples.csv keeps every sample's coordinates (map_x, map_y).
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits  # installed with scikit-learn

from .errors import DebiasError

MAP_POINTS = 2000   # points stored in the report (and drawn): a random sample above this
FIT_ROWS = 20_000   # samples the axes are fitted on (see pca_2d)


def pca_2d(mu: np.ndarray, fit_rows: int = FIT_ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(coordinates (N, 2), explained variance ratio (2,)) of the latent means `mu` (N, d).

    The axes are fitted on at most `fit_rows` samples (a seeded random subset): the two leading
    directions of 20k samples match those of 100k to display precision, at a fifth of the cost.
    Every sample is projected.
    """
    z = np.asarray(mu)
    if z.ndim != 2 or len(z) < 2:
        raise DebiasError(f"the latent map needs at least 2 latent vectors of shape (N, d), got {z.shape}")
    # One BLAS thread: the products are small (about 0.03 s), and on a busy machine threads that wait for
    # each other made them 20x slower (0.55 s at 100k x 100 on 2 loaded cores).
    with threadpool_limits(1):
        return _pca_2d(z, fit_rows, seed)


def _pca_2d(z: np.ndarray, fit_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    fit = z if len(z) <= fit_rows else z[np.sort(np.random.default_rng(seed).choice(len(z), fit_rows, replace=False))]
    mean = fit.mean(0, dtype=np.float64)
    centred = (fit - mean).astype(np.float32)            # float32 products: latent means are O(1)
    cov = (centred.T @ centred).astype(np.float64) / (len(fit) - 1)   # (d, d)
    values, vectors = np.linalg.eigh(cov)                # ascending
    order = np.argsort(values)[::-1][:2]
    axes = vectors[:, order]                             # (d, k), k <= 2
    # Fix each axis's sign (largest loading positive) so the same data always draws the same map.
    axes = axes * np.where(axes[np.abs(axes).argmax(0), np.arange(axes.shape[1])] < 0, -1.0, 1.0)
    # Project without a centred copy of all N: z @ axes - mean @ axes.
    coords = (z.astype(np.float32, copy=False) @ axes.astype(np.float32)).astype(np.float64) - mean @ axes
    if coords.shape[1] < 2:                              # a 1-D latent space: the second axis is flat
        coords = np.column_stack([coords, np.zeros(len(z))])
    total = values.sum()
    ratio = values[order] / total if total > 0 else np.zeros(len(order))
    return coords, np.pad(ratio, (0, 2 - len(ratio)))


def latent_map(coords: np.ndarray, explained: np.ndarray, max_points: int = MAP_POINTS, seed: int = 0) -> dict:
    """The report's `latent_map`: the method, the explained variance, and up to `max_points` points
    `[index, x, y]` (a uniform random sample, sorted by index, when there are more)."""
    n = len(coords)
    keep = np.arange(n) if n <= max_points else np.sort(np.random.default_rng(seed).choice(n, max_points,
                                                                                          replace=False))
    pts = coords[keep]
    return {"method": "pca", "explained_variance_ratio": [float(v) for v in explained],
            "n_samples": int(n), "n_points": int(len(keep)), "sampled": bool(len(keep) < n),
            "points": [[int(i), round(float(x), 4), round(float(y), 4)] for i, (x, y) in zip(keep, pts)]}


__all__ = ["MAP_POINTS", "FIT_ROWS", "pca_2d", "latent_map"]
