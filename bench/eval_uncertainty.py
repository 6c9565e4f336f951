"""Speed and coverage of the evaluation's uncertainty (issue 10).

Speed: `debias evaluate`'s statistics (groups, Wilson intervals, FNR / FPR, worst / gap / ratio with a
1,000-resample bootstrap) on 10,000 test samples in 8 groups, from the model's predictions (the
forward pass is the model's cost, not the statistics'); and `debias compare`'s paired version.

Coverage: how often the 95% intervals contain the true value, by simulation with known truth.
Wilson on 2,000 simulated groups; the gap and worst-group intervals on 2,000 simulated
evaluations of 8 groups in several regimes, including the hard ones (tied groups), for the plain
percentile bootstrap and the bias-corrected one the engine uses; the paired change in worst-group
accuracy likewise.

    python bench/eval_uncertainty.py            # prints and writes bench/out/eval_uncertainty.txt
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from audit.comparison import paired_comparison
from audit.evaluation import group_metrics
from audit.stats import (
    bias_corrected_interval,
    bootstrap_extremes,
    paired_bootstrap,
    percentile_interval,
    wilson_interval,
)

SIMS, GROUPS = 2000, 8


def timing(n: int = 10_000, n_boot: int = 1000, repeats: int = 5) -> list[str]:
    rng = np.random.default_rng(0)
    attrs = pd.DataFrame({"skin_tone": rng.choice(["light", "medium", "dark", "other"], n),
                          "kind": rng.choice(["face", "object"], n)})
    labels = rng.integers(0, 2, n)
    attrs["kind"] = np.where(labels == 1, "face", "object")  # label x skin_tone x kind: 8 groups
    probability = np.clip(labels * 0.7 + rng.normal(0.15, 0.25, n), 0, 1)
    pred_a = (probability >= 0.5).astype(int)
    pred_b = np.where(rng.random(n) < 0.05, labels, pred_a)
    group_by = ["skin_tone", "kind"]

    def best_of(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times), float(np.median(times)), out

    fast, median, m = best_of(lambda: group_metrics(labels, pred_a, attrs, group_by, probability, n_boot=n_boot))
    b = group_metrics(labels, pred_b, attrs, group_by, probability, n_boot=n_boot)
    p_fast, p_median, _ = best_of(lambda: paired_comparison(m, b, ("a", "b"), n_boot=n_boot))
    return [f"speed ({os.cpu_count()} CPUs; best / median of {repeats} runs)",
            f"  evaluate statistics, {n} samples, {len(m['groups'])} groups, {n_boot} resamples: "
            f"{fast:.3f} s / {median:.3f} s (target < 2 s)",
            f"  compare (paired bootstrap + McNemar), same sizes: {p_fast:.3f} s / {p_median:.3f} s"]


def wilson_coverage(rng) -> str:
    n = rng.integers(30, 501, SIMS)
    p = rng.uniform(0.5, 0.99, SIMS)
    lo, hi = wilson_interval(rng.binomial(n, p), n)
    small_n = rng.integers(5, 30, SIMS)
    slo, shi = wilson_interval(rng.binomial(small_n, p), small_n)
    return (f"  Wilson 95%, {SIMS} groups of 30-500 samples, rates 0.5-0.99: "
            f"{((lo <= p) & (p <= hi)).mean():.1%} (target 93-97%); groups of 5-29: "
            f"{((slo <= p) & (p <= shi)).mean():.1%}")


REGIMES = {
    "random (rates 0.6-0.98, the test's)": lambda rng: rng.uniform(0.6, 0.98, GROUPS),
    "separated (0.65 to 0.95 evenly)": lambda rng: np.linspace(0.65, 0.95, GROUPS),
    "one bad group (0.75) among tied (0.92)": lambda rng: np.r_[np.full(GROUPS - 1, 0.92), 0.75],
    "three levels, ties (0.7 / 0.8 / 0.9)": lambda rng: rng.choice([0.7, 0.8, 0.9], GROUPS),
    "all tied (0.85; true gap 0)": lambda rng: np.full(GROUPS, 0.85),
}


def spread_coverage(rng, n_boot: int = 1000) -> list[str]:
    lines = [f"  worst group / gap, {SIMS} simulated evaluations of {GROUPS} groups of 30-400 samples, "
             f"{n_boot} resamples; coverage of the 95% interval (target 90-97%):",
             f"    {'regime':42s} {'gap, engine':>12s} {'gap, plain':>11s} {'worst, engine':>14s} "
             f"{'worst, plain':>13s}"]
    for name, truth in REGIMES.items():
        hits = np.zeros(4)
        for _ in range(SIMS):
            n, p = rng.integers(30, 401, GROUPS), truth(rng)
            acc = rng.binomial(n, p) / n
            worst, best = bootstrap_extremes(acc * n, n, n_boot, rng)
            gap, low = p.max() - p.min(), p.min()
            for j, (lo, hi) in enumerate([bias_corrected_interval(best - worst, acc.max() - acc.min()),
                                          percentile_interval(best - worst),
                                          bias_corrected_interval(worst, acc.min()), percentile_interval(worst)]):
                hits[j] += lo <= (gap if j < 2 else low) <= hi
        c = hits / SIMS
        lines.append(f"    {name:42s} {c[0]:12.1%} {c[1]:11.1%} {c[2]:14.1%} {c[3]:13.1%}")
    return lines


def paired_coverage(rng, n_boot: int = 1000, keep: float = 0.8) -> list[str]:
    """Two models on the same samples: B's answer repeats A's latent draw with probability `keep`."""
    regimes = {"random (B -5 to +10 points per group)":
               lambda: (p := rng.uniform(0.6, 0.98, GROUPS), np.clip(p + rng.uniform(-0.05, 0.1, GROUPS), 0, .99)),
               "no change": lambda: (p := rng.uniform(0.6, 0.98, GROUPS), p),
               "one bad group improves 0.75 -> 0.80": lambda: (np.r_[np.full(GROUPS - 1, .92), .75],
                                                               np.r_[np.full(GROUPS - 1, .92), .80])}
    lines = [f"  paired change in worst-group accuracy ({SIMS} simulated pairs, percentile interval):"]
    for name, truth in regimes.items():
        hits = 0
        for _ in range(SIMS):
            p, q = truth()
            both = keep * np.minimum(p, q) + (1 - keep) * p * q
            probs = np.clip(np.stack([both, p - both, q - both, 1 - p - q + both], 1), 0, 1)
            n = rng.integers(30, 401, GROUPS)
            cells = np.array([rng.multinomial(k, c / c.sum()) for k, c in zip(n, probs)])
            lo, hi = percentile_interval(paired_bootstrap(cells, np.ones(GROUPS, bool), n_boot, rng)["worst_change"])
            hits += lo <= q.min() - p.min() <= hi
        lines.append(f"    {name:52s} {hits / SIMS:.1%}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "eval_uncertainty.txt"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    lines = timing()
    print("\n".join(lines), flush=True)
    for block in (["coverage (simulated truth, seed 0)", wilson_coverage(rng)], spread_coverage(rng),
                  paired_coverage(rng)):
        print("\n".join(block), flush=True)
        lines += block
    lines.append(f"(bench ran in {time.perf_counter() - started:.0f} s)")
    print(lines[-1])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
