"""Debiasing sampling weights: probability inversely proportional to latent density."""
from __future__ import annotations

import numpy as np

from .density import make_estimator
from .errors import DebiasError

REWEIGHT = ("both", "positive")
CLASS_NAMES = {1: "positive", 0: "negative"}


def check_weighting(strength: float, min_effective_fraction: float) -> None:
    if not strength >= 0:
        raise DebiasError(f"strength must be >= 0 (0 is uniform sampling), got {strength}")
    if not 0.0 <= min_effective_fraction <= 1.0:
        raise DebiasError(f"min effective sample fraction must be in [0, 1] (0 disables tempering), "
                          f"got {min_effective_fraction}")


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


def effective_sample_fraction(weights: np.ndarray) -> float:
    """Kish's effective sample size over n: 1 for uniform weights, 1/n when one sample holds all."""
    return float(weights.sum() ** 2 / (weights ** 2).sum() / len(weights))


def tempered_inverse_density_weights(log_density: np.ndarray, strength: float = 1.0,
                                     min_effective_fraction: float = 0.0) -> tuple[np.ndarray, float]:
    """Inverse-density weights, with the strength lowered just enough to keep an effective sample size.

    A product of 100 per-dimension densities, or a joint density in 16
    dimensions, spans hundreds of nats: weights proportional to 1/density then
    put all mass on a handful of samples and training sees nothing else.
    Lowering the exponent (tempering) keeps the order of the weights but bounds
    their spread.  The effective fraction falls as the strength grows, so a
    bisection finds the largest strength <= `strength` that keeps it.
    Returns (weights summing to 1, strength used).
    """
    check_weighting(strength, min_effective_fraction)
    w = inverse_density_weights(log_density, strength)
    if len(w) == 0 or effective_sample_fraction(w) >= min_effective_fraction:
        return w, strength
    lo, hi = 0.0, strength
    for _ in range(40):
        mid = (lo + hi) / 2
        if effective_sample_fraction(inverse_density_weights(log_density, mid)) >= min_effective_fraction:
            lo = mid
        else:
            hi = mid
    return inverse_density_weights(log_density, lo), lo


def error_upweighted(prob: np.ndarray, labels: np.ndarray, errors: np.ndarray, upweight: float) -> np.ndarray:
    """Multiply each sample's probability by (1 + upweight * error), keeping every class's total mass.

    `errors` in [0, 1]: JTT's error set (1 = misclassified by an early snapshot of the model). The
    mass moves towards the badly served samples inside their class, never across classes.
    """
    if upweight < 0 or not np.isfinite(upweight):
        raise DebiasError(f"error upweight must be a finite number >= 0, got {upweight}")
    out = np.asarray(prob, dtype=np.float64) * (1.0 + upweight * np.asarray(errors, dtype=np.float64))
    for cls in np.unique(labels):
        members = labels == cls
        out[members] *= prob[members].sum() / out[members].sum()
    return out


def class_balanced_sampling_probability(log_density: np.ndarray, labels: np.ndarray,
                                        reweight: str = "both", strength: float = 1.0,
                                        min_effective_fraction: float = 0.0) -> tuple[np.ndarray, dict[int, float]]:
    """Probability that one draw of a class-balanced batch picks each sample.

    Every class gets an equal share of the mass; inside a class the share is
    spread inversely to density (classes not reweighted are spread uniformly),
    tempered where needed to keep `min_effective_fraction` of the class
    effective.  Returns (probability summing to 1, strength used per class).
    """
    if reweight not in REWEIGHT:
        raise DebiasError(f"unknown reweight {reweight!r}; choose one of {', '.join(REWEIGHT)}")
    classes = np.unique(labels)
    prob = np.empty(len(labels))
    used: dict[int, float] = {}
    for cls in classes:
        members = labels == cls
        if reweight == "both" or cls == 1:
            within, used[int(cls)] = tempered_inverse_density_weights(log_density[members], strength,
                                                                      min_effective_fraction)
        else:
            within, used[int(cls)] = np.full(members.sum(), 1.0 / members.sum()), 0.0
        prob[members] = within / len(classes)
    return prob, used
