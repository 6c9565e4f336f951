"""Evaluations keep their per-sample predictions; compare pairs them (McNemar, paired bootstrap, a sentence)."""
from __future__ import annotations

from sqlalchemy import delete, func, select

from api.tables import EvaluationPrediction

from .conftest import TRAIN_FAST, assert_error, run_jobs, upload


def _trained_and_evaluated(client, app, alice, tiny_npz_bytes, test_npz_bytes) -> dict:
    train = upload(client, alice, tiny_npz_bytes, name="train").json()
    test = upload(client, alice, test_npz_bytes, filename="test.npz", name="test").json()
    ids = {"train": train["id"], "test": test["id"]}
    for method in ("standard", "dbvae"):
        r = client.post(f"/v1/datasets/{train['id']}/models", headers=alice, json={"method": method, **TRAIN_FAST})
        ids[method] = r.json()["resource"]["model_id"]
    assert run_jobs(app) == 2
    for method in ("standard", "dbvae"):
        r = client.post(f"/v1/models/{ids[method]}/evaluations", headers=alice,
                        json={"dataset_id": test["id"], "group_by": ["skin_tone"]})
        assert r.status_code == 202, r.text
        ids[f"{method}_eval"] = r.json()["resource"]["evaluation_id"]
    assert run_jobs(app) == 2
    return ids


def test_evaluations_store_predictions_and_compare_is_paired(client, app, alice, tiny_npz_bytes, test_npz_bytes):
    ids = _trained_and_evaluated(client, app, alice, tiny_npz_bytes, test_npz_bytes)
    ev = client.get(f"/v1/evaluations/{ids['dbvae_eval']}", headers=alice).json()
    m = ev["metrics"]
    n = m["overall"]["n"]
    assert "predictions" not in m and m["dataset_fingerprint"]["n"] == n
    g = m["groups"][0]
    assert {"accuracy_ci", "fnr", "fnr_ci", "fpr", "fpr_ci", "small"} <= set(g) and "warnings" in m
    assert g["accuracy_ci"][0] <= g["accuracy"] <= g["accuracy_ci"][1]
    assert {"worst_group_accuracy_ci", "accuracy_gap_ci", "accuracy_ratio", "small_groups"} <= set(m)
    with app.state.sessions() as session:
        stored = session.scalar(select(func.count()).select_from(EvaluationPrediction)
                                .where(EvaluationPrediction.evaluation_id == ids["dbvae_eval"]))
    assert stored == n

    r = client.get(f"/v1/models/{ids['dbvae']}/compare", headers=alice,
                   params={"baseline": ids["standard"], "dataset": ids["test"]})
    assert r.status_code == 200, r.text
    cmp = r.json()
    assert cmp["model"]["method"] == "dbvae" and cmp["baseline"]["method"] == "standard"
    assert cmp["sentence"].startswith(f"model {ids['dbvae']} (dbvae)'s worst group")
    assert "McNemar p" in cmp["sentence"] and f"model {ids['standard']} (standard)" in cmp["sentence"]
    paired = cmp["paired"]
    assert paired["n"] == n and 0 <= paired["overall"]["mcnemar_p"] <= 1
    assert cmp["worst_group_gain"] == cmp["model"]["worst_group_accuracy"] - cmp["baseline"]["worst_group_accuracy"]
    for g in cmp["groups"]:
        assert g["difference"] == g["accuracy"] - g["baseline_accuracy"]
        assert g["difference_ci"] is None or g["difference_ci"][0] <= g["difference_ci"][1]
        assert 0 <= g["mcnemar_p"] <= 1 and g["accuracy_ci"] and g["baseline_accuracy_ci"]
        assert "fnr" in g and "baseline_fpr" in g
    # Trained on another dataset than the test set: no training-set warning.
    assert not any("trained on" in w for w in cmp["warnings"])
    # The same, naming the evaluations.
    r = client.get(f"/v1/models/{ids['dbvae']}/compare", headers=alice,
                   params={"baseline": ids["standard"], "evaluation": ids["dbvae_eval"],
                           "baseline_evaluation": ids["standard_eval"]})
    assert r.status_code == 200 and r.json()["sentence"] == cmp["sentence"]


def test_compare_refuses_other_datasets_and_evaluations_without_predictions(client, app, alice, tiny_npz_bytes,
                                                                            test_npz_bytes):
    ids = _trained_and_evaluated(client, app, alice, tiny_npz_bytes, test_npz_bytes)
    # The dbvae model evaluated on its training set: warned, and not pairable with the test-set evaluation.
    r = client.post(f"/v1/models/{ids['dbvae']}/evaluations", headers=alice,
                    json={"dataset_id": ids["train"], "group_by": ["skin_tone"]})
    on_train = r.json()["resource"]["evaluation_id"]
    assert run_jobs(app) == 1
    r = client.get(f"/v1/models/{ids['dbvae']}/compare", headers=alice,
                   params={"baseline": ids["standard"], "evaluation": on_train,
                           "baseline_evaluation": ids["standard_eval"]})
    assert_error(r, 422, "same test set", f"dataset {ids['train']}", f"dataset {ids['test']}")
    r = client.get(f"/v1/models/{ids['dbvae']}/compare", headers=alice, params={"baseline": ids["standard"]})
    assert_error(r, 422, "dataset=ID")
    r = client.get(f"/v1/models/{ids['dbvae']}/compare", headers=alice,
                   params={"baseline": ids["standard"], "evaluation": ids["standard_eval"],
                           "baseline_evaluation": ids["standard_eval"]})
    assert_error(r, 422, f"not of model {ids['dbvae']}")
    # Both on the training set: paired, with a warning that says why the numbers flatter the models.
    client.post(f"/v1/models/{ids['standard']}/evaluations", headers=alice,
                json={"dataset_id": ids["train"], "group_by": ["skin_tone"]})
    assert run_jobs(app) == 1
    cmp = client.get(f"/v1/models/{ids['dbvae']}/compare", headers=alice,
                     params={"baseline": ids["standard"], "dataset": ids["train"]}).json()
    assert sum("was trained on dataset" in w and "held-out" in w for w in cmp["warnings"]) == 2
    # An evaluation stored before predictions were kept: 409, evaluate again.
    with app.state.sessions() as session:
        session.execute(delete(EvaluationPrediction).where(EvaluationPrediction.evaluation_id == ids["dbvae_eval"]))
        session.commit()
    r = client.get(f"/v1/models/{ids['dbvae']}/compare", headers=alice,
                   params={"baseline": ids["standard"], "dataset": ids["test"]})
    assert_error(r, 409, "before per-sample predictions were stored", "evaluate again",
                  f"/v1/models/{ids['dbvae']}/evaluations")
