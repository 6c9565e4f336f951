"""Density estimators over latent means, with scikit-learn's estimator contract.

`score_samples(Z)` returns a log density (higher = more common); the sampling
weight of a sample is proportional to exp(-score), see `audit.sampling`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .errors import DebiasError, NotFittedError


def _check_latents(Z: np.ndarray, name: str = "Z", as_float64: bool = True) -> np.ndarray:
    """Z validated; as float64, or (as_float64=False) in its own float type, converted a block at a time later."""
    Z = np.asarray(Z)
    if as_float64 or not np.issubdtype(Z.dtype, np.floating):
        Z = Z.astype(np.float64, copy=False)
    if Z.ndim != 2 or Z.shape[0] == 0:
        raise DebiasError(f"{name} must be a non-empty 2-D array (n_samples, latent_dim), got shape {Z.shape}")
    if not np.isfinite(Z).all():
        raise DebiasError(f"{name} contains NaN or infinite values; the model diverged or the input is broken")
    return Z


class DensityEstimator(ABC):
    """Base: parameters in __init__, `fit` returns self, learned attributes end in `_`."""

    n_features_in_: int

    @abstractmethod
    def fit(self, Z: np.ndarray) -> "DensityEstimator": ...

    @abstractmethod
    def score_samples(self, Z: np.ndarray) -> np.ndarray: ...

    def _check_input(self, Z: np.ndarray, as_float64: bool = True) -> np.ndarray:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(Z) first")
        Z = _check_latents(Z, as_float64=as_float64)
        if Z.shape[1] != self.n_features_in_:
            raise DebiasError(f"Z has {Z.shape[1]} latent dimensions but the estimator was fitted on "
                              f"{self.n_features_in_}")
        return Z

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}


# Dimensions handled at once: a million latent means are turned into contiguous float64 rows (a column read
# in place strides over the whole array) a block at a time, so memory grows with N x DIM_BLOCK, not N x d.
DIM_BLOCK = 16


def _row_blocks(Z: np.ndarray):
    """(first dimension, Z's next DIM_BLOCK columns as contiguous float64 rows (b, n)) over all of Z."""
    for start in range(0, Z.shape[1], DIM_BLOCK):
        yield start, np.ascontiguousarray(Z[:, start:start + DIM_BLOCK].T, dtype=np.float64)


def _bin_index(rows: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of every value of rows (b, n) under edges (b, bins+1), (b, n); values outside the fitted range
    fall in the outer bins."""
    # Inner edges only: the outer edges act as -inf/+inf, as in the lab, and every index is in range.
    return np.stack([np.searchsorted(e[1:-1], row, side="right") for e, row in zip(edges, rows)])


class HistogramDensity(DensityEstimator):
    """The 6.S191 lab's estimator: per-dimension histograms, max over dimensions.

    For each dimension i the smoothed bin density q_i = (h_i + alpha) / sum(h_i + alpha)
    gives p_i = (1/q_i) / sum_over_fitted_samples(1/q_i); the lab's weight is
    max_i p_i.  score_samples returns -log(max_i p_i) so that exp(-score),
    normalised over the fitted samples, reproduces the lab's weights exactly.
    """

    def __init__(self, bins: int = 10, alpha: float = 0.001):
        if bins < 1:
            raise DebiasError(f"bins must be >= 1, got {bins}")
        if alpha <= 0:
            raise DebiasError(f"alpha (smoothing) must be > 0, got {alpha}")
        self.bins, self.alpha = bins, alpha

    def fit(self, Z: np.ndarray) -> "HistogramDensity":
        Z = _check_latents(Z, as_float64=False)
        self._start_fit(Z.shape[1])
        self.smoothed_density_, self.inverse_norm_ = np.empty((Z.shape[1], self.bins)), np.empty(Z.shape[1])
        for start, rows in _row_blocks(Z):
            dims = self._fit_block(start, rows)
            smoothed = self.hist_density_[dims] + self.alpha
            self.smoothed_density_[dims] = smoothed / smoothed.sum(1, keepdims=True)
            self.inverse_norm_[dims] = (1.0 / self._probability(start, rows)).sum(1)
        return self

    def _start_fit(self, d: int) -> None:
        self.n_features_in_ = d
        self.edges_, self.hist_density_ = np.empty((d, self.bins + 1)), np.empty((d, self.bins))

    def _fit_block(self, start: int, rows: np.ndarray) -> slice:
        """np.histogram (density) of each row of a block; returns the block's dimensions."""
        for i, row in enumerate(rows, start):
            self.hist_density_[i], self.edges_[i] = np.histogram(row, bins=self.bins, density=True)
        return slice(start, start + len(rows))

    def _probability(self, start: int, rows: np.ndarray) -> np.ndarray:
        """Smoothed bin probability of rows (b, n) of dimensions start, start + 1, ..., (b, n)."""
        dims = slice(start, start + len(rows))
        return np.take_along_axis(self.smoothed_density_[dims], _bin_index(rows, self.edges_[dims]), axis=1)

    def per_dimension_probability(self, Z: np.ndarray) -> np.ndarray:
        """Bin probability of every value, (n, d)."""
        Z = self._check_input(Z, as_float64=False)
        return np.concatenate([self._probability(start, rows) for start, rows in _row_blocks(Z)]).T

    def score_samples(self, Z: np.ndarray) -> np.ndarray:
        Z = self._check_input(Z, as_float64=False)
        best = np.zeros(len(Z))
        for start, rows in _row_blocks(Z):
            norm = self.inverse_norm_[start:start + len(rows), None]
            best = np.maximum(best, ((1.0 / self._probability(start, rows)) / norm).max(0))
        return -np.log(best)


class HistogramProductDensity(HistogramDensity):
    """The paper's estimator: product over dimensions of smoothed histogram densities.

    W(x) is proportional to prod_i 1 / (Q_i(z_i) + alpha); kept in log space,
    since a product of 100 small numbers underflows.
    """

    def fit(self, Z: np.ndarray) -> "HistogramProductDensity":
        Z = _check_latents(Z, as_float64=False)
        self._start_fit(Z.shape[1])
        for start, rows in _row_blocks(Z):
            self._fit_block(start, rows)
        counts = self.hist_density_ * np.diff(self.edges_, axis=1)                 # bin frequencies
        self.bin_frequency_ = counts / counts.sum(1, keepdims=True)
        return self

    def _probability(self, start: int, rows: np.ndarray) -> np.ndarray:
        dims = slice(start, start + len(rows))
        return np.take_along_axis(self.bin_frequency_[dims], _bin_index(rows, self.edges_[dims]), axis=1) + self.alpha

    def score_samples(self, Z: np.ndarray) -> np.ndarray:
        Z = self._check_input(Z, as_float64=False)
        total = np.zeros(len(Z))
        for start, rows in _row_blocks(Z):
            total += np.log(self._probability(start, rows)).sum(0)
        return total


class GaussianMixtureDensity(DensityEstimator):
    """Joint density: a full-covariance Gaussian mixture on the whitened top principal axes.

    Unlike the histograms it models dependencies between latent dimensions, so
    a rare *combination* of common values is found too.  PCA keeps the fit fast
    (full covariance in 100 dimensions would need far more samples).
    """

    def __init__(self, n_components: int = 8, max_dims: int = 16, max_fit_samples: int = 10000,
                 random_state: int = 0):
        if n_components < 1 or max_dims < 1 or max_fit_samples < 2:
            raise DebiasError("n_components, max_dims and max_fit_samples must be positive")
        self.n_components, self.max_dims = n_components, max_dims
        self.max_fit_samples, self.random_state = max_fit_samples, random_state

    def fit(self, Z: np.ndarray) -> "GaussianMixtureDensity":
        # scikit-learn imported late, as torch below: importing it takes ~2 s, and the CLI's parser lists
        # this module's estimator names before any command runs.
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture
        Z = _check_latents(Z)
        self.n_features_in_ = Z.shape[1]
        rng = np.random.default_rng(self.random_state)
        if len(Z) > self.max_fit_samples:
            Z = Z[rng.choice(len(Z), self.max_fit_samples, replace=False)]
        dims = max(1, min(self.max_dims, Z.shape[1], len(Z) - 1))
        self.pca_ = PCA(n_components=dims, whiten=True, random_state=self.random_state).fit(Z)
        X = self.pca_.transform(Z)
        k = max(1, min(self.n_components, len(Z) // max(2 * dims, 1)))
        self.mixture_ = GaussianMixture(k, covariance_type="full", reg_covar=1e-3,
                                        random_state=self.random_state).fit(X)
        return self

    def score_samples(self, Z: np.ndarray) -> np.ndarray:
        Z = self._check_input(Z)
        return self.mixture_.score_samples(self.pca_.transform(Z))


class KernelDensity(DensityEstimator):
    """Joint density: Gaussian kernels on the whitened top principal axes.

    A sample's density counts the samples near it, so a compact minority stays
    rare however tight it is (a mixture can spend a component on it and call it
    common).  Kernels sit on at most `max_reference` samples.  The bandwidth
    defaults to the median distance from a reference sample to its k-th
    nearest neighbour (k = sqrt of the reference count): rules of thumb such as
    Scott's shrink below the spacing of samples in 8+ dimensions, and every
    sample would then only see itself.  A query that is a reference sample does
    not count its own kernel (leave-one-out).
    """

    def __init__(self, max_dims: int = 8, max_reference: int = 5000, bandwidth: float | None = None,
                 random_state: int = 0):
        if max_dims < 1 or max_reference < 2:
            raise DebiasError("max_dims must be >= 1 and max_reference >= 2")
        if bandwidth is not None and not bandwidth > 0:
            raise DebiasError(f"bandwidth must be > 0 (or None to pick it from the data), got {bandwidth}")
        self.max_dims, self.max_reference = max_dims, max_reference
        self.bandwidth, self.random_state = bandwidth, random_state

    def fit(self, Z: np.ndarray) -> "KernelDensity":
        from sklearn.decomposition import PCA  # late: see GaussianMixtureDensity.fit
        Z = _check_latents(Z)
        if len(Z) < 2:
            raise DebiasError("kde needs at least 2 samples per class to fit")
        self.n_features_in_ = Z.shape[1]
        rng = np.random.default_rng(self.random_state)
        if len(Z) > self.max_reference:
            Z = Z[rng.choice(len(Z), self.max_reference, replace=False)]
        dims = max(1, min(self.max_dims, Z.shape[1], len(Z) - 1))
        self.pca_ = PCA(n_components=dims, whiten=True, random_state=self.random_state).fit(Z)
        self.reference_ = self.pca_.transform(Z).astype(np.float32)                  # (m, dims)
        self.bandwidth_ = float(self.bandwidth or self._median_knn_distance())
        return self

    def _median_knn_distance(self) -> float:
        import torch  # imported late: the estimators module stays light for numpy-only users

        ref = torch.from_numpy(self.reference_)
        k = min(len(ref) - 1, max(1, round(np.sqrt(len(ref)))))
        kth = [torch.cdist(block, ref).kthvalue(k + 1, dim=1).values          # +1: itself at distance 0
               for block in ref.split(1024)]
        return max(float(torch.cat(kth).median()), 1e-6)

    def score_samples(self, Z: np.ndarray) -> np.ndarray:
        import torch

        Z = self._check_input(Z)
        X = torch.from_numpy(self.pca_.transform(Z).astype(np.float32))
        ref = torch.from_numpy(self.reference_)
        m, d = ref.shape
        h2 = self.bandwidth_ ** 2
        # -|x - r|^2 / 2h^2 = (x.r - |r|^2/2) / h^2 - |x|^2 / 2h^2: one matrix product per block, and the
        # query's own term comes out of the log-sum-exp.  Cheaper than cdist, which takes roots to square.
        ref_term = (ref.square().sum(1) * (-0.5 / h2)).unsqueeze(0)                 # (1, m)
        query_term = X.square().sum(1).double() * (0.5 / h2)                        # (n,)
        out = np.empty(len(X))
        chunk = max(1, (32 << 20) // (4 * m))                                         # ~32 MB per block
        for start in range(0, len(X), chunk):
            block = slice(start, start + chunk)
            log_kernels = torch.addmm(ref_term, X[block], ref.T, alpha=1.0 / h2)   # + |x|^2/2h^2
            out[block] = self._log_kernel_sum(log_kernels, query_term[block])
        return out - (np.log(max(m - 1, 1)) + d * np.log(self.bandwidth_ * np.sqrt(2 * np.pi)))

    @staticmethod
    def _log_kernel_sum(shifted_log_kernels, query_term) -> np.ndarray:
        """log sum_j k_j per row, leaving out a kernel at distance ~0 (the query itself).

        `shifted_log_kernels` are log k_j + query_term (per row); taking query_term back off leaves
        float32 rounding of about 1e-6 of it, large for a far outlier.  A kernel within that
        rounding (and at least 1e-4) of 1 is the query itself or a duplicate of it.
        """
        import torch

        total = torch.logsumexp(shifted_log_kernels, dim=1).double() - query_term
        nearest = shifted_log_kernels.max(dim=1).values.double() - query_term
        is_self = nearest > -(1e-4 + 1e-5 * query_term)
        # sum - 1 for self-matches, floored at one neighbour two bandwidths away (exp(-2)).
        others = torch.where(is_self, torch.log(torch.clamp(total.exp() - 1.0, min=np.exp(-2.0))), total)
        return others.numpy()

ESTIMATORS = {
    "histogram": HistogramDensity,
    "histogram-product": HistogramProductDensity,
    "gmm": GaussianMixtureDensity,
    "kde": KernelDensity,
}


def make_estimator(name: str, **params) -> DensityEstimator:
    if name not in ESTIMATORS:
        raise DebiasError(f"unknown density estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](**params)
