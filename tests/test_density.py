import numpy as np
import pytest

from audit.density import (ESTIMATORS, GaussianMixtureDensity, HistogramDensity, HistogramProductDensity,
                           KernelDensity, make_estimator)
from audit.errors import DebiasError, NotFittedError
from audit.sampling import inverse_density_weights


def lab_weights(mu, bins=10, smoothing_fac=0.001):
    """The 6.S191 lab's get_training_sample_probabilities, verbatim in numpy."""
    training_sample_p = np.zeros(mu.shape[0])
    for i in range(mu.shape[1]):
        hist_density, bin_edges = np.histogram(mu[:, i], density=True, bins=bins)
        bin_edges[0], bin_edges[-1] = -np.inf, np.inf
        bin_idx = np.digitize(mu[:, i], bin_edges)
        smoothed = hist_density + smoothing_fac
        smoothed = smoothed / np.sum(smoothed)
        p = 1.0 / smoothed[bin_idx - 1]
        training_sample_p = np.maximum(p / p.sum(), training_sample_p)
    return training_sample_p / training_sample_p.sum()


def test_histogram_hand_computed_one_dimension():
    z = np.array([[0.0], [0.0], [0.0], [1.0]])
    # Two bins [0, .5), [.5, 1]: density 3/(4*.5)=1.5 and 1/(4*.5)=0.5; + alpha, normalised.
    q = np.array([1.501, 0.501]) / 2.002
    inv = 1 / q[[0, 0, 0, 1]]
    w = inverse_density_weights(HistogramDensity(bins=2).fit(z).score_samples(z))
    np.testing.assert_allclose(w, inv / inv.sum(), rtol=1e-12)


def test_histogram_hand_computed_max_over_dimensions():
    z = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    rare, common = 2.002 / 0.501, 2.002 / 1.501
    dim0 = np.array([common, common, common, rare]) / (3 * common + rare)
    dim1 = np.array([rare, common, common, common]) / (3 * common + rare)
    expected = np.maximum(dim0, dim1)
    w = inverse_density_weights(HistogramDensity(bins=2).fit(z).score_samples(z))
    np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-12)
    assert w[0] == pytest.approx(w[3]) and w[0] > w[1] == pytest.approx(w[2])


def test_histogram_matches_the_lab_on_random_latents(rng):
    z = rng.normal(size=(300, 6)) * rng.uniform(0.1, 3, 6)
    w = inverse_density_weights(HistogramDensity().fit(z).score_samples(z))
    np.testing.assert_allclose(w, lab_weights(z), rtol=1e-10)


def test_histogram_product_hand_computed():
    z = np.array([[0.0], [0.0], [0.0], [1.0]])
    est = HistogramProductDensity(bins=2, alpha=0.001).fit(z)
    np.testing.assert_allclose(est.score_samples(z), np.log([0.751, 0.751, 0.751, 0.251]))
    two = np.hstack([z, z])
    np.testing.assert_allclose(HistogramProductDensity(bins=2).fit(two).score_samples(two),
                               2 * np.log([0.751, 0.751, 0.751, 0.251]))


def test_unseen_values_fall_in_outer_bins():
    est = HistogramDensity(bins=2).fit(np.array([[0.0], [0.0], [0.0], [1.0]]))
    far = est.score_samples(np.array([[-50.0], [50.0]]))
    near = est.score_samples(np.array([[0.0], [1.0]]))
    np.testing.assert_allclose(far, near)


