"""Debiasing sampling weights: probability inversely proportional to latent density."""
from __future__ import annotations

import numpy as np

from .density import make_estimator
from .errors import DebiasError

REWEIGHT = ("both", "positive")


def inverse_density_weights(log_density: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """w proportional to density**-strength, summing to 1 (stable in log space)."""
    log_density = np.asarray(log_density, dtype=np.float64)
    if log_density.size == 0:
        return log_density
    logits = -strength * log_density
    logits -= logits.max()
    w = np.exp(logits)
    return w / w.sum()


def per_class_log_density(mu: np.ndarray, labels: np.ndarray, estimator: str,
                          estimator_params: dict | None = None) -> np.ndarray:
    """Fit one estimator per class, so a minority among negatives is found too."""
    log_density = np.empty(len(labels))
    for cls in np.unique(labels):
        members = labels == cls
        est = make_estimator(estimator, **(estimator_params or {})).fit(mu[members])
        log_density[members] = est.score_samples(mu[members])
    return log_density


def class_balanced_sampling_probability(log_density: np.ndarray, labels: np.ndarray,
                                        reweight: str = "both", strength: float = 1.0) -> np.ndarray:
    """Probability that one draw of a class-balanced batch picks each sample.

    Every class gets an equal share of the mass; inside a class the share is
    spread inversely to density (classes not reweighted are spread uniformly).
    The result sums to 1.
    """
    if reweight not in REWEIGHT:
        raise DebiasError(f"unknown reweight {reweight!r}; choose one of {', '.join(REWEIGHT)}")
    classes = np.unique(labels)
    prob = np.empty(len(labels))
    for cls in classes:
        members = labels == cls
        if reweight == "both" or cls == 1:
            within = inverse_density_weights(log_density[members], strength)
        else:
            within = np.full(members.sum(), 1.0 / members.sum())
        prob[members] = within / len(classes)
    return prob
