import numpy as np
import pandas as pd
import pytest

from audit.errors import DebiasError
from audit.report import SAMPLE_COLUMNS, AuditConfig, audit_latents, correlation_ratio, robust_z


@pytest.fixture
def planted(rng):
    """Latents with a rare cluster (mostly along dimension 2) in each class, and an attribute that tracks it.

    Apart on two dimensions: on one of six, standardising makes every dimension unit variance and for
    some seeds BIC keeps one subgroup (README, "Discovered subgroups").
    """
    n = 400
    mu = rng.normal(size=(n, 6))
    labels = np.repeat([1, 0], n // 2)
    rare = np.zeros(n, bool)
    rare[rng.choice(n // 2, 10, replace=False)] = True                 # 5% of positives
    rare[n // 2 + rng.choice(n // 2, 10, replace=False)] = True        # 5% of negatives
    mu[rare, 2] += 6.0
    mu[rare, 4] -= 4.0
    attributes = pd.DataFrame({"tone": np.where(rare, "dark", "light"), "noise": rng.integers(0, 3, n)})
    return mu, labels, rare, attributes


def test_samples_table_keeps_input_order_and_contract(planted):
    mu, labels, _, attributes = planted
    result = audit_latents(mu, labels, AuditConfig(), recon_error=np.full(len(labels), 0.1), attributes=attributes)
    s = result.samples
    assert list(s.columns[: len(SAMPLE_COLUMNS)]) == SAMPLE_COLUMNS
    assert (s["index"] == np.arange(len(labels))).all() and (s["label"] == labels).all()
    assert {"tone", "noise", "reconstruction_error"} <= set(s.columns)
    assert s["sampling_weight"].sum() == pytest.approx(1.0)
    assert s.loc[labels == 1, "sampling_weight"].sum() == pytest.approx(0.5)


# Not gmm: a mixture may spend a component on a compact minority and call it common (see density.py).
@pytest.mark.parametrize("density", ["histogram", "histogram-product", "kde"])
def test_planted_minority_is_up_weighted_in_both_classes(planted, density):
    mu, labels, rare, attributes = planted
    s = audit_latents(mu, labels, AuditConfig(density=density), attributes=attributes).samples
    for cls in (1, 0):
        m = labels == cls
        w = s["sampling_weight"].to_numpy()[m]
        assert w[rare[m]].mean() > 2 * w[~rare[m]].mean()


def test_report_finds_feature_attribute_and_representation(planted):
    mu, labels, rare, attributes = planted
    # The lab histogram (max over dimensions) also up-weights tails of noise dimensions; the product does not.
    report = audit_latents(mu, labels, AuditConfig(top_features=3, density="histogram-product"),
                           attributes=attributes).report
    features = report["under_represented_features"]
    assert [(f["class"], f["rank"], f["name"]) for f in features] == [("positive", 1, "tone=dark"),
                                                                     ("negative", 1, "tone=dark")]
    top = features[0]
    assert top["dimension"] == 2 and top["eta_squared"] > 0.5
    direction = np.asarray(top["direction_vector"])
    assert direction[2] > 0.7 and direction[4] < -0.4 and np.linalg.norm(direction) == pytest.approx(1.0)
    assert top["share_in_rare_range"] < 0.1 and top["subgroup_share_in_rare_range"] > 0.9
    relation = report["attribute_relations"][0]
    assert relation["attribute"] == "tone" and relation["dimensions"][0]["dimension"] == 2
    assert relation["strength"] > 0.5
    rows = {(r["class"], r["value"]): r for r in report["representation"] if r["attribute"] == "tone"}
    dark = rows[("positive", "dark")]
    assert dark["count"] == 10 and dark["share"] == pytest.approx(0.05)
    assert dark["mean_weight_ratio"] > 2 > 1 > rows[("positive", "light")]["mean_weight_ratio"]
    assert len(report["latent_histograms"]) == 6
    hist = report["latent_histograms"][2]
    assert sum(hist["counts"]["positive"]) == 200 and len(hist["edges"]) == 11
    assert report["summary"]["class_counts"] == {"positive": 200, "negative": 200}


def test_anomalies_flag_the_tail_and_threshold_is_configurable(planted):
    mu, labels, rare, _ = planted
    recon = np.full(len(labels), 0.05)
    recon[0] = 5.0  # one sample the decoder cannot rebuild
    strict = audit_latents(mu, labels, AuditConfig(anomaly_threshold=3.5), recon_error=recon)
    assert strict.samples["is_anomaly"][0]
    assert strict.report["anomalies"]["top"][0]["index"] == 0
    loose = audit_latents(mu, labels, AuditConfig(anomaly_threshold=1.0), recon_error=recon)
    assert loose.report["anomalies"]["count"] > strict.report["anomalies"]["count"]
    density_only = audit_latents(mu, labels, AuditConfig(anomaly_on="density"), recon_error=recon)
    assert density_only.samples["anomaly_score"][0] < strict.samples["anomaly_score"][0]
    with pytest.raises(DebiasError, match="needs a DB-VAE"):
        audit_latents(mu, labels, AuditConfig(anomaly_on="reconstruction"))


def test_robust_z_ignores_the_tail():
    values = np.r_[np.zeros(50), np.ones(50), 1000.0]
    z = robust_z(values)
    assert z[-1] > 100 and abs(z[0]) < 2


def test_correlation_ratio_hand_computed():
    z = np.array([[0.0, 1.0], [0.0, -1.0], [2.0, 1.0], [2.0, -1.0]])
    eta = correlation_ratio(z, np.array([0, 0, 1, 1]), 2)
    np.testing.assert_allclose(eta, [1.0, 0.0], atol=1e-9)


@pytest.mark.parametrize("bad, message", [
    (dict(density="parzen"), "unknown density estimator"),
    (dict(anomaly_on="pixels"), "unknown anomaly source 'pixels'"),
    (dict(anomaly_threshold=0), "anomaly threshold must be > 0"),
])
def test_bad_audit_config(bad, message):
    with pytest.raises(DebiasError, match=message):
        AuditConfig(**bad)


def test_length_mismatch():
    with pytest.raises(DebiasError, match="3 latent vectors but 2 labels"):
        audit_latents(np.zeros((3, 2)), np.array([0, 1]), AuditConfig())
