"""Is the early error set a subgroup of the latent space, or scattered hard cases?

JTT-style concentration on the error set helps when the errors are a missing
kind of sample (Colored MNIST's conflicting colour: the set is the minority,
and its members sit together in the latent space) and hurts when they are
scattered hard cases (the planted faces' unusual poses and lighting: training
almost only on them overfits a few dozen images). The coherence measured here
tells the two apart without group labels: the share of each error-set sample's
nearest same-class neighbours, in latent means, that are in the error set too.

Measured at the snapshot (150 steps) on the benchmarks' training sets, the
share over every error-set sample of both classes (README "Debiasing on real
images"): Colored MNIST at 0.5%, 1%, 2% and 5% conflicting, 3 seeds each,
0.62-1.00 (0.72-0.89 at 1-2%); the planted faces at 64px (5 seeds), at 32px
and in the demo's design (2 seeds each), 0.16-0.51.
"""
from __future__ import annotations

import numpy as np

from .sampling import CLASS_NAMES

NEIGHBOURS = 10
# Midway between the two benchmarks' ranges above (0.51 and 0.62). A class's error set of 6 or fewer shares
# at most 5 of its 10 neighbours: too few samples to concentrate training on.
COHERENT_SHARE = 0.56
# Error-set samples per class whose neighbourhoods are looked at: the mean share of a random 5,000 is within
# about 0.01 of the whole set's (standard error <= 0.5 / sqrt(5000)), and the benchmarks' sets are smaller, so
# their decisions are unchanged. Without the cap a million-image run's 100k-sample error set took minutes.
MAX_QUERIES = 5000


def error_set_coherence(mu: np.ndarray, labels: np.ndarray, errors: np.ndarray,
                        neighbours: int = NEIGHBOURS, max_queries: int = MAX_QUERIES,
                        indexes: dict | None = None) -> dict:
    """{"positive": share, "negative": share, "pooled": share, "error_set": {class: size}}.

    share: over the class's error-set samples (a random max_queries of them when there are more), the mean
    share of their `neighbours` nearest other samples of the class (Euclidean, latent means) that are in the
    error set; None for a class without errors.
    pooled: the same over every error-set sample, each class weighted by its whole error set (0.0 when there
    are none).
    indexes: {class: its fitted neighbour index}, filled in as they are built: pass the same dict to judge
    another error set over the same latent means without fitting them again.
    """
    from sklearn.neighbors import NearestNeighbors  # scikit-learn loads in seconds: only when a run needs it

    mu, labels = np.asarray(mu, dtype=np.float64), np.asarray(labels)
    flagged = np.asarray(errors) > 0.5
    out: dict = {"error_set": {}}
    total, count = 0.0, 0
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        name = CLASS_NAMES.get(int(cls), str(cls))
        inside = flagged[members]
        out["error_set"][name] = int(inside.sum())
        k = min(neighbours, len(members) - 1)
        if not inside.any() or k < 1:
            out[name] = None
            continue
        queries = np.flatnonzero(inside)
        if len(queries) > max_queries:
            queries = np.sort(np.random.default_rng(0).choice(queries, max_queries, replace=False))
        index = None if indexes is None else indexes.get(cls)
        if index is None:
            index = NearestNeighbors(n_neighbors=k + 1).fit(mu[members])
            if indexes is not None:
                indexes[cls] = index
        _, near = index.kneighbors(mu[members][queries])
        # Column 0 is the query itself (or a duplicate of it, which is as good a neighbour).
        shares = inside[near[:, 1:]].mean(axis=1)
        out[name] = float(shares.mean())
        # Weighted by the whole error set, so that a class whose queries were capped keeps its weight.
        total += out[name] * int(inside.sum())
        count += int(inside.sum())
    out["pooled"] = total / count if count else 0.0
    return out


def balanced_threshold(logits: np.ndarray, labels: np.ndarray) -> float:
    """The logit threshold at which both classes have the same error rate (the one nearest 0 among equals).

    Early in training the classifier's bias lags (measured at the Colored MNIST snapshot: up to 2.8 logits
    off), which moves a minority's members out of one class's error set and hard majority samples into the
    other's; at this threshold neither class absorbs the offset.
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    negatives, positives = np.sort(logits[labels == 0]), np.sort(logits[labels == 1])
    if not len(negatives) or not len(positives):
        return 0.0
    candidates = np.unique(np.concatenate([negatives, positives, [0.0]]))
    # A negative is an error above the threshold, a positive at or below it.
    negative_rate = 1.0 - np.searchsorted(negatives, candidates, side="right") / len(negatives)
    positive_rate = np.searchsorted(positives, candidates, side="right") / len(positives)
    gap = np.abs(negative_rate - positive_rate)
    best = np.flatnonzero(gap == gap.min())
    return float(candidates[best[np.argmin(np.abs(candidates[best]))]])


def errors_at(logits: np.ndarray, labels: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """1.0 where the logit falls on the other class's side of `threshold`, else 0.0."""
    return ((np.asarray(logits) > threshold).astype(np.int64) != np.asarray(labels)).astype(np.float64)


def coherent_error_set(mu: np.ndarray, logits: np.ndarray, labels: np.ndarray,
                       pool: np.ndarray) -> tuple[np.ndarray, dict]:
    """(error flags of every sample, decision): the error set taken at threshold 0 (JTT's) or at the balanced
    threshold, whichever is the more coherent over `pool` (ties keep 0), and the schedule that coherence gates.

    A lagging bias splits a missing kind of sample across the threshold; the balanced threshold puts it back
    together, which raises its coherence (Colored MNIST 1%, a seed whose bias was 2.8 logits off: 0.91 ->
    0.98, and the negatives' error set held 95% of their conflicting digits instead of 76%). Where the classes
    really differ in how many of their samples the model gets wrong, balancing the rates adds scattered hard
    cases to one class and is less coherent, so threshold 0 stays.
    """
    labels = np.asarray(labels)
    # Both error sets are judged on the same latent means: their neighbour indexes are fitted once.
    pool_mu, pool_labels, indexes = np.asarray(mu[pool], dtype=np.float64), labels[pool], {}
    tried: dict = {}
    best = None
    for threshold in sorted({0.0, balanced_threshold(logits[pool], pool_labels)}, key=abs):
        errors = errors_at(logits, labels, threshold)
        coherence = error_set_coherence(pool_mu, pool_labels, errors[pool], indexes=indexes)
        tried[f"{threshold:.4g}"] = round(coherence["pooled"], 4)
        if best is None or coherence["pooled"] > best[2]["pooled"]:
            best = (threshold, errors, coherence)
    threshold, errors, coherence = best
    return errors, {"schedule": gated_schedule(coherence), "coherence": coherence, "threshold": threshold,
                    "coherence_by_threshold": tried}


def gated_schedule(coherence: dict) -> str:
    """geometric when the error set is coherent enough to concentrate on, else constant."""
    return "geometric" if coherence["pooled"] >= COHERENT_SHARE else "constant"
