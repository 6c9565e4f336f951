"""The audit's verdict block, the calibrated anomaly rule and the latent map (audit.verdict, audit.projection)."""
import numpy as np
import pandas as pd
import pytest

from audit.errors import DebiasError
from audit.projection import latent_map, pca_2d
from audit.report import AuditConfig, audit_latents, flag_anomalies
from audit.verdict import build_verdict


@pytest.fixture
def planted(rng):
    """A rare, badly classified cluster of positives (5%) that an attribute value marks."""
    n = 400
    mu = rng.normal(size=(n, 6))
    labels = np.repeat([1, 0], n // 2)
    rare = np.zeros(n, bool)
    rare[rng.choice(n // 2, 10, replace=False)] = True
    mu[rare, 2] += 6.0
    mu[rare, 4] -= 4.0
    logit = np.where(labels == 1, 3.0, -3.0)
    logit[rare] = -3.0                                  # the model misses every rare positive
    attributes = pd.DataFrame({"tone": np.where(rare, "dark", "light")})
    return mu, labels, rare, attributes, logit


def test_the_verdict_leads_with_the_rare_subgroup_and_its_attribute(planted):
    mu, labels, rare, attributes, logit = planted
    report = audit_latents(mu, labels, AuditConfig(), recon_error=np.full(len(labels), 0.1),
                           attributes=attributes, logit=logit).report
    verdict = report["verdict"]
    top = verdict["subgroups"][0]
    assert top["class"] == "positive" and top["n"] == 10 and top["class_n"] == 200
    assert top["share"] == pytest.approx(0.05) and top["share_ci"][0] < 0.05 < top["share_ci"][1]
    assert top["mean_weight_ratio"] > 2 and top["error_rate"] == 1.0
    assert top["error_rate_ci"][1] == 1.0 and 0.6 < top["error_rate_ci"][0] < 0.8   # Wilson, 10 of 10
    e = top["enriched"][0]
    assert (e["attribute"], e["value"], e["count"], e["precision"], e["recall"]) == ("tone", "dark", 10, 1.0, 1.0)
    assert e["precision_ci"][0] > 0.6 and e["precision_ci"][1] == 1.0
    assert "subgroup" in verdict["headline"] and "tone=dark" in verdict["headline"]
    # Attribute values ranked by how much more often they are drawn; counts and shares with intervals.
    first = verdict["attributes"][0]
    assert (first["attribute"], first["value"], first["class"], first["count"]) == ("tone", "dark", "positive", 10)
    ratios = [a["mean_weight_ratio"] for a in verdict["attributes"]]
    assert ratios == sorted(ratios, reverse=True) and first["share_ci"] is not None
    assert verdict["anomalies"]["sentence"].startswith(f"{report['anomalies']['count']} of 400 samples flagged")


def test_the_verdict_is_built_for_an_older_report_and_skips_small_or_common_subgroups():
    report = {"summary": {"n_samples": 100},
              "subgroups": [{"id": 4, "class": "negative", "n": 3, "share": 0.06, "mean_weight_ratio": 9.0,
                             "small": True, "error_rate": None, "enriched": []},
                            {"id": 1, "class": "positive", "n": 20, "share": 0.4, "mean_weight_ratio": 1.8,
                             "small": False, "error_rate": 0.25,
                             "enriched": [{"attribute": "hat", "value": "red", "precision": 0.5, "recall": 0.8}]},
                            {"id": 2, "class": "positive", "n": 30, "share": 0.6, "mean_weight_ratio": 0.5,
                             "small": False, "error_rate": 0.0, "enriched": []}],
              "representation": [{"attribute": "hat", "value": "n/a", "class": "negative", "count": 50,
                                  "share": 1.0, "mean_weight_ratio": 5.0}],
              "anomalies": {"count": 0, "threshold": 3.5, "method": "density"}}
    verdict = build_verdict(report)
    assert [s["id"] for s in verdict["subgroups"]] == [1]
    assert verdict["subgroups"][0]["enriched"][0]["count"] == 10            # 0.5 of 20, recovered
    assert verdict["subgroups"][0]["error_rate_ci"][0] < 0.25 < verdict["subgroups"][0]["error_rate_ci"][1]
    assert verdict["attributes"] == []                                      # "n/a" is no value
    assert "robust z-score of latent density at or above 3.5" in verdict["anomalies"]["sentence"]


def test_the_default_rule_flags_each_class_tail_where_robust_z_alone_flags_nothing():
    # Light-tailed scores, as on ordinary data: none reaches robust z 3.5.
    score = np.r_[np.linspace(-2, 2.6, 100), np.linspace(-2, 2.5, 100)]
    labels = np.repeat([1, 0], 100)
    assert not (score >= 3.5).any()
    flagged, cutoffs = flag_anomalies(score, labels, 3.5, 0.02)
    assert flagged[:100].sum() == 2 and flagged[100:].sum() == 2       # the least typical 2% of each class
    assert flagged[98] and flagged[99] and flagged[198] and flagged[199]
    assert 2.4 < cutoffs[1] < 2.6 and cutoffs[0] < 2.5
    off, _ = flag_anomalies(score, labels, 3.5, 0.0)                   # tail 0: robust z only
    assert not off.any()
    same, _ = flag_anomalies(np.zeros(50), np.ones(50, int), 3.5, 0.02)  # all alike: nothing stands out
    assert not same.any()
    extreme, _ = flag_anomalies(np.r_[np.zeros(99), 9.0], np.ones(100, int), 3.5, 0.0)
    assert extreme.sum() == 1


def test_the_audit_reports_its_anomaly_rule(planted):
    mu, labels, _, attributes, _ = planted
    an = audit_latents(mu, labels, AuditConfig(anomaly_on="density"), attributes=attributes).report["anomalies"]
    assert an["tail"] == 0.02 and set(an["cutoffs"]) == {"positive", "negative"}
    assert an["count"] >= 4                                            # at least 2% of each class of 200
    with pytest.raises(DebiasError, match="anomaly tail must be a share"):
        AuditConfig(anomaly_tail=0.5)


def test_the_latent_map_is_two_pca_coordinates_per_sample_sampled_in_the_report(rng):
    mu = rng.normal(size=(300, 5)) * np.array([5.0, 1, 1, 1, 0.1])
    coords, explained = pca_2d(mu)
    assert coords.shape == (300, 2) and explained.shape == (2,) and explained[0] > 0.8 > explained[1]
    np.testing.assert_allclose(np.abs(np.corrcoef(coords[:, 0], mu[:, 0])[0, 1]), 1.0, atol=1e-3)
    block = latent_map(coords, explained, max_points=100)
    assert block["sampled"] and block["n_points"] == 100 and block["n_samples"] == 300
    idx = [p[0] for p in block["points"]]
    assert idx == sorted(set(idx)) and all(len(p) == 3 for p in block["points"])
    assert latent_map(coords, explained)["sampled"] is False
    flat, ratio = pca_2d(rng.normal(size=(20, 1)))                     # one latent dimension: a flat second axis
    assert flat.shape == (20, 2) and (flat[:, 1] == 0).all() and ratio[1] == 0
    with pytest.raises(DebiasError, match="at least 2 latent vectors"):
        pca_2d(np.zeros((1, 3)))


def test_samples_carry_map_coordinates(planted):
    mu, labels, _, attributes, _ = planted
    result = audit_latents(mu, labels, AuditConfig(), attributes=attributes, recon_error=np.full(400, 0.1))
    assert {"map_x", "map_y"} <= set(result.samples.columns)
    first = result.report["latent_map"]["points"][0]
    assert first[1] == pytest.approx(result.samples["map_x"][first[0]], abs=1e-3)
