import numpy as np
import pytest

from audit.errors import DebiasError
from audit.sampling import (class_balanced_sampling_probability, effective_sample_fraction, error_upweighted,
                            inverse_density_weights, per_class_log_density, tempered_inverse_density_weights)


def test_weights_are_inverse_density_and_sum_to_one():
    w = inverse_density_weights(np.log([0.5, 0.25, 0.25]))
    np.testing.assert_allclose(w, [0.2, 0.4, 0.4])


def test_weights_stable_for_huge_log_densities():
    w = inverse_density_weights(np.array([-2000.0, -1000.0, 0.0]))
    assert np.isfinite(w).all() and w.sum() == pytest.approx(1.0) and w[0] == pytest.approx(1.0)


def test_strength_zero_is_uniform():
    np.testing.assert_allclose(inverse_density_weights(np.array([1.0, 5.0, -3.0]), strength=0), 1 / 3)


def test_class_balanced_probability_gives_each_class_half():
    labels = np.array([1, 1, 1, 0, 0])
    logd = np.log([0.5, 0.25, 0.25, 0.9, 0.1])
    p, _ = class_balanced_sampling_probability(logd, labels)
    assert p.sum() == pytest.approx(1.0)
    assert p[labels == 1].sum() == pytest.approx(0.5) == p[labels == 0].sum()
    np.testing.assert_allclose(p[:3], [0.1, 0.2, 0.2])
    assert p[4] > p[3]   # the rare negative is reachable, not just rare positives


def test_lab_mode_reweights_only_positives():
    labels = np.array([1, 1, 0, 0])
    p, used = class_balanced_sampling_probability(np.log([0.8, 0.2, 0.9, 0.1]), labels, reweight="positive")
    assert used == {0: 0.0, 1: 1.0}
    np.testing.assert_allclose(p[2:], [0.25, 0.25])
    assert p[1] > p[0]
    with pytest.raises(DebiasError, match="unknown reweight 'all'"):
        class_balanced_sampling_probability(p, labels, reweight="all")


def test_per_class_density_is_fitted_per_class(rng):
    # Negatives sit far from positives; fitted jointly the negatives' own rare tail would vanish.
    mu = np.vstack([rng.normal(size=(100, 2)), rng.normal(loc=100, size=(100, 2))])
    labels = np.repeat([1, 0], 100)
    logd = per_class_log_density(mu, labels, "histogram")
    ranks = np.argsort(logd[100:])
    far = np.linalg.norm(mu[100:] - 100, axis=1)
    assert far[ranks[:10]].mean() > far.mean()


def test_effective_sample_fraction():
    assert effective_sample_fraction(np.full(10, 0.1)) == pytest.approx(1.0)
    assert effective_sample_fraction(np.r_[1.0, np.zeros(9)]) == pytest.approx(0.1)


def test_tempering_keeps_the_order_and_the_effective_fraction(rng):
    log_density = rng.normal(size=500) * 80          # a product over many dimensions: hundreds of nats
    raw = inverse_density_weights(log_density)
    assert effective_sample_fraction(raw) < 0.01
    w, used = tempered_inverse_density_weights(log_density, 1.0, min_effective_fraction=0.25)
    assert 0 < used < 1 and w.sum() == pytest.approx(1.0)
    assert effective_sample_fraction(w) == pytest.approx(0.25, abs=1e-3)
    np.testing.assert_array_equal(np.argsort(w, kind="stable"), np.argsort(raw, kind="stable"))


def test_tempering_leaves_mild_weights_alone():
    log_density = np.log([0.5, 0.25, 0.25])
    w, used = tempered_inverse_density_weights(log_density, 1.0, min_effective_fraction=0.25)
    assert used == 1.0
    np.testing.assert_allclose(w, [0.2, 0.4, 0.4])
    with pytest.raises(DebiasError, match=r"must be in \[0, 1\]"):
        tempered_inverse_density_weights(log_density, 1.0, min_effective_fraction=2)


def test_error_upweighting_moves_mass_inside_each_class_only():
    labels = np.array([1, 1, 1, 1, 0, 0])
    prob = np.array([0.125, 0.125, 0.125, 0.125, 0.25, 0.25])
    errors = np.array([1, 0, 0, 0, 0, 1.0])
    out = error_upweighted(prob, labels, errors, upweight=3.0)
    # Positives: weights 4,1,1,1 over the class's mass 0.5; negatives 1,4 over 0.5.
    np.testing.assert_allclose(out, [0.5 * 4 / 7, 0.5 / 7, 0.5 / 7, 0.5 / 7, 0.5 / 5, 0.5 * 4 / 5])
    np.testing.assert_allclose(error_upweighted(prob, labels, errors, 0.0), prob)
    with pytest.raises(DebiasError, match="error upweight must be a finite number >= 0"):
        error_upweighted(prob, labels, errors, float("nan"))
