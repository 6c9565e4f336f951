"""`debias evaluate` / `debias compare` with uncertainty: n, intervals, error types, small groups, paired tests."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from audit.cli import main
from audit.comparison import load_evaluation, paired_comparison
from audit.errors import DebiasError
from audit.evaluation import format_table, group_metrics, with_options, write_evaluation
from audit.models import ModelConfig, build_model
from audit.stats import wilson_interval


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv, match):
    code, out, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("debias") and "error:" in lines[0], (code, err)
    assert match in lines[0], lines[0]


def _data(sizes: dict, accuracy: dict, seed=0):
    """Labels, predictions and a `tone` attribute with the given group sizes and exact accuracies."""
    rng = np.random.default_rng(seed)
    labels, predicted, tone = [], [], []
    for (label, value), n in sizes.items():
        right = np.arange(n) < round(accuracy[(label, value)] * n)
        labels += [label] * n
        predicted += list(np.where(rng.permutation(right), label, 1 - label))
        tone += [value] * n
    return np.array(labels), np.array(predicted), pd.DataFrame({"tone": tone})


BIG = {(1, "light"): 100, (1, "dark"): 60, (0, "light"): 100, (0, "dark"): 40}
SMALL = BIG | {(1, "other"): 5}
ACC = {(1, "light"): 0.95, (1, "dark"): 0.80, (0, "light"): 0.90, (0, "dark"): 0.85, (1, "other"): 0.0}


def test_groups_carry_n_wilson_intervals_and_error_types():
    m = group_metrics(*_data(BIG, ACC), group_by=["tone"], n_boot=200)
    by = {(g["group"]["label"], g["group"]["tone"]): g for g in m["groups"]}
    dark = by[(1, "dark")]
    assert dark["n"] == 60 and dark["accuracy"] == pytest.approx(0.80)
    assert dark["accuracy_ci"] == pytest.approx([float(b) for b in wilson_interval(48, 60)])
    # Positives: FNR over the group's positives; no negatives, so no FPR (null, not 0).
    assert dark["n_positive"] == 60 and dark["fnr"] == pytest.approx(0.20) and dark["fpr"] is None
    assert dark["fnr_ci"] == pytest.approx([float(b) for b in wilson_interval(12, 60)]) and dark["fpr_ci"] is None
    neg = by[(0, "dark")]
    assert neg["fnr"] is None and neg["fpr"] == pytest.approx(0.15) and neg["n_negative"] == 40
    assert m["overall"]["n"] == 300 and m["overall"]["accuracy_ci"][0] < m["overall"]["accuracy"]
    assert m["worst_group"] == {"label": 1, "tone": "dark"} and m["best_group"] == {"label": 1, "tone": "light"}
    assert m["accuracy_gap"] == pytest.approx(0.15) and m["accuracy_ratio"] == pytest.approx(0.80 / 0.95)
    for key in ("worst_group_accuracy_ci", "accuracy_gap_ci", "accuracy_ratio_ci"):
        low, high = m[key]
        assert 0 <= low < high <= 1, key
    assert m["small_groups"] == [] and m["warnings"] == [] and m["bootstrap"]["n_boot"] == 200
    json.dumps({k: v for k, v in m.items() if k != "predictions"}, allow_nan=False)  # JSON has no NaN


def test_bootstrap_is_seeded():
    data = _data(BIG, ACC)
    a, b = (group_metrics(*data, group_by=["tone"], seed=3) for _ in range(2))
    c = group_metrics(*data, group_by=["tone"], seed=4)
    assert a["accuracy_gap_ci"] == b["accuracy_gap_ci"] and a["accuracy_gap_ci"] != c["accuracy_gap_ci"]


def test_small_groups_are_listed_with_a_warning_but_not_ranked():
    m = group_metrics(*_data(SMALL, ACC), group_by=["tone"])
    assert m["small_groups"] == [{"group": {"label": 1, "tone": "other"}, "n": 5}]
    assert m["worst_group"] == {"label": 1, "tone": "dark"}  # not the small group at 0.0
    assert m["accuracy_gap"] == pytest.approx(0.15) and m["ranked_groups"] == 4
    assert len(m["warnings"]) == 1 and "positive, tone=other (n=5)" in m["warnings"][0]
    assert "left out" in m["warnings"][0]
    assert [g["small"] for g in m["groups"]].count(True) == 1
    assert "small" in format_table(m)

    ranked = with_options(m, include_small=True)
    assert ranked["worst_group"] == {"label": 1, "tone": "other"} and ranked["worst_group_accuracy"] == 0.0
    assert ranked["accuracy_gap"] == pytest.approx(0.95) and "ranked" in ranked["warnings"][0]
    assert with_options(m, min_group_size=3)["small_groups"] == []


def test_when_every_group_is_small_all_are_ranked_and_flagged():
    m = group_metrics(*_data({k: 10 for k in BIG}, ACC), group_by=["tone"])
    assert m["ranked_groups"] == 4 and len(m["small_groups"]) == 4
    assert m["warnings"][0].startswith("every group has fewer than 30 samples")


@pytest.mark.parametrize("options, match", [({"n_boot": 0}, "n_boot"), ({"n_boot": 10**6}, "n_boot"),
                                            ({"seed": -1}, "seed"), ({"min_group_size": 2.5}, "min_group_size")])
def test_bad_options_are_refused(options, match):
    with pytest.raises(DebiasError, match=match):
        group_metrics(*_data(BIG, ACC), group_by=["tone"], **options)


def _written(tmp_path, name, data, group_by=("tone",), **options):
    path = tmp_path / f"{name}.json"
    write_evaluation(path, group_metrics(*data, group_by=list(group_by), **options))
    return path


def test_paired_comparison_hand_computed(tmp_path):
    labels, a_pred, attrs = _data(BIG, ACC)
    b_pred = a_pred.copy()
    dark = np.flatnonzero((labels == 1) & (attrs["tone"] == "dark").to_numpy())
    wrong, right = dark[a_pred[dark] != 1], dark[a_pred[dark] == 1]
    b_pred[wrong[:9]] = 1   # 9 samples only B gets right ...
    b_pred[right[:1]] = 0   # ... 1 only A: McNemar p = 2 * 11 / 1024
    a = load_evaluation(_written(tmp_path, "standard", (labels, a_pred, attrs)))
    b = load_evaluation(_written(tmp_path, "dbvae", (labels, b_pred, attrs)))
    assert list(a["predictions"].columns) == ["index", "label", "prediction", "probability", "group"]
    r = paired_comparison(a, b, ("standard", "dbvae"))
    g = next(g for g in r["groups"] if g["group"] == {"label": 1, "tone": "dark"})
    assert (g["only_a_right"], g["only_b_right"]) == (1, 9)
    assert g["mcnemar_p"] == pytest.approx(0.021484375) and g["difference"] == pytest.approx(8 / 60)
    assert g["difference_ci"][0] < 8 / 60 < g["difference_ci"][1]
    assert r["overall"]["mcnemar_p"] == pytest.approx(0.021484375) and r["n"] == 300
    same = next(g for g in r["groups"] if g["group"] == {"label": 1, "tone": "light"})
    assert same["difference"] == 0 and same["mcnemar_p"] == 1.0
    # B's worst group moves to negative, dark (0.85); A's was positive, dark (0.80).
    w = r["worst_group"]
    assert not w["same_group"] and w["change"] == pytest.approx(0.05)
    assert r["sentence"].startswith("dbvae's worst group (negative, tone=dark) is 5.0 points better than "
                                    "standard's worst group (positive, tone=dark)")
    assert "not significant at the 5% level (McNemar p=1, n=40)" in r["sentence"]


def test_cli_compare_prints_the_paired_table_and_sentence(capsys, tmp_path):
    labels, pred, attrs = _data(BIG, ACC)
    a = _written(tmp_path, "standard", (labels, pred, attrs))
    better = pred.copy()
    dark = np.flatnonzero((labels == 1) & (attrs["tone"] == "dark").to_numpy())
    better[dark[pred[dark] == 0][:2]] = 1  # 48/60 -> 50/60: still the worst group (negative, dark is 0.85)
    b = _written(tmp_path, "dbvae", (labels, better, attrs))
    code, out, err = run(capsys, "compare", a, b, "--n-boot", "300", "--out", tmp_path / "cmp.json")
    assert code == 0, err
    assert "standard" in out.splitlines()[0] and "dbvae" in out.splitlines()[0] and "McNemar p" in out
    sentence = out.splitlines()[-1]
    assert sentence.startswith("dbvae's worst group (positive, tone=dark) is 3.3 points better than standard's [")
    assert sentence.endswith("]; not significant at the 5% level (McNemar p=0.5, n=60).")
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert saved["bootstrap"]["n_boot"] == 300 and saved["sentence"] == out.splitlines()[-1]


def test_compare_refuses_different_datasets(capsys, tmp_path):
    a = _written(tmp_path, "a", _data(BIG, ACC))
    other_size = _written(tmp_path, "b", _data(SMALL, ACC))
    one_line_error(capsys, "compare", a, other_size, match="different datasets (300 vs 305 samples)")
    labels, pred, attrs = _data(BIG, ACC)
    other_labels = _written(tmp_path, "c", (1 - labels, pred, attrs))
    one_line_error(capsys, "compare", a, other_labels, match="different labels")
    other_attrs = _written(tmp_path, "d", (labels, pred, attrs.assign(tone=attrs["tone"].str.upper())))
    one_line_error(capsys, "compare", a, other_attrs, match="different attributes")
    grouped = _written(tmp_path, "e", (labels, pred, attrs), group_by=())
    one_line_error(capsys, "compare", a, grouped, match="group by different attributes")
    one_line_error(capsys, "compare", a, other_labels, other_size, match="different datasets")  # side by side too
    one_line_error(capsys, "compare", a, a, match="column names must differ")


def test_compare_needs_the_predictions_beside_the_json(capsys, tmp_path):
    a, b = _written(tmp_path, "a", _data(BIG, ACC)), _written(tmp_path, "b", _data(BIG, ACC, seed=1))
    (tmp_path / "b.predictions.csv").unlink()
    one_line_error(capsys, "compare", a, b, match="b.predictions.csv is missing")
    old = json.loads(a.read_text())
    del old["predictions_file"], old["dataset_fingerprint"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    one_line_error(capsys, "compare", tmp_path / "old.json", a, match="carries no per-sample predictions")
    (tmp_path / "a.predictions.csv").write_text("index,label\n0,1\n")
    one_line_error(capsys, "compare", a, a, "--names", "x,y", match="lacks column(s) prediction, probability, group")


def test_cli_evaluate_writes_intervals_and_predictions(capsys, tmp_path, tiny_npz):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    cfg = ModelConfig(method="standard", image_size=16, latent_dim=8)
    torch.save({"model": build_model(cfg).state_dict(), "model_config": cfg.to_dict(), "version": "0.1.0"},
               model_dir / "model.pt")
    out = tmp_path / "eval.json"
    code, stdout, err = run(capsys, "evaluate", model_dir, tiny_npz, "--group-by", "skin_tone", "--out", out,
                            "--n-boot", "100", "--min-group-size", "5")
    assert code == 0, err
    assert "accuracy [95% CI]" in stdout and "FNR [95% CI]" in stdout and "worst group" in stdout
    m = json.loads(out.read_text())
    assert m["bootstrap"]["n_boot"] == 100 and m["min_group_size"] == 5
    assert m["model"]["method"] == "standard" and m["dataset_fingerprint"]["n"] == 48
    for key in ("worst_group_accuracy", "accuracy_variance", "accuracy_gap", "accuracy_gap_ci",
                "worst_group_accuracy_ci", "accuracy_ratio", "small_groups"):
        assert key in m
    predictions = pd.read_csv(tmp_path / m["predictions_file"])
    assert len(predictions) == 48 and predictions["probability"].between(0, 1).all()
    assert ("warning" in err) == bool(m["small_groups"])
    one_line_error(capsys, "evaluate", model_dir, tiny_npz, "--n-boot", "1000000", match="n_boot must be")
    one_line_error(capsys, "evaluate", model_dir, tiny_npz, "--n-boot", "0", match="expected a number >= 1")
