"""audit.stats: Wilson and McNemar against hand-computed cases; coverage of the intervals by simulation."""
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from audit.stats import (
    bootstrap_extremes,
    mcnemar_exact,
    paired_bootstrap,
    percentile_interval,
    spread_intervals,
    wilson_interval,
)


@pytest.mark.parametrize("k, n, low, high", [
    (8, 10, 0.4902, 0.9433),   # p=0.8, z=1.96: centre 0.7167 +- 0.2266
    (0, 10, 0.0, 0.2775),      # z^2 / (n + z^2)
    (10, 10, 0.7225, 1.0),
    (1, 2, 0.0945, 0.9055),
    (50, 100, 0.4038, 0.5962),
])
def test_wilson_hand_computed(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert float(lo) == pytest.approx(low, abs=1e-4) and float(hi) == pytest.approx(high, abs=1e-4)


def test_wilson_is_vectorised_and_undefined_for_empty_groups():
    lo, hi = wilson_interval(np.array([8, 0, 0]), np.array([10, 10, 0]))
    assert lo[0] == pytest.approx(0.4902, abs=1e-4) and lo[1] == 0.0
    assert np.isnan(lo[2]) and np.isnan(hi[2])


def _exact_two_sided(b, c):
    n, k = b + c, min(b, c)
    return float(min(1, 2 * Fraction(sum(comb(n, i) for i in range(k + 1)), 2 ** n)))


@pytest.mark.parametrize("b, c, p", [
    (1, 9, 0.021484375),       # 2 * (1 + 10) / 2**10
    (9, 1, 0.021484375),
    (0, 5, 0.0625),            # 2 / 2**5
    (2, 12, 0.012939453125),   # 2 * (1 + 14 + 91) / 2**14
    (5, 5, 1.0),
    (0, 0, 1.0),
    (0, 1, 1.0),
])
def test_mcnemar_hand_computed(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-9)


@pytest.mark.parametrize("b, c", [(480, 520), (40, 70), (1500, 1600)])
def test_mcnemar_matches_exact_arithmetic_for_large_counts(b, c):
    assert mcnemar_exact(b, c) == pytest.approx(_exact_two_sided(b, c), rel=1e-9)


def test_binomial_draws_are_the_stratified_bootstrap():
    """Drawing counts is the same distribution as resampling a group's samples with replacement."""
    rng = np.random.default_rng(0)
    correct = np.r_[np.ones(40), np.zeros(10)]
    explicit = correct[rng.integers(0, 50, (20000, 50))].mean(axis=1)
    worst, best = bootstrap_extremes([40], [50], 20000, rng)
    assert np.array_equal(worst, best)  # one group: worst is best
    assert worst.mean() == pytest.approx(explicit.mean(), abs=0.003)
    assert worst.std() == pytest.approx(explicit.std(), rel=0.03)


def test_paired_bootstrap_centres_on_the_observed_differences():
    rng = np.random.default_rng(0)
    cells = np.array([[150, 5, 25, 20], [80, 10, 10, 0]])  # group 0: B +10 points; group 1: no change
    boot = paired_bootstrap(cells, np.array([True, True]), 2000, rng)
    (lo0, hi0), (lo1, hi1) = boot["group_ci"]
    assert lo0 > 0 and lo0 < 0.10 < hi0
    assert lo1 < 0 < hi1
    assert boot["overall"].mean() == pytest.approx(20 / 300, abs=0.005)
    # Worst group: group 0 for A (155/200 = 0.775) and for B (175/200 = 0.875 < 90/100).
    assert boot["worst_change"].mean() == pytest.approx(0.875 - 0.775, abs=0.02)


def test_percentile_interval_ignores_undefined_draws():
    draws = np.r_[np.linspace(0, 1, 101), np.nan]
    assert percentile_interval(draws) == pytest.approx([0.025, 0.975])


def test_wilson_covers_the_true_rate_93_to_97_percent():
    """2,000 simulated groups of 30-500 samples, true rates 0.5-0.99."""
    rng = np.random.default_rng(2024)
    n = rng.integers(30, 501, 2000)
    p = rng.uniform(0.5, 0.99, 2000)
    lo, hi = wilson_interval(rng.binomial(n, p), n)
    coverage = ((lo <= p) & (p <= hi)).mean()
    assert 0.93 <= coverage <= 0.97, coverage


def test_gap_interval_covers_the_true_gap_90_to_97_percent():
    """2,000 simulated evaluations: 8 groups of 30-400 samples, true accuracies drawn from 0.6-0.98.

    (Exact ties between groups make any bootstrap of a max or min undercover; bench/eval_uncertainty.py
    reports those cases too.)
    """
    rng = np.random.default_rng(7)
    hits = {"gap": 0, "worst": 0}
    sims = 2000
    for _ in range(sims):
        n = rng.integers(30, 401, 8)
        p = rng.uniform(0.6, 0.98, 8)
        ci = spread_intervals(rng.binomial(n, p), n, 500, rng)
        hits["gap"] += ci["gap"][0] <= p.max() - p.min() <= ci["gap"][1]
        hits["worst"] += ci["worst"][0] <= p.min() <= ci["worst"][1]
    assert 0.90 <= hits["gap"] / sims <= 0.97, hits
    assert 0.90 <= hits["worst"] / sims <= 0.97, hits
