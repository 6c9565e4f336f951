"""Counterfactual tests through the API: a job per test, results with intervals, the pairs picture, translator
reuse, refusals (422 / 409) and owner isolation; the dataset's deletion takes them and their files."""
from __future__ import annotations

import pytest

from audit.synth import make_synthetic

from .conftest import TRAIN_FAST, _npz_bytes, assert_error, run_jobs, upload

FAST = {"epochs": 1}


@pytest.fixture(scope="module")
def lit_npz_bytes(tmp_path_factory):
    """24 faces and 24 non-faces, lighting bright or dim about half each: enough of both values to test."""
    return _npz_bytes(tmp_path_factory.mktemp("lit"), make_synthetic(24, 24, image_size=16, seed=0, balanced=True))


def ready_model(client, app, headers, content) -> tuple[int, int]:
    ds = upload(client, headers, content).json()["id"]
    r = client.post(f"/v1/datasets/{ds}/models", headers=headers,
                    json={"method": "standard", "val_fraction": 0, **TRAIN_FAST})
    assert r.status_code == 202, r.text
    assert run_jobs(app) == 1
    return ds, r.json()["resource"]["model_id"]


def start(client, headers, model, **body):
    return client.post(f"/v1/models/{model}/counterfactuals", headers=headers, json=body)


def test_a_counterfactual_test_runs_as_a_job_and_serves_its_result(client, app, alice, bob, settings,
                                                                    lit_npz_bytes):
    ds, model = ready_model(client, app, alice, lit_npz_bytes)
    r = start(client, alice, model, dataset_id=ds, attribute="lighting", values=["bright", "dim"], **FAST)
    assert r.status_code == 202, r.text
    first = r.json()["resource"]["counterfactual_id"]
    assert r.json()["job"]["kind"] == "counterfactual"
    assert client.get(f"/v1/counterfactuals/{first}", headers=alice).json()["status"] == "pending"
    assert run_jobs(app) == 1
    body = client.get(f"/v1/counterfactuals/{first}", headers=alice).json()
    assert body["status"] == "ready" and body["values"] == ["bright", "dim"] and body["translator_from"] is None
    result = body["result"]
    assert result["translator"]["trained"] and "path" not in result["translator"] and "path" not in result["model"]
    assert [(d["from"], d["to"]) for d in result["directions"]] == [("bright", "dim"), ("dim", "bright")]
    cell = result["directions"][0]["classes"][0]
    assert cell["class"] == "all" and len(cell["flip_rate_ci"]) == 2 and "mean_probability_change_ci" in cell
    assert isinstance(result["reliable"], bool) and isinstance(result["warnings"], list)
    assert result["pairs_png"] == f"/v1/counterfactuals/{first}/pairs.png"
    png = client.get(result["pairs_png"], headers=alice)
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    job = client.get(f"/v1/jobs/{r.json()['job']['id']}", headers=alice).json()
    assert job["status"] == "succeeded" and "decisions flipped: bright->dim" in job["message"]

    # Another model under the same translation: reuse it, values either way round.
    r = start(client, alice, model, dataset_id=ds, attribute="lighting", values=["dim", "bright"],
              translator_from=first)
    assert r.status_code == 202, r.text
    second = r.json()["resource"]["counterfactual_id"]
    assert run_jobs(app) == 1
    reused = client.get(f"/v1/counterfactuals/{second}", headers=alice).json()
    assert reused["status"] == "ready" and reused["translator_from"] == first
    assert not reused["result"]["translator"]["trained"]
    assert not (settings.data_dir / "counterfactuals" / str(second) / "translator").exists()
    # A reuse of a reuse points at the test that trained it.
    r = start(client, alice, model, dataset_id=ds, attribute="lighting", values=["bright", "dim"],
              translator_from=second)
    assert r.status_code == 202 and run_jobs(app) == 1
    third = r.json()["resource"]["counterfactual_id"]
    assert client.get(f"/v1/counterfactuals/{third}", headers=alice).json()["translator_from"] == first
    assert [c["id"] for c in client.get(f"/v1/counterfactuals?model_id={model}", headers=alice).json()] == [
        third, second, first]

    # Another owner sees none of it and cannot test the model.
    for url in (f"/v1/counterfactuals/{first}", f"/v1/counterfactuals/{first}/pairs.png"):
        assert_error(client.get(url, headers=bob), 404, f"counterfactual {first} not found")
    assert client.get("/v1/counterfactuals", headers=bob).json() == []
    assert_error(start(client, bob, model, dataset_id=ds, attribute="lighting", values=["bright", "dim"]), 404,
                 f"model {model} not found")

    # Deleting the dataset takes the tests and their folders.
    folders = [settings.data_dir / "counterfactuals" / str(i) for i in (first, second, third)]
    assert all(f.is_dir() for f in folders)
    assert client.delete(f"/v1/datasets/{ds}", headers=alice).status_code == 204
    assert not any(f.exists() for f in folders)
    assert client.get("/v1/counterfactuals", headers=alice).json() == []


def test_counterfactual_requests_are_checked_before_a_job_is_queued(client, app, alice, lit_npz_bytes):
    ds, model = ready_model(client, app, alice, lit_npz_bytes)
    good = {"dataset_id": ds, "attribute": "lighting", "values": ["bright", "dim"]}
    assert_error(start(client, alice, model, **{**good, "attribute": "mood"}), 422,
                 f"dataset {ds} has no attribute 'mood'")
    assert_error(start(client, alice, model, **{**good, "attribute": "skin_tone", "values": ["light", "dark"]}),
                 422, "images of skin_tone='light'; a counterfactual test needs at least 10 of each value")
    assert_error(start(client, alice, model, **{**good, "values": ["dim", "dim"]}), 422, "two different")
    assert_error(start(client, alice, model, **{**good, "values": ["dim"]}), 422)
    assert_error(start(client, alice, model, **{**good, "epochs": 0}), 422)
    assert_error(start(client, alice, model, **good, translator_from=999), 404, "counterfactual 999 not found")
    r = start(client, alice, model, **good, **FAST)
    pending = r.json()["resource"]["counterfactual_id"]
    assert_error(start(client, alice, model, **good, translator_from=pending), 409,
                 f"counterfactual {pending} is pending, not ready")
    assert run_jobs(app) == 1
    assert_error(start(client, alice, model, **{**good, "attribute": "background", "values": ["plain", "cluttered"]},
                       translator_from=pending), 422, "translates lighting bright<->dim, not background")
    r = client.post(f"/v1/datasets/{ds}/models", headers=alice, json={"method": "standard", **TRAIN_FAST})
    untrained = r.json()["resource"]["model_id"]
    assert_error(start(client, alice, untrained, **good), 409, f"model {untrained} is pending, not ready")