def test_joint_density_finds_a_rare_combination(rng):
    # Majority on the line z1 = z0, minority on z1 = -z0: every marginal looks alike.
    major = rng.normal(size=(950, 1)) * [1, 1] + rng.normal(scale=0.05, size=(950, 2))
    minor = rng.normal(size=(50, 1)) * [1, -1] + rng.normal(scale=0.05, size=(50, 2))
    z = np.vstack([major, minor])
    is_minor = np.arange(1000) >= 950
    for joint_estimator in (GaussianMixtureDensity(n_components=4), KernelDensity()):
        joint = joint_estimator.fit(z).score_samples(z)
        assert joint[is_minor].mean() < joint[~is_minor].mean() - 2, joint_estimator
    marginal = HistogramProductDensity().fit(z).score_samples(z)
    assert abs(marginal[is_minor].mean() - marginal[~is_minor].mean()) < 1


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_contract(name, rng):
    est = make_estimator(name)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.score_samples(np.zeros((2, 3)))
    z = rng.normal(size=(200, 3))
    assert est.fit(z) is est
    assert est.score_samples(z).shape == (200,)
    assert est.n_features_in_ == 3
    with pytest.raises(DebiasError, match="4 latent dimensions but the estimator was fitted on 3"):
        est.score_samples(np.zeros((2, 4)))
    with pytest.raises(DebiasError, match="NaN"):
        make_estimator(name).fit(np.full((5, 3), np.nan))


def test_unknown_estimator_lists_the_choices():
    with pytest.raises(DebiasError, match="unknown density estimator 'parzen'; choose one of histogram"):
        make_estimator("parzen")


def test_kde_matches_a_naive_leave_one_out_sum(rng):
    z = rng.normal(size=(40, 1)) * 3 + 1
    est = KernelDensity(bandwidth=0.5).fit(z)
    x = (z[:, 0] - z.mean()) / z.std(ddof=1)                 # PCA whitening of one dimension
    kernels = np.exp(-0.5 * ((x[:, None] - x[None, :]) / 0.5) ** 2)
    np.fill_diagonal(kernels, 0.0)                             # a sample does not count itself
    # A lone sample counts as having one neighbour two bandwidths away, which bounds its weight.
    expected = np.log(np.maximum(kernels.sum(1), np.exp(-2.0)) / (39 * 0.5 * np.sqrt(2 * np.pi)))
    np.testing.assert_allclose(est.score_samples(z), expected, rtol=1e-4)
    query = np.array([[100.0]])                                # not a reference: nothing is left out
    assert est.score_samples(query)[0] < est.score_samples(z).min()


def test_kde_leaves_out_a_far_outlier_itself(rng):
    z = rng.normal(size=(2000, 4))
    z[0] = 1e4                                                 # whitened, about sqrt(n) from the rest
    est = KernelDensity().fit(z)
    lone = -2.0 - (np.log(1999) + 4 * np.log(est.bandwidth_ * np.sqrt(2 * np.pi)))
    np.testing.assert_allclose(est.score_samples(z[:1]), [lone], atol=1e-6)


def test_kde_bandwidth_follows_the_spacing_of_samples(rng):
    est = KernelDensity().fit(rng.normal(size=(400, 8)))
    # k = 20 neighbours of 400 in 8 whitened dimensions sit about 2.5 apart; Scott's rule would say 0.6.
    assert 1.5 < est.bandwidth_ < 3.5


def test_kde_counts_a_compact_minority_as_rare(rng):
    z = rng.normal(size=(400, 6))
    z[:20, 2] += 6.0                                           # 5%, as tight as the majority
    w = inverse_density_weights(KernelDensity().fit(z).score_samples(z))
    assert w[:20].mean() > 3 * w[20:].mean()


def test_gmm_with_one_component_is_the_gaussian_of_the_whitened_data(rng):
    z = rng.normal(size=(200, 1)) * 4 + 3
    est = GaussianMixtureDensity(n_components=1).fit(z)
    x = (z[:, 0] - z.mean()) / z.std(ddof=1)                  # PCA whitening of one dimension
    var = x.var() + est.mixture_.reg_covar                      # maximum likelihood, plus the regulariser
    expected = -0.5 * np.log(2 * np.pi * var) - 0.5 * x ** 2 / var
    np.testing.assert_allclose(est.score_samples(z), expected, rtol=1e-6)
