"""New images from a DB-VAE's decoder: from the prior, or from a discovered subgroup's latent region.

A subgroup's region is a Gaussian fitted to its members' latent means. With fewer members than latent
dimensions the sample covariance is singular, so it is shrunk towards its diagonal (more for fewer
members) and floored: samples stay inside the region the members span instead of collapsing onto them.
The decoder learns to rebuild positives only (the DB-VAE's VAE loss), so decodings of a negative
subgroup show nothing real: they are refused.

The audit stores each positive subgroup's Gaussian in `subgroup_latents.npz` (ids, means, covariances),
so generating needs the model and the audit folder, not the data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DebiasError

LATENTS_FILE = "subgroup_latents.npz"
MAX_GENERATED = 100  # figures.MAX_GRID_IMAGES: a grid draws no more
VARIANCE_FLOOR = 1e-4


def fit_gaussian(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of latent vectors (n, d), the covariance shrunk towards its diagonal when n is small."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise DebiasError(f"a subgroup's Gaussian needs at least 2 members' latent vectors, got {len(z)}")
    n, d = z.shape
    mean = z.mean(0)
    cov = np.cov(z, rowvar=False).reshape(d, d)
    shrink = min(1.0, d / (n + d))  # all-diagonal for a handful of members, the sample covariance for many
    cov = (1 - shrink) * cov + shrink * np.diag(np.diag(cov))
    return mean, cov + VARIANCE_FLOOR * np.eye(d)


def sample_latents(n: int, latent_dim: int, seed: int = 0, mean: np.ndarray | None = None,
                   cov: np.ndarray | None = None) -> np.ndarray:
    """(n, latent_dim) float32 draws from N(0, I) (the prior) or from N(mean, cov)."""
    check_count(n)
    check_seed(seed)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n, latent_dim))
    if mean is None:
        return eps.astype(np.float32)
    # Eigen-decomposition, not Cholesky: a shrunk covariance is positive definite, but only just.
    values, vectors = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    root = vectors * np.sqrt(np.clip(values, 0, None))
    return (np.asarray(mean) + eps @ root.T).astype(np.float32)


MAX_SEED = 2**32 - 1


def check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise DebiasError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")


def check_count(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_GENERATED:
        raise DebiasError(f"the number of images to generate must be a whole number from 1 to {MAX_GENERATED}, "
                          f"got {n!r}")


def save_subgroup_latents(folder: Path, subgroups: list[dict], mu: np.ndarray,
                          subgroup_ids: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each positive subgroup's latent Gaussian (at least 2 members), saved for `debias generate --subgroup`;
    returns {subgroup id: (mean, covariance)}."""
    kept = [s for s in subgroups if s["class"] == "positive" and int((subgroup_ids == s["id"]).sum()) >= 2]
    fitted = [fit_gaussian(mu[subgroup_ids == s["id"]]) for s in kept]
    d = mu.shape[1]
    np.savez(Path(folder) / LATENTS_FILE, ids=np.array([s["id"] for s in kept], dtype=np.int64),
             means=np.array([m for m, _ in fitted], dtype=np.float32).reshape(len(kept), d),
             covs=np.array([c for _, c in fitted], dtype=np.float32).reshape(len(kept), d, d))
    return {s["id"]: g for s, g in zip(kept, fitted)}


def load_subgroup_gaussian(audit_dir: Path, subgroup: int, report: dict) -> tuple[np.ndarray, np.ndarray]:
    """The stored Gaussian of `subgroup`; a DebiasError that says why when there is none."""
    known = {s["id"]: s for s in report.get("subgroups", [])}
    if subgroup not in known:
        ids = ", ".join(str(i) for i in sorted(known)) or "none"
        raise DebiasError(f"audit {audit_dir} has no subgroup {subgroup}; its subgroups: {ids}")
    if known[subgroup]["class"] != "positive":
        raise DebiasError(f"subgroup {subgroup} is of the negative class: the DB-VAE's decoder learns to rebuild "
                          f"positives only, so its decodings there would show nothing real; pick a positive subgroup")
    path = Path(audit_dir) / LATENTS_FILE
    if not path.is_file():
        raise DebiasError(f"{path} is missing: the audit was written before generation existed; audit again "
                          f"to generate from its subgroups")
    with np.load(path) as stored:
        where = np.flatnonzero(stored["ids"] == subgroup)
        if not len(where):
            raise DebiasError(f"subgroup {subgroup} has fewer than 2 members: too few to fit a region to")
        return stored["means"][where[0]].astype(np.float64), stored["covs"][where[0]].astype(np.float64)
