"""The uncertainty every fairness number travels with: Wilson intervals, bootstraps, McNemar's test.

Wilson, not the normal (Wald) interval: it keeps close to 95% coverage for small
groups and for rates near 0 or 1, where Wald collapses to a zero-width interval.
McNemar's exact test is the paired test for two models scored on the same samples:
only the samples one model gets right and the other wrong carry information.

The bootstraps never materialise resampled indices. Resampling a group's n samples
with replacement only changes how many land in each outcome (right / wrong, or the
four right/wrong pairs of two models), and those counts are binomial (multinomial)
with the group's observed shares. Drawing the counts is the same stratified
bootstrap, vectorised, at a cost of groups x resamples whatever the test set size.
"""
from __future__ import annotations

import warnings

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
CONFIDENCE = 0.95
_CELLS = 1_000_000  # most (resample x group) draws held at once: many groups must not exhaust memory


def wilson_interval(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of k successes in n trials (arrays broadcast); nan where n == 0."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 or k = n the bound is exactly 0 or 1; rounding would leave it at 3e-17 above 0 (so the
    # interval would miss the estimate itself), hence set, not only clipped.
    low = np.where((k == 0) & (n > 0), 0.0, np.clip(centre - half, 0.0, 1.0))
    high = np.where((k == n) & (n > 0), 1.0, np.clip(centre + half, 0.0, 1.0))
    return low, high


def as_interval(low, high) -> list[float] | None:
    """[low, high] for JSON; None when undefined (JSON has no NaN, PostgreSQL refuses it)."""
    low, high = float(low), float(high)
    return None if not (np.isfinite(low) and np.isfinite(high)) else [low, high]


def as_number(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def mean_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student's t interval of a mean; nan with fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    from scipy.stats import t  # scipy comes with scikit-learn; imported here to keep start-up light
    half = t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def percentile_interval(draws: np.ndarray, confidence: float = CONFIDENCE, axis: int = 0) -> np.ndarray:
    """The central `confidence` share of bootstrap draws along `axis`: (2, ...) low and high.

    nan draws (a ratio over a best group at 0) are ignored; all-nan gives nan.
    """
    tail = (1 - confidence) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": the nan result says it
        return np.nanpercentile(draws, [tail, 100 - tail], axis=axis)


def bias_corrected_interval(draws: np.ndarray, estimate: float, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Percentile interval of an extreme (worst group, gap, ratio) moved back by twice the bootstrap bias.

    The worst and best of several noisy group accuracies are biased (winner's curse): the observed
    gap overstates the true one when groups are close, and each resample overstates the observed gap
    by about as much again. Plain percentile intervals then miss: with one bad group among tied ones
    they cover the true gap 78% of the time, after this correction 89% (random rates: 88% -> 93%;
    well separated groups: 93% -> 92%; bench/eval_uncertainty.py). Exact ties still undercover, as
    for any bootstrap of a max or min. Clipped to [low, high], where the statistic lives.
    """
    draws = np.asarray(draws, dtype=float)
    if not np.isfinite(estimate) or not np.isfinite(draws).any():
        return np.array([np.nan, np.nan])
    bias = np.nanmean(draws) - estimate
    return np.clip(percentile_interval(draws) - 2 * bias, low, high)


def _group_blocks(n_groups: int, n_boot: int):
    step = max(1, _CELLS // max(n_boot, 1))
    for start in range(0, n_groups, step):
        yield slice(start, min(start + step, n_groups))


def bootstrap_extremes(correct, n, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified bootstrap of the worst and best group accuracy: (n_boot,) draws of each.

    Each group is resampled within itself, so group sizes stay fixed as in the test set.
    """
    correct, n = np.asarray(correct, dtype=float), np.asarray(n, dtype=np.int64)
    worst, best = np.full(n_boot, np.inf), np.full(n_boot, -np.inf)
    for block in _group_blocks(len(n), n_boot):
        acc = rng.binomial(n[block], correct[block] / n[block], size=(n_boot, len(n[block]))) / n[block]
        worst, best = np.minimum(worst, acc.min(axis=1)), np.maximum(best, acc.max(axis=1))
    return worst, best


def spread_intervals(correct, n, n_boot: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """95% intervals of the worst group accuracy, the gap (best - worst) and the ratio (worst / best)."""
    correct, n = np.asarray(correct, dtype=float), np.asarray(n, dtype=float)
    acc = correct / n
    worst_draws, best_draws = bootstrap_extremes(correct, n, n_boot, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_draws = worst_draws / best_draws  # nan where a resample's best group is at 0
    ratio = acc.min() / acc.max() if acc.max() > 0 else np.nan
    return {"worst": bias_corrected_interval(worst_draws, acc.min()),
            "gap": bias_corrected_interval(best_draws - worst_draws, acc.max() - acc.min()),
            "ratio": bias_corrected_interval(ratio_draws, ratio)}


def paired_bootstrap(cells, ranked, n_boot: int, rng: np.random.Generator) -> dict:
    """Paired stratified bootstrap of two models scored on the same samples.

    cells: (groups, 4) counts of samples right by both, only A, only B, neither.
    ranked: (groups,) bool, the groups that compete for worst group.
    Returns per-group intervals of acc_B - acc_A (groups, 2), and draws (n_boot,) of the
    overall difference and of the change in worst-group accuracy (B's worst - A's worst).
    """
    cells = np.asarray(cells, dtype=np.int64)
    ranked = np.asarray(ranked, dtype=bool)
    n = cells.sum(axis=1)
    group_ci = np.empty((len(n), 2))
    diff_right = np.zeros(n_boot)  # resampled (right by B) - (right by A), summed over groups
    worst_a, worst_b = np.full(n_boot, np.inf), np.full(n_boot, np.inf)
    for block in _group_blocks(len(n), n_boot):
        draws = rng.multinomial(n[block], cells[block] / n[block, None], size=(n_boot, len(n[block])))
        acc_a = (draws[..., 0] + draws[..., 1]) / n[block]  # (n_boot, groups in block)
        acc_b = (draws[..., 0] + draws[..., 2]) / n[block]
        group_ci[block] = percentile_interval(acc_b - acc_a).T
        diff_right += (draws[..., 2] - draws[..., 1]).sum(axis=1)
        keep = ranked[block]
        if keep.any():
            worst_a = np.minimum(worst_a, acc_a[:, keep].min(axis=1))
            worst_b = np.minimum(worst_b, acc_b[:, keep].min(axis=1))
    return {"group_ci": group_ci, "overall": diff_right / n.sum(), "worst_change": worst_b - worst_a}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs.

    b: samples only model A gets right, c: only model B. With no difference, b is
    Binomial(b + c, 1/2); the p-value doubles the smaller tail (capped at 1).
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    # log C(n, i) for i = 0..k by the running product C(n, i+1) = C(n, i) (n - i) / (i + 1): exact
    # enough in log space for any n, no factorial overflow, no scipy.
    i = np.arange(k)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log(n - i) - np.log(i + 1))])
    top = log_comb.max()
    log_tail = top + np.log(np.exp(log_comb - top).sum()) - n * np.log(2.0)
    return float(min(1.0, 2.0 * np.exp(log_tail)))
