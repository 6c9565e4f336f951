"""audit.subgroups: clusters found with k chosen by the data, enrichment, ranking, under-representation."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from audit.cli import main, summarise_audit
from audit.errors import DebiasError
from audit.local_outliers import local_outlier_factor
from audit.report import SAMPLE_COLUMNS, SUBGROUP_COLUMNS, AuditConfig, audit_latents
from audit.sampling import per_class_log_density
from audit.subgroups import (
    STRATUM_ERRORS,
    STRATUM_RAREST,
    SubgroupFinder,
    attribute_codes,
    discover_subgroups,
    enrichment,
    find_subgroups,
    grid_members,
    known_strings,
    summarise_subgroups,
    trusted_error_classes,
    under_representation,
)
from audit.synth import planted_latents as planted


def precision_recall(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hit = (found & truth).sum()
    return hit / found.sum(), hit / truth.sum()


# --------------------------------------------------------------------------- discovery

def test_small_far_cluster_is_its_own_subgroup(rng):
    pos, rare = planted(rng)
    neg = rng.normal(size=(600, 16))                       # one blob: one subgroup
    mu, labels = np.vstack([pos, neg]), np.r_[np.ones(1000, int), np.zeros(600, int)]
    finder = SubgroupFinder().fit(mu, labels)
    ids = finder.labels_
    assert finder.n_subgroups_ == 3 and set(ids) == {0, 1, 2}
    assert finder.classes_["positive"]["k"] == 2 and finder.classes_["negative"]["k"] == 1
    assert set(ids[labels == 1]) == {0, 1} and set(ids[labels == 0]) == {2}    # unique across classes
    precision, recall = precision_recall(ids == 1, np.r_[rare, np.zeros(600, bool)])   # 1: the smaller
    assert precision > 0.9 and recall > 0.9
    assert len(finder.classes_["positive"]["bic"]) == 8


@pytest.mark.parametrize("n_clusters", [1, 3])
def test_number_of_subgroups_is_chosen_by_the_data(rng, n_clusters):
    centres = rng.normal(size=(n_clusters, 16)) * 4
    truth = np.repeat(np.arange(n_clusters), 200)
    mu = centres[truth] + rng.normal(size=(len(truth), 16))
    ids = discover_subgroups(mu, np.ones(len(truth), int), max_k=6)
    assert len(np.unique(ids)) == n_clusters
    # The same partition as the truth, whatever the numbering.
    assert len(set(zip(ids.tolist(), truth.tolist()))) == n_clusters


def test_tiny_or_constant_class_gets_one_subgroup_with_a_note(rng):
    mu = np.vstack([rng.normal(size=(200, 8)), rng.normal(size=(7, 8))])
    labels = np.r_[np.ones(200, int), np.zeros(7, int)]
    finder = SubgroupFinder(min_size=10).fit(mu, labels)
    assert len(set(finder.labels_[labels == 0])) == 1
    assert finder.classes_["negative"]["k"] == 1 and "7 samples, fewer than 20" in finder.classes_["negative"]["note"]
    flat = SubgroupFinder().fit(np.ones((50, 4)), np.ones(50, int))
    assert set(flat.labels_) == {0} and "do not vary" in flat.classes_["positive"]["note"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_k=0), "max_k (most subgroups per class) must be a whole number >= 1, got 0"),
    (dict(max_k=2.5), "max_k"),
    (dict(min_size=0), "min_size"),
    (dict(covariance_type="tied"), "unknown covariance_type 'tied'"),
])
def test_impossible_requests_raise_one_line(kwargs, match):
    with pytest.raises(DebiasError, match=match.replace("(", r"\(").replace(")", r"\)")) as info:
        SubgroupFinder(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_inputs_raise(rng):
    with pytest.raises(DebiasError, match="3 latent vectors but labels has shape"):
        discover_subgroups(rng.normal(size=(3, 2)), np.ones(2, int))
    with pytest.raises(DebiasError, match="NaN"):
        discover_subgroups(np.full((20, 2), np.nan), np.ones(20, int))


# --------------------------------------------------------------------------- enrichment

def test_enrichment_hand_computed():
    # Class 1: subgroup 0 = samples 0-5, subgroup 1 = samples 6-10 (one without a value).
    # Class 0 (samples 11-13, subgroup 2) has "dark" too: it must not count for class 1's recall.
    tone = ["light"] * 5 + ["dark"] + ["dark", "dark", "dark", "light", None] + ["dark", "dark", "light"]
    ids = np.array([0] * 6 + [1] * 5 + [2] * 3)
    labels = np.array([1] * 11 + [0] * 3)
    found = enrichment(ids, pd.DataFrame({"tone": tone}), labels, min_count=1)
    # Class 1 with a value: 10 samples, dark 4 (base 0.4), light 6 (base 0.6).
    (e1,) = found[1]
    assert (e1["attribute"], e1["value"]) == ("tone", "dark")
    assert e1["precision"] == pytest.approx(3 / 4)          # the missing value is not a value
    assert e1["recall"] == pytest.approx(3 / 4)             # 3 of class 1's 4 dark samples
    assert e1["lift"] == pytest.approx((3 / 4) / 0.4)
    (e0,) = found[0]
    assert e0["value"] == "light" and e0["precision"] == pytest.approx(5 / 6) and e0["recall"] == pytest.approx(5 / 6)
    assert found[2] == []                                   # the whole class: nothing enriched (lift 1)
    # With a higher support floor, values held by fewer members are not candidates.
    assert enrichment(ids, pd.DataFrame({"tone": tone}), labels, min_count=4)[1] == []


def test_enrichment_skips_missing_markers_and_orders_by_lift():
    ids = np.array([0] * 4 + [1] * 4)
    attrs = pd.DataFrame({"a": ["x", "x", "x", "y", "y", "y", "y", "x"],
                          "b": ["n/a", "n/a", None, "p", "", "q", "q", "p"]})
    found = enrichment(ids, attrs, min_count=1)
    # b's known values: p (subgroup 0), q, q, p (subgroup 1): base rates 1/2 each.
    assert [(e["attribute"], e["value"]) for e in found[0]] == [("b", "p"), ("a", "x")]     # lift 2, then 1.5
    assert found[0][0]["precision"] == 1.0 and found[0][0]["recall"] == pytest.approx(1 / 2)
    assert [(e["attribute"], e["value"]) for e in found[1]] == [("a", "y"), ("b", "q")]     # lift 1.5, then 4/3
    assert found[1][1]["precision"] == pytest.approx(2 / 3) and found[1][1]["recall"] == 1.0


# --------------------------------------------------------------------------- ranking

def test_ranking_puts_the_small_badly_served_subgroup_first():
    # Class 1: a big subgroup (80), a small one (15) the model gets wrong, a tiny one (5) worse still.
    ids = np.array([0] * 80 + [1] * 15 + [2] * 5 + [3] * 100)
    labels = np.r_[np.ones(100, int), np.zeros(100, int)]
    logit = np.r_[np.full(80, 3.0), np.r_[np.full(12, -2.0), np.full(3, 2.0)], np.full(5, -4.0), np.full(100, -3.0)]
    under = np.r_[np.full(80, 0.45), np.full(15, 0.9), np.full(5, 0.95), np.full(100, 0.5)]
    weight = np.r_[np.full(80, 0.004), np.full(15, 0.0096), np.full(5, 0.0096), np.full(100, 0.005)]
    rows = summarise_subgroups(ids, labels, weight, under, logit=logit, min_size=10)
    assert [r["id"] for r in rows] == [1, 3, 0, 2]            # the tiny one is listed, last, flagged
    first, last = rows[0], rows[-1]
    assert first["class"] == "positive" and first["n"] == 15 and first["share"] == pytest.approx(0.15)
    assert first["error_rate"] == pytest.approx(12 / 15) and not first["small"] and last["small"]
    assert first["mean_loss"] == pytest.approx((12 * np.log1p(np.exp(2.0)) + 3 * np.log1p(np.exp(-2.0))) / 15)
    # Class 1's mean weight is (80*0.004 + 20*0.0096) / 100 = 0.00512.
    assert first["mean_weight_ratio"] == pytest.approx(0.0096 / 0.00512)
    assert first["under_representation"] == pytest.approx(0.9) and [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert set(first) >= {"id", "class", "n", "share", "mean_weight_ratio", "error_rate", "mean_loss",
                          "under_representation", "enriched", "grid", "small"}
    no_model = summarise_subgroups(ids, labels, weight, under)
    assert no_model[0]["error_rate"] is None and no_model[0]["mean_loss"] is None
    with pytest.raises(DebiasError, match="subgroup 0 holds samples of both classes"):
        summarise_subgroups(np.zeros(200, int), labels, weight, under)


def test_subgroups_of_the_early_error_set_rank_before_a_worse_served_majority():
    # One class of 100: subgroup 0 (10 samples, all in the early error set, learnt by the end: error rate 0,
    # score 0.5) and subgroup 1 (90, none in it, score 0.45, the final model wrong on 30 of them). By score x
    # (1 + error rate) subgroup 1 would lead (0.585 > 0.5); the early error set leads, as its samples do.
    ids, labels = np.repeat([0, 1], [10, 90]), np.ones(100, int)
    under = np.repeat([0.5, 0.45], [10, 90])
    logit = np.full(100, 3.0)
    logit[10:40] = -3.0
    errors = np.repeat([1.0, 0.0], [10, 90])
    rows = summarise_subgroups(ids, labels, np.full(100, 0.01), under, logit=logit, errors=errors)
    assert [(r["id"], r["early_error_share"]) for r in rows] == [(0, 1.0), (1, 0.0)]
    assert rows[1]["error_rate"] == pytest.approx(30 / 90)
    without = summarise_subgroups(ids, labels, np.full(100, 0.01), under, logit=logit)
    assert [r["id"] for r in without] == [1, 0] and without[0]["early_error_share"] is None


def test_grid_members_are_central_then_random():
    spread = np.arange(1, 11)[:, None] * np.ones((1, 2))
    mu = np.r_[np.zeros((5, 2)), spread, -spread]                  # the mean is 0: the five zeros are central
    ids = np.zeros(25, int)
    central, others = grid_members(mu, ids, 0, n=8)
    assert set(central) >= {0, 1, 2, 3, 4, 5, 15} and len(central) == 8     # then +-1
    assert len(others) == 8 and not set(others) & set(central)


# --------------------------------------------------------------------------- under-representation

def test_under_representation_ranks_the_planted_cluster_first(rng):
    # As wide as the majority: a tight cluster is dense where it sits, and only fewer (see density.py).
    mu, rare = planted(rng, n=600, share=0.05, spread=1.0)
    labels = np.ones(600, int)
    log_density = per_class_log_density(mu, labels, "kde")
    score = under_representation(log_density, labels)
    # Density alone: the cluster ranks above nearly all the majority (whose own far tail is rare too).
    assert roc_auc_score(rare, score) > 0.97
    assert score.max() <= 1 and score.min() > 0
    # The error signal lifts the badly served: among equally rare samples, those the model gets wrong first.
    loss = np.where(rare, 2.0, 0.1) + rng.random(600) * 0.01
    flags = rare & (rng.random(600) < 0.5)
    with_errors = under_representation(log_density, labels, loss=loss, errors=flags.astype(float))
    top = np.argsort(-with_errors)[: rare.sum()]
    assert rare[top].mean() > 0.9
    assert with_errors[flags].mean() > with_errors[rare & ~flags].mean()
    with pytest.raises(DebiasError, match="loss has shape"):
        under_representation(log_density, labels, loss=loss[:5])


def test_audit_latents_adds_columns_and_ranked_subgroups(rng):
    pos, rare = planted(rng, n=400, share=0.05)
    mu = np.vstack([pos, rng.normal(size=(300, 16))])
    labels = np.r_[np.ones(400, int), np.zeros(300, int)]
    tone = np.r_[np.where(rare, "dark", "light"), np.full(300, "n/a")]
    logit = np.r_[np.where(rare, -1.0, 2.0), np.full(300, -2.0)]
    result = audit_latents(mu, labels, AuditConfig(density="kde"), recon_error=np.full(700, 0.1),
                           attributes=pd.DataFrame({"tone": tone}), logit=logit)
    columns = list(result.samples.columns)
    assert columns[:8] == SAMPLE_COLUMNS + SUBGROUP_COLUMNS
    assert columns[8:] == ["map_x", "map_y", "predicted_probability", "reconstruction_error", "tone"]
    first = result.report["subgroups"][0]
    assert first["class"] == "positive" and first["n"] == 20 and first["error_rate"] == 1.0
    assert first["enriched"][0]["attribute"] == "tone" and first["enriched"][0]["value"] == "dark"
    assert first["enriched"][0]["precision"] == 1.0 and first["enriched"][0]["recall"] == 1.0
    assert (result.samples["subgroup"][rare.nonzero()[0]] == first["id"]).all()
    assert result.report["subgroup_discovery"]["under_representation_signals"] == ["local_outlier_factor", "loss"]
    assert list(result.report)[:2] == ["summary", "subgroups"]
    summary = summarise_audit(result.report, "out")
    assert "\n  subgroup" in summary
    # The verdict leads: the rare subgroup, its share with an interval, how often it is drawn, what it holds.
    assert summary.splitlines()[1].startswith("verdict: Most under-represented: subgroup")
    assert f"\n    subgroup {first['id']} (positive): 20 samples, 5.0% [" in summary
    assert "tone=dark holds 100% [" in summary and "samples flagged as anomalies" in summary



def test_audit_latents_leaves_a_scattered_error_set_out(rng):
    pos, rare = planted(rng, n=400, share=0.05)
    mu = np.vstack([pos, rng.normal(size=(300, 16))])
    labels = np.r_[np.ones(400, int), np.zeros(300, int)]
    errors = np.r_[rare.astype(float), np.zeros(300)]
    scattered = 400 + rng.choice(300, 10, replace=False)
    errors[scattered] = 1.0
    coherent = audit_latents(mu, labels, AuditConfig(density="kde"), errors=errors,
                             error_coherence={"positive": 0.9, "negative": 0.1, "pooled": 0.7})
    assert coherent.report["subgroup_discovery"]["error_set_classes"] == ["negative", "positive"]
    under = coherent.samples["under_representation"].to_numpy()
    assert under[rare.nonzero()[0]].min() > under[:400][~rare].max() and under[scattered].min() >= 0.5
    strata = {(sg["class"], sg["stratum"]) for sg in coherent.report["subgroups"]}
    assert ("positive", "early error set") in strata and ("negative", "early error set") in strata

    scattered_set = audit_latents(mu, labels, AuditConfig(density="kde"), errors=errors,
                                  error_coherence={"positive": 0.4, "negative": 0.1, "pooled": 0.3})
    discovery = scattered_set.report["subgroup_discovery"]
    assert discovery["error_set_classes"] == [] and discovery["under_representation_signals"] == [
        "local_outlier_factor"]
    under = scattered_set.samples["under_representation"].to_numpy()
    assert under[scattered].mean() < 0.8                                   # rarity alone: no lift
    strata = {(sg["class"], sg["stratum"]) for sg in scattered_set.report["subgroups"]}
    assert ("negative", "rarest 5%") in strata and not {s for _, s in strata} & {"early error set"}
    # The planted positives are a far cluster: the whole-class mixture gives it its subgroup, rare (few and
    # outlying), so it ranks with the negatives' rarest 5% ahead of every majority subgroup.
    first = next(sg for sg in scattered_set.report["subgroups"] if sg["class"] == "positive")
    assert first["stratum"] == "the rest" and first["n"] == 20 and first["rank"] <= 2

# --------------------------------------------------------------------------- through `debias audit`

@pytest.mark.slow
def test_debias_audit_writes_subgroups(capsys, tmp_path, tiny_npz):
    model = tmp_path / "model"
    assert main(["train", str(tiny_npz), "--out", str(model), "--image-size", "16", "--latent-dim", "8",
                 "--epochs", "1", "--batch-size", "8", "--no-progress"]) == 0
    np.save(model / "error_set.npy", np.r_[np.ones(5), np.zeros(43)])     # one flag per sample: used
    capsys.readouterr()
    out_dir = tmp_path / "audit"
    assert main(["audit", str(tiny_npz), "--model", str(model), "--out", str(out_dir), "--min-subgroup-size",
                 "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("verdict: ")                          # the verdict first, the details after
    details = out.index("details:")
    assert "subgroups found" in out[details + 1] and out[details + 2].startswith("  subgroup ")

    samples = pd.read_csv(out_dir / "samples.csv")
    assert list(samples.columns[:8]) == SAMPLE_COLUMNS + SUBGROUP_COLUMNS
    assert len(samples) == 48 and samples["under_representation"].between(0, 1).all()
    report = json.loads((out_dir / "report.json").read_text())
    for key in ("summary", "subgroups", "latent_histograms", "under_represented_features", "attribute_relations",
                "representation", "anomalies", "figures"):
        assert key in report
    subgroups = report["subgroups"]
    assert sorted(sg["id"] for sg in subgroups) == sorted(samples["subgroup"].unique().tolist())
    assert sum(sg["n"] for sg in subgroups) == 48
    for sg in subgroups:
        assert 0 <= sg["error_rate"] <= 1 and sg["grid"] == f"subgroup_{sg['id']}.png"
        assert Image.open(out_dir / sg["grid"]).size[0] > 100
    # the final loss is not used beside the error set
    assert report["subgroup_discovery"]["under_representation_signals"] == ["local_outlier_factor", "error_set"]
    assert report["subgroup_discovery"]["error_set_classes"] == ["negative", "positive"]   # no coherence recorded

    # The training recorded both classes' error sets as scattered: they count for nothing.
    (model / "error_set.json").write_text(json.dumps({"schedule": "constant", "coherence": {
        "positive": 0.1, "negative": None, "pooled": 0.1}}))
    assert main(["audit", str(tiny_npz), "--model", str(model), "--out", str(out_dir), "--no-figures", "--force",
                 "--min-subgroup-size", "2"]) == 0
    report = json.loads((out_dir / "report.json").read_text())
    assert report["subgroup_discovery"]["error_set_classes"] == []
    assert report["subgroup_discovery"]["under_representation_signals"] == ["local_outlier_factor"]
    assert all(sg["stratum"] != "early error set" for sg in report["subgroups"])

    np.save(model / "error_set.npy", np.ones(7))                              # another dataset's: left out
    assert main(["audit", str(tiny_npz), "--model", str(model), "--out", str(out_dir), "--no-figures", "--force"]) == 0
    report = json.loads((out_dir / "report.json").read_text())
    assert "error_set" not in report["subgroup_discovery"]["under_representation_signals"]
    assert "(7,) flags for 48 samples" in report["subgroup_discovery"]["notes"][0]
    assert all(sg["grid"] is None for sg in report["subgroups"])


def test_the_early_error_set_outranks_rarity_and_the_final_loss_is_then_ignored():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    log_density = np.array([-1.0, -2.0, -3.0, -4.0, -1.0, -2.0, -3.0, -4.0])  # the last of each class rarest
    errors = np.array([1, 0, 0, 0, 0, 1, 0, 0], dtype=float)
    loss = np.array([0.0, 9.0, 9.0, 9.0, 9.0, 0.0, 9.0, 9.0])  # a memorised rare sample has a low final loss
    score = under_representation(log_density, labels, loss=loss, errors=errors)
    assert score[0] > score[1:4].max() and score[5] > score[[4, 6, 7]].max()
    assert score[3] > score[2] > score[1]  # rarity orders the unflagged
    np.testing.assert_allclose(score, under_representation(log_density, labels, errors=errors))
    # Without flags the loss is the error signal.
    assert under_representation(log_density, labels, loss=loss)[1] > under_representation(log_density, labels)[1]


def test_the_early_error_set_splits_each_class_before_clustering(rng):
    mu = rng.normal(size=(200, 8))              # one blob: clusters alone would not split it
    labels = np.repeat([1, 0], 100)
    errors = np.zeros(200)
    errors[[3, 7, 11, 150, 160]] = 1
    ids = SubgroupFinder(max_k=4, min_size=2).fit_predict(mu, labels, errors)
    for cls in (0, 1):
        flagged = ids[(labels == cls) & (errors == 1)]
        rest = ids[(labels == cls) & (errors == 0)]
        assert len(set(flagged)) == 1 and not set(flagged) & set(rest)



def test_only_a_coherent_error_set_counts():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    assert trusted_error_classes(labels, None) == [0, 1]                 # nothing recorded: as before
    # The gated schedule's test: the error set as a whole, not each class.
    assert trusted_error_classes(labels, {"positive": 0.9, "negative": 0.2, "pooled": 0.55}) == []
    assert trusted_error_classes(labels, {"positive": 0.9, "negative": 0.2, "pooled": 0.56}) == [0, 1]
    assert trusted_error_classes(labels, {"positive": None, "negative": None}) == []
    # In the class whose error set is scattered, rarity alone orders: its flagged sample is not lifted.
    log_density = np.array([-1.0, -2.0, -3.0, -4.0, -1.0, -2.0, -3.0, -4.0])
    errors = np.array([1, 0, 0, 0, 1, 0, 0, 0], dtype=float)
    score = under_representation(log_density, labels, errors=errors, error_classes=[1])
    assert score[0] > score[1:4].max()
    np.testing.assert_allclose(score[4:], under_representation(log_density[4:], labels[4:]))


def test_a_coherent_error_set_splits_its_class_and_the_rest_are_clustered_whole_first(rng):
    mu = rng.normal(size=(200, 8))
    labels = np.repeat([1, 0], 100)
    under = np.tile(np.arange(1, 101) / 100, 2)        # the last of each class rarest, none of them together
    errors = np.zeros(200)
    errors[[3, 7, 11, 150]] = 1
    finder = SubgroupFinder(min_size=5)
    strata = find_subgroups(finder, mu, labels, under, errors, error_classes=[1])
    assert np.flatnonzero(strata == STRATUM_ERRORS).tolist() == [3, 7, 11]
    # The negatives' error set is scattered: no subgroup of theirs is rare, so their rarest 5% is split off.
    assert np.flatnonzero(strata == STRATUM_RAREST).tolist() == list(range(195, 200))
    assert set(finder.labels_[195:200]).isdisjoint(finder.labels_[100:195])
    assert "negative, rarest 5%" in finder.classes_
    # A class whose rarest share is smaller than min_size is not split.
    assert not find_subgroups(SubgroupFinder(min_size=10), mu, labels, under).any()


@pytest.mark.parametrize("distance, spread, split", [(3.5, 1.0, True), (8.0, 0.5, False)])
def test_a_minority_at_an_edge_is_clustered_among_the_rarest_one_far_away_keeps_its_component(
        rng, distance, spread, split):
    # A 2% minority: just off the majority (the whole class's mixture gives it no component: the rarest 5% is
    # split off and clustered, and its subgroup leads, as on the planted faces), or far and tight (the
    # mixture isolates it: the class is not split).
    mu, rare = planted(rng, n=1000, share=0.02, distance=distance, spread=spread)
    labels = np.ones(1000, int)
    under = under_representation(np.zeros(1000), labels, local=local_outlier_factor(mu, labels))
    finder = SubgroupFinder()
    strata = find_subgroups(finder, mu, labels, under)
    assert (strata == STRATUM_RAREST).any() == split
    tone = pd.DataFrame({"tone": np.where(rare, "dark", "light")})
    top = summarise_subgroups(finder.labels_, labels, np.full(1000, 1e-3), under, tone, strata=strata)[0]
    assert top["enriched"][0]["value"] == "dark"
    assert top["stratum"] == ("rarest 5%" if split else "the rest")
    plain = SubgroupFinder().fit_predict(mu, labels)
    plain_top = summarise_subgroups(plain, labels, np.full(1000, 1e-3), under, tone)[0]
    if split:
        assert rare[finder.labels_ == top["id"]].mean() > 0.1 > rare[plain == plain_top["id"]].mean()


def test_attribute_values_as_strings_and_as_codes():
    # Missing (NaN, None, "" and "n/a") holds no value; 1 and "1" read as one value, "1".
    column = pd.Series(["b", None, "n/a", "", np.nan, 1, "1", 2.5, "a"], dtype=object)
    text, known = known_strings(column)
    assert known.tolist() == [True, False, False, False, False, True, True, True, True]
    assert text[known].tolist() == ["b", "1", "1", "2.5", "a"]
    codes, names = attribute_codes(column)
    assert names.tolist() == ["1", "2.5", "a", "b"]                     # sorted
    assert codes.tolist() == [3, -1, -1, -1, -1, 0, 0, 1, 2]
    assert (names[codes[known]] == text[known]).all()
