"""Local outlier factor of latent means: exact against scikit-learn's, and what it ranks that a density does not."""
import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor

from audit.local_outliers import local_outlier_factor
from audit.subgroups import under_representation


def test_matches_scikit_learn_within_each_class(rng):
    x = np.vstack([rng.normal(0, 1, (200, 6)), rng.normal(4, 0.3, (100, 6)), rng.normal(0, 3, (10, 6))])
    labels = np.r_[np.ones(150, int), np.zeros(160, int)]
    ours = local_outlier_factor(x.astype(np.float32), labels, k=10)
    for cls in (0, 1):
        part = x[labels == cls]
        z = (part - part.mean(0)) / part.std(0)
        want = -LocalOutlierFactor(n_neighbors=10).fit(z).negative_outlier_factor_
        np.testing.assert_allclose(ours[labels == cls], want, rtol=1e-4)


def test_a_subsample_of_references_keeps_the_ranking(rng):
    # A handful (fewer than the k = 20 neighbours) off the majority.
    x = np.vstack([rng.normal(0, 1, (3000, 4)), rng.normal(0, 0.3, (10, 4)) + [0, 0, 0, 5]]).astype(np.float32)
    truth = np.r_[np.zeros(3000, bool), np.ones(10, bool)]
    exact = local_outlier_factor(x, np.ones(len(x), int), max_references=4096)
    sampled = local_outlier_factor(x, np.ones(len(x), int), max_references=500, exact_up_to=500)
    for lof in (exact, sampled):
        assert lof[truth].min() > np.percentile(lof[~truth], 99)
    assert np.corrcoef(exact, sampled)[0, 1] > 0.8


def test_the_edge_of_a_dense_cluster_outranks_a_sparse_cluster(rng):
    # A dense cluster, a sparse one, and a few samples just off the dense one: a global density calls the
    # sparse cluster rarest; the local outlier factor ranks the few off-cluster samples first.
    dense = rng.normal(0, 0.2, (300, 2))
    sparse = rng.normal(0, 1.5, (300, 2)) + [8, 0]
    edge = rng.normal(0, 0.1, (8, 2)) + [1.2, 0]
    x = np.vstack([dense, sparse, edge]).astype(np.float32)
    labels = np.ones(len(x), int)
    lof = local_outlier_factor(x, labels, k=20)
    assert np.median(lof[-8:]) > np.percentile(lof[:600], 99)
    # under_representation takes it as the rarity when given.
    log_density = np.r_[np.full(300, 1.0), np.full(300, -2.0), np.full(8, 0.5)]
    assert under_representation(log_density, labels)[-8:].max() < 0.6
    assert under_representation(log_density, labels, local=lof)[-8:].mean() > 0.97



def test_the_default_k_ranks_a_minority_at_the_edge_better_than_a_small_k():
    # 40 samples as spread as the 2,000 of the majority but off to one side (as the dark faces sit at an edge
    # of the faces): with more neighbours the density estimates are steadier and the minority stands out more.
    aucs = {10: [], 20: [], None: []}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        minority = rng.normal(0, 1, (40, 4)) + [3.0, 0, 0, 0]
        x = np.vstack([rng.normal(0, 1, (2000, 4)), minority]).astype(np.float32)
        truth = np.r_[np.zeros(2000), np.ones(40)]
        for k in aucs:
            lof = local_outlier_factor(x, np.ones(len(x), int), **({} if k is None else {"k": k}))
            aucs[k].append(roc_auc_score(truth, lof))
    assert np.mean(aucs[None]) > np.mean(aucs[20]) + 0.015 > np.mean(aucs[10]) + 0.03
