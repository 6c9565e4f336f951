"""Review decisions through the API: one sample, a selection, the list and its CSV, filters on review state,
owner isolation, bad input, and retraining without the excluded samples."""
import csv
import io
import json

from sqlalchemy import select

from api.services.runners import model_dir
from api.tables import Job

from .conftest import TRAIN_FAST, assert_error, run_jobs, upload


def ready_audit(client, app, headers, content) -> tuple[int, int]:
    """(dataset id, audit id) of a finished audit of `content`."""
    ds = upload(client, headers, content).json()["id"]
    r = client.post(f"/v1/datasets/{ds}/audits", headers=headers, json={"training": TRAIN_FAST})
    assert r.status_code == 202, r.text
    assert run_jobs(app) == 1
    return ds, r.json()["resource"]["audit_id"]


def reviews(client, headers, audit, **params):
    r = client.get(f"/v1/audits/{audit}/reviews", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_one_sample_decisions_list_filters_and_csv(client, app, alice, tiny_npz_bytes):
    ds, audit = ready_audit(client, app, alice, tiny_npz_bytes)
    base = f"/v1/audits/{audit}/reviews"
    assert reviews(client, alice, audit) == {"items": [], "next_after": None, "limit": 100,
                                             "counts": {"reviewed": 0, "keep": 0, "exclude": 0}}

    r = client.put(f"{base}/7", headers=alice, json={"decision": "exclude", "tags": ["mislabelled", "blurry"],
                                                     "note": "=HYPERLINK(\"http://x\")\nnot a face"})
    assert r.status_code == 200, r.text
    one = r.json()
    assert one["index"] == 7 and one["decision"] == "exclude" and one["tags"] == ["mislabelled", "blurry"]
    assert one["reviewed_by"] == "alice" and one["reviewed_at"] and one["image_url"].endswith("/samples/7/image")
    assert client.put(f"{base}/3", headers=alice, json={"decision": "keep"}).status_code == 200
    assert client.put(f"{base}/40", headers=alice, json={"decision": "reviewed", "note": "fine"}).status_code == 200
    # A new decision replaces the earlier one (no duplicate row), and says when.
    again = client.put(f"{base}/3", headers=alice, json={"decision": "exclude"}).json()
    assert again["decision"] == "exclude" and again["tags"] == [] and again["note"] == ""

    page = reviews(client, alice, audit)
    assert [i["index"] for i in page["items"]] == [3, 7, 40]
    assert page["counts"] == {"reviewed": 1, "keep": 0, "exclude": 2}
    assert [i["index"] for i in reviews(client, alice, audit, decision="exclude")["items"]] == [3, 7]
    first = reviews(client, alice, audit, limit=2)
    assert [i["index"] for i in first["items"]] == [3, 7] and first["next_after"] == 7
    rest = reviews(client, alice, audit, limit=2, after=first["next_after"])
    assert [i["index"] for i in rest["items"]] == [40] and rest["next_after"] is None

    # The sample lists filter on review state and say each sample's decision.
    items = client.get(f"/v1/audits/{audit}/anomalies", headers=alice, params={"review": "exclude"}).json()["items"]
    assert sorted(i["index"] for i in items) == [3, 7] and {i["review"] for i in items} == {"exclude"}
    items = client.get(f"/v1/audits/{audit}/samples", headers=alice,
                       params={"review": "none", "limit": 100}).json()["items"]
    assert len(items) == 45 and {i["review"] for i in items} == {None}
    items = client.get(f"/v1/audits/{audit}/samples", headers=alice, params={"review": "any"}).json()["items"]
    assert sorted(i["index"] for i in items) == [3, 7, 40]
    r = client.get(f"/v1/audits/{audit}/anomalies", headers=alice, params={"review": "reviewed", "format": "csv"})
    assert [row["index"] for row in csv.DictReader(io.StringIO(r.text))] == ["40"]

    # CSV export: every decision, cells a spreadsheet shows as text.
    r = client.get(base, headers=alice, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f'audit-{audit}-reviews.csv' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == ["index", "decision", "tags", "note", "reviewed_by", "reviewed_at", "label", "subgroup",
                             "image_url"]
    assert [(row["index"], row["decision"]) for row in rows] == [("3", "exclude"), ("7", "exclude"),
                                                                 ("40", "reviewed")]
    assert rows[1]["tags"] == "mislabelled; blurry" and rows[1]["reviewed_by"] == "alice"
    assert rows[1]["note"] == "'=HYPERLINK(\"http://x\")\nnot a face"
    assert rows[1]["label"] in ("0", "1") and rows[1]["subgroup"] != ""
    only = client.get(base, headers=alice, params={"format": "csv", "decision": "reviewed"}).text
    assert [row["index"] for row in csv.DictReader(io.StringIO(only))] == ["40"]

    # Clearing a decision makes the sample unreviewed again.
    assert client.delete(f"{base}/7", headers=alice).status_code == 204
    assert client.delete(f"{base}/7", headers=alice).status_code == 204  # nothing left to clear is fine
    assert reviews(client, alice, audit)["counts"] == {"reviewed": 1, "keep": 0, "exclude": 1}


def test_a_decision_for_a_whole_selection(client, app, alice, subgroup_npz_bytes):
    ds, audit = ready_audit(client, app, alice, subgroup_npz_bytes)
    base = f"/v1/audits/{audit}/reviews"
    report = client.get(f"/v1/audits/{audit}", headers=alice).json()["report"]
    sg = report["subgroups"][0]

    def bulk(decision, selection, **extra):
        return client.post(base, headers=alice, json={"decision": decision, "selection": selection, **extra})

    assert client.put(f"{base}/0", headers=alice, json={"decision": "keep"}).status_code == 200
    r = bulk("exclude", {"subgroup": sg["id"], "review": "none"}, tags=["blue-square"], note="not a face")
    assert r.status_code == 200, r.text
    members = client.get(f"/v1/audits/{audit}/samples", headers=alice,
                         params={"subgroup": sg["id"], "limit": 500}).json()["items"]
    decided = {i["index"]: i["review"] for i in members}
    assert r.json() == {"decision": "exclude", "count": sg["n"] - (0 in decided)}
    assert all(d == "exclude" for i, d in decided.items() if i != 0)
    if 0 in decided:  # review: none left the earlier decision alone
        assert decided[0] == "keep"
    listed = reviews(client, alice, audit, decision="exclude", limit=500)["items"]
    assert {i["tags"][0] for i in listed} == {"blue-square"} and {i["note"] for i in listed} == {"not a face"}

    # Indices, and thresholds: every criterion must hold.
    assert bulk("reviewed", {"indices": [1, 2, 2, 5]}).json()["count"] == 3
    r = bulk("keep", {"min_under_representation": 0.9, "label": 1})
    expected = [i for i in client.get(f"/v1/audits/{audit}/samples", headers=alice, params={
        "order": "under_representation", "label": 1, "min_score": 0.9, "limit": 500}).json()["items"]]
    assert r.json()["count"] == len(expected) and all(i["label"] == 1 for i in expected)
    flagged = client.get(f"/v1/audits/{audit}/anomalies", headers=alice,
                         params={"flagged_only": True, "limit": 500}).json()["items"]
    assert bulk("reviewed", {"flagged_only": True}).json()["count"] == len(flagged)
    assert bulk("exclude", {"attribute": ["look:blue"]}).json()["count"] == 15
    assert bulk("keep", {"attribute": ["look:blue"], "review": "exclude", "label": 1}).json()["count"] == 15

    # Selections that name what is not there are refused, naming it; nothing is recorded.
    before = reviews(client, alice, audit)["counts"]
    assert_error(bulk("exclude", {}), 422, "the selection is empty")
    assert_error(bulk("exclude", {"indices": [1, 90, 91]}), 422, f"audit {audit} has no sample 90, 91")
    assert_error(bulk("exclude", {"subgroup": 999}), 422, "has no subgroup 999; its subgroups are")
    assert_error(bulk("exclude", {"attribute": ["colour:red"]}), 422, "unknown attribute(s) colour")
    assert_error(bulk("exclude", {"attribute": ["colour"]}), 422, "selection.attribute")
    assert_error(bulk("drop", {"indices": [1]}), 422, "decision")
    assert_error(bulk("keep", {"indices": []}), 422, "selection.indices")
    assert_error(bulk("keep", {"indices": [-1]}), 422, "selection.indices")
    assert_error(bulk("keep", {"indices": ["1"]}), 422, "selection.indices")
    assert_error(bulk("keep", {"everything": True}), 422, "selection.everything")
    assert_error(bulk("keep", {"min_under_representation": 2}), 422, "min_under_representation")
    assert reviews(client, alice, audit)["counts"] == before


def test_another_owner_gets_the_same_404_as_a_missing_audit(client, app, alice, bob, tiny_npz_bytes):
    ds, audit = ready_audit(client, app, alice, tiny_npz_bytes)
    base = f"/v1/audits/{audit}/reviews"
    assert client.put(f"{base}/1", headers=alice, json={"decision": "exclude"}).status_code == 200
    missing = audit + 1000
    calls = [("PUT", "{}/reviews/1", {"decision": "keep"}), ("DELETE", "{}/reviews/1", None),
             ("POST", "{}/reviews", {"decision": "keep", "selection": {"indices": [1]}}),
             ("GET", "{}/reviews", None), ("GET", "{}/reviews?format=csv", None),
             ("GET", "{}/anomalies?review=exclude", None)]
    for method, path, body in calls:
        for who, audit_id in ((bob, audit), (alice, missing)):
            r = client.request(method, "/v1/audits/" + path.format(audit_id), headers=who, json=body)
            assert_error(r, 404, f"audit {audit_id} not found")
            assert "alice" not in r.text
    # Bob's training cannot exclude by alice's audit either, even on a dataset of his own.
    bobs = upload(client, bob, tiny_npz_bytes).json()["id"]
    assert_error(client.post(f"/v1/datasets/{bobs}/models", headers=bob,
                             json={"exclude_from_audit": audit, **TRAIN_FAST}), 404, f"audit {audit} not found")
    # Nothing bob sent changed alice's decisions.
    items = reviews(client, alice, audit)["items"]
    assert [(i["index"], i["decision"], i["reviewed_by"]) for i in items] == [(1, "exclude", "alice")]


def test_bad_input_is_4xx_with_the_error_shape(client, app, alice, tiny_npz_bytes):
    ds, audit = ready_audit(client, app, alice, tiny_npz_bytes)
    base = f"/v1/audits/{audit}/reviews"

    def put(index, body):
        return client.put(f"{base}/{index}", headers=alice, json=body)

    assert_error(put(48, {"decision": "keep"}), 404, f"audit {audit} has no sample 48; its samples are 0-47")
    assert_error(put(2**31, {"decision": "keep"}), 422, "index")
    assert_error(put("1.0", {"decision": "keep"}), 422, "index")
    assert_error(put(-1, {"decision": "keep"}), 422, "index")
    assert_error(put(1, {"decision": "Exclude"}), 422, "decision")
    assert_error(put(1, {}), 422, "decision")
    assert_error(put(1, {"decision": "keep", "extra": 1}), 422, "extra")
    assert_error(put(1, {"decision": "keep", "note": "nul\x00here"}), 422, "note")
    assert_error(put(1, {"decision": "keep", "note": "x" * 2001}), 422, "note")
    assert_error(put(1, {"decision": "keep", "tags": ["a;b"]}), 422, "tags")
    assert_error(put(1, {"decision": "keep", "tags": ["=cmd"]}), 422, "tags")
    assert_error(put(1, {"decision": "keep", "tags": ["x"] * 17}), 422, "tags")
    assert_error(put(1, {"decision": "keep", "tags": ["a", "a"]}), 422, "tags repeats a")
    r = client.put(f"{base}/1", headers={**alice, "content-type": "application/json"}, content=b"{not json")
    assert_error(r, 422)
    assert_error(client.get(base, headers=alice, params={"decision": "maybe"}), 422, "decision")
    assert_error(client.get(base, headers=alice, params={"limit": 0}), 422, "limit")
    assert_error(client.get(base, headers=alice, params={"after": -1}), 422, "after")
    assert_error(client.get(f"/v1/audits/{audit}/samples", headers=alice, params={"review": "all"}), 422, "review")
    assert reviews(client, alice, audit)["items"] == []

    # An audit still running has nothing to review yet: 409, as for its scores.
    r = client.post(f"/v1/datasets/{ds}/audits", headers=alice, json={"training": TRAIN_FAST})
    pending = r.json()["resource"]["audit_id"]
    assert_error(client.put(f"/v1/audits/{pending}/reviews/1", headers=alice, json={"decision": "keep"}), 409,
                 f"audit {pending} is pending")
    assert_error(client.get(f"/v1/audits/{pending}/reviews", headers=alice), 409)


def test_retraining_without_the_excluded_samples(client, app, alice, settings, tiny_npz_bytes, test_npz_bytes):
    ds, audit = ready_audit(client, app, alice, tiny_npz_bytes)
    other = upload(client, alice, test_npz_bytes).json()["id"]
    models = f"/v1/datasets/{ds}/models"
    body = {"method": "standard", "exclude_from_audit": audit, **TRAIN_FAST}
    assert_error(client.post(models, headers=alice, json=body), 422, f"audit {audit} marks no sample exclude")
    assert client.post(f"/v1/audits/{audit}/reviews", headers=alice, json={
        "decision": "exclude", "selection": {"indices": [4, 9, 30]}}).json()["count"] == 3
    assert client.put(f"/v1/audits/{audit}/reviews/12", headers=alice, json={"decision": "keep"}).status_code == 200

    assert_error(client.post(f"/v1/datasets/{other}/models", headers=alice, json=body), 422,
                 f"audit {audit} is of dataset {ds}, not dataset {other}")
    assert_error(client.post(models, headers=alice, json={**body, "exclude_from_audit": audit + 50}), 404,
                 f"audit {audit + 50} not found")
    assert_error(client.post(models, headers=alice, json={**body, "exclude_from_audit": "1"}), 422,
                 "exclude_from_audit")
    positives = [i["index"] for i in client.get(f"/v1/audits/{audit}/samples", headers=alice,
                                                params={"label": 1, "limit": 500}).json()["items"]]
    assert client.post(f"/v1/audits/{audit}/reviews", headers=alice, json={
        "decision": "exclude", "selection": {"label": 1}}).json()["count"] == len(positives)
    assert_error(client.post(models, headers=alice, json=body), 422, "marks every positive sample exclude")
    assert client.post(f"/v1/audits/{audit}/reviews", headers=alice, json={
        "decision": "reviewed", "selection": {"label": 1, "indices": positives}}).status_code == 200
    assert client.post(f"/v1/audits/{audit}/reviews", headers=alice, json={
        "decision": "exclude", "selection": {"indices": [4, 9, 30]}}).status_code == 200

    r = client.post(models, headers=alice, json=body)
    assert r.status_code == 202, r.text
    model_id = r.json()["resource"]["model_id"]
    # Decisions made after the job was queued do not change what it leaves out.
    client.put(f"/v1/audits/{audit}/reviews/5", headers=alice, json={"decision": "exclude"})
    assert run_jobs(app) == 1
    model = client.get(f"/v1/models/{model_id}", headers=alice).json()
    assert model["status"] == "ready", model
    assert model["options"]["exclude_from_audit"] == audit and model["options"]["excluded_samples"] == 3
    record = json.loads((model_dir(settings, model_id) / "exclusion.json").read_text())
    assert record["excluded"] == [4, 9, 30] and record["n_trained"] == 45 and record["source"] == f"audit {audit}"
    assert json.loads((model_dir(settings, model_id) / "config.json").read_text())["exclusion"]["n_excluded"] == 3
    with app.state.sessions() as session:
        job = session.scalar(select(Job).where(Job.id == model["job_id"]))
        assert job.payload["exclude"] == [4, 9, 30]

    # A model trained without an exclusion does not list the option at all; a model set takes it per member.
    plain = client.post(models, headers=alice, json={"method": "standard", **TRAIN_FAST}).json()["resource"]
    assert "exclude_from_audit" not in client.get(f"/v1/models/{plain['model_id']}", headers=alice).json()["options"]
    r = client.post(f"/v1/datasets/{ds}/model-sets", headers=alice,
                    json={"method": "standard", "exclude_from_audit": audit, "seeds": [0, 1], **TRAIN_FAST})
    assert r.status_code == 202, r.text
    for m in r.json()["resource"]["model_ids"]:
        assert client.get(f"/v1/models/{m}", headers=alice).json()["options"]["excluded_samples"] == 4
