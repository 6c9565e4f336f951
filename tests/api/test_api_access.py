"""Authentication, owner isolation on every /v1 route, and the 4xx answers to bad query input."""
from __future__ import annotations

from .conftest import TRAIN_FAST, run_jobs, upload

# --------------------------------------------------------------------------- authentication


def test_no_key_is_401_with_a_bearer_challenge(client, tiny_npz_bytes):
    for method, url in (("GET", "/v1/datasets"), ("GET", "/v1/jobs"), ("GET", "/v1/audits/1"),
                        ("POST", "/v1/datasets/1/models")):
        r = client.request(method, url)
        assert r.status_code == 401, (url, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert "missing API key" in r.json()["detail"]
    r = client.post("/v1/datasets", files={"file": ("tiny.npz", tiny_npz_bytes)})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_malformed_or_wrong_key_is_401(client, alice):
    key = alice["Authorization"].removeprefix("Bearer ")
    _, prefix, secret = key.split("_", 2)
    wrong = {
        "not our format": "Bearer hello",
        "wrong key prefix": f"Bearer xyz_{prefix}_{secret}",
        "unknown prefix": f"Bearer dbk_000000000000_{secret}",
        "wrong secret": f"Bearer dbk_{prefix}_{secret[:-4]}AAAA",
        "truncated": f"Bearer dbk_{prefix}",
    }
    for why, value in wrong.items():
        r = client.get("/v1/datasets", headers={"Authorization": value})
        assert r.status_code == 401, (why, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"detail": "invalid or revoked API key"}, why
    # Another scheme, or a bearer with no token, is as good as no key.
    for value in (f"Basic {key}", "Bearer", "Bearer "):
        r = client.get("/v1/datasets", headers={"Authorization": value})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", value
    assert client.get("/v1/datasets", headers=alice).status_code == 200


def test_health_probes_need_no_key(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready" and r.json()["migration"]


# --------------------------------------------------------------------------- owner isolation


def alice_world(client, app, alice, tiny_npz_bytes) -> dict:
    """Alice's dataset, audit (with the DB-VAE it trained), a standard model and evaluations of both models."""
    ds = upload(client, alice, tiny_npz_bytes, name="alice-private-faces").json()
    r = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST})
    assert r.status_code == 202, r.text
    audit_id, dbvae_id = r.json()["resource"]["audit_id"], r.json()["resource"]["model_id"]
    r = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice, json={"method": "standard", **TRAIN_FAST})
    assert r.status_code == 202, r.text
    model_id = r.json()["resource"]["model_id"]
    assert run_jobs(app) == 2
    evaluations = []
    for m in (model_id, dbvae_id):
        r = client.post(f"/v1/models/{m}/evaluations", headers=alice, json={"dataset_id": ds["id"]})
        assert r.status_code == 202, r.text
        evaluations.append(r.json()["resource"]["evaluation_id"])
    assert run_jobs(app) == 2
    assert all(j["status"] == "succeeded" for j in client.get("/v1/jobs", headers=alice).json())
    audit = client.get(f"/v1/audits/{audit_id}", headers=alice).json()
    assert audit["status"] == "ready" and audit["report"]["figures"]
    return {"dataset": ds["id"], "audit": audit_id, "figure": next(iter(audit["report"]["figures"].values())),
            "model": model_id, "dbvae": dbvae_id, "evaluation": evaluations[0],
            "job": client.get("/v1/jobs", headers=alice).json()[0]["id"]}


def routes(w: dict, queued_job: int) -> list[tuple[str, str, dict | None, int]]:
    """Every /v1 route on one of alice's resources: (method, url, json body, alice's status)."""
    ds, audit, model = w["dataset"], w["audit"], w["model"]
    return [
        ("GET", f"/v1/datasets/{ds}", None, 200),
        ("GET", f"/v1/datasets/{ds}/samples/0/image", None, 200),
        ("GET", f"/v1/audits/{audit}", None, 200),
        ("GET", w["figure"], None, 200),
        ("GET", f"/v1/audits/{audit}/anomalies", None, 200),
        ("GET", f"/v1/audits/{audit}/anomalies?format=csv", None, 200),
        ("GET", f"/v1/audits/{audit}/samples", None, 200),
        ("GET", f"/v1/audits/{audit}/samples?format=csv&order=anomaly_score", None, 200),
        ("GET", f"/v1/models/{model}", None, 200),
        ("GET", f"/v1/evaluations/{w['evaluation']}", None, 200),
        ("GET", f"/v1/models/{w['dbvae']}/compare?baseline={model}&dataset={ds}", None, 200),
        ("GET", f"/v1/jobs/{w['job']}", None, 200),
        ("GET", f"/v1/jobs/{queued_job}", None, 200),
        ("POST", f"/v1/datasets/{ds}/audits", {"model_id": w["dbvae"]}, 202),
        ("POST", f"/v1/datasets/{ds}/models", {"method": "standard", **TRAIN_FAST}, 202),
        ("POST", f"/v1/models/{model}/evaluations", {"dataset_id": ds}, 202),
        ("POST", f"/v1/jobs/{queued_job}/cancel", None, 200),
        ("DELETE", f"/v1/datasets/{ds}", None, 204),  # last: it takes everything else with it
    ]


LISTS = ("/v1/datasets", "/v1/audits", "/v1/models", "/v1/evaluations", "/v1/jobs")


def test_another_owner_gets_404_on_every_route(client, app, alice, bob, settings, tiny_npz_bytes):
    w = alice_world(client, app, alice, tiny_npz_bytes)
    # A queued job, so a refused cancel is about who asks, not about the job having finished.
    r = client.post(f"/v1/models/{w['model']}/evaluations", headers=alice, json={"dataset_id": w["dataset"]})
    queued = r.json()["job"]["id"]
    table = routes(w, queued)

    for method, url, body, _ in table:
        r = client.request(method, url, headers=bob, json=body)
        assert r.status_code == 404, (method, url, r.status_code, r.text)
        assert r.headers["content-type"] == "application/json"
        detail = r.json()["detail"]
        assert detail.endswith("not found"), (url, detail)
        assert str(settings.data_dir) not in r.text and "alice" not in r.text, (url, r.text)
    for url in LISTS:
        assert client.get(url, headers=bob).json() == [], url
    for url in (f"/v1/audits?dataset_id={w['dataset']}", f"/v1/models?dataset_id={w['dataset']}",
                f"/v1/evaluations?model_id={w['model']}", "/v1/jobs?status=queued"):
        assert client.get(url, headers=bob).json() == [], url

    # Nothing bob tried changed alice's world: same counts, the queued job still queued.
    assert len(client.get("/v1/jobs", headers=alice).json()) == 5
    assert client.get(f"/v1/jobs/{queued}", headers=alice).json()["status"] == "queued"

    # The same requests from alice succeed: the 404s were about ownership, not broken routes.
    for method, url, body, expected in table:
        if method == "DELETE":  # alice's POSTs queued jobs on the dataset: cancel them first
            for job in client.get("/v1/jobs?status=queued", headers=alice).json():
                assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice).status_code == 200
        r = client.request(method, url, headers=alice, json=body)
        assert r.status_code == expected, (method, url, r.status_code, r.text)
    assert client.get(f"/v1/jobs/{queued}", headers=alice).json()["status"] == "cancelled"
    assert client.get("/v1/datasets", headers=alice).json() == []


def test_own_model_on_another_owners_dataset_is_404(client, app, alice, bob, tiny_npz_bytes, test_npz_bytes):
    theirs = upload(client, alice, tiny_npz_bytes).json()["id"]
    mine = upload(client, bob, test_npz_bytes).json()["id"]
    r = client.post(f"/v1/datasets/{mine}/models", headers=bob, json={"method": "standard", **TRAIN_FAST})
    model = r.json()["resource"]["model_id"]
    assert run_jobs(app) == 1
    r = client.post(f"/v1/models/{model}/evaluations", headers=bob, json={"dataset_id": theirs})
    assert r.status_code == 404 and r.json() == {"detail": f"dataset {theirs} not found"}
    r = client.get(f"/v1/models/{model}/compare", headers=bob, params={"baseline": model, "dataset": theirs})
    assert r.status_code == 404 and r.json() == {"detail": f"dataset {theirs} not found"}
    assert client.get("/v1/evaluations", headers=bob).json() == []
    assert client.get("/v1/jobs", headers=alice).json() == []
    # The same request on his own dataset is accepted.
    r = client.post(f"/v1/models/{model}/evaluations", headers=bob, json={"dataset_id": mine})
    assert r.status_code == 202, r.text


# --------------------------------------------------------------------------- bad query input


def test_bad_cursor_and_attribute_filters(client, app, alice, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST})
    audit = r.json()["resource"]["audit_id"]
    assert run_jobs(app) == 1
    anomalies, samples = f"/v1/audits/{audit}/anomalies", f"/v1/audits/{audit}/samples"

    for cursor in ("not-a-cursor", "eyJ4IjoxfQ", "%%%"):
        r = client.get(anomalies, headers=alice, params={"cursor": cursor})
        assert r.status_code == 400, (cursor, r.text)
        assert r.json()["detail"].startswith("invalid cursor; pass a page's next_cursor")
    # A good cursor for another ordering names both orders.
    cursor = client.get(anomalies, headers=alice, params={"limit": 5}).json()["next_cursor"]
    assert cursor
    r = client.get(samples, headers=alice, params={"cursor": cursor, "order": "sampling_weight"})
    assert r.status_code == 400
    assert r.json()["detail"] == "this cursor pages through order=anomaly_score, not order=sampling_weight"
    assert client.get(anomalies, headers=alice, params={"cursor": cursor, "limit": 5}).status_code == 200
    r = client.get(anomalies, headers=alice, params={"cursor": cursor, "before": cursor})
    assert r.status_code == 400
    assert r.json()["detail"] == "give cursor (the next page) or before (the previous page), not both"
    r = client.get(samples, headers=alice, params={"before": "not-a-cursor"})
    assert r.status_code == 400 and r.json()["detail"].startswith("invalid cursor")

    for url in (anomalies, samples):
        for fmt in ("json", "csv"):
            r = client.get(url, headers=alice, params={"attribute": "skin_tone", "format": fmt})
            assert r.status_code == 422, (url, fmt, r.text)
            assert r.json()["detail"] == "attribute filter 'skin_tone' must be NAME:VALUE, e.g. skin_tone:dark"
            r = client.get(url, headers=alice, params={"attribute": ["skin_tone:dark", "eye_colour:blue"],
                                                       "format": fmt})
            assert r.status_code == 422, (url, fmt, r.text)
            detail = r.json()["detail"]
            assert detail.startswith("unknown attribute(s) eye_colour to filter on; this audit's dataset has: ")
            known = detail.rsplit(": ", 1)[1].split(", ")
            assert sorted(known) == sorted(ds["attributes"]) and "skin_tone" in known


def test_model_and_dataset_image_sizes_must_match(client, app, alice, tiny_npz_bytes, tmp_path):
    from audit.synth import make_synthetic, save_npz

    small = upload(client, alice, tiny_npz_bytes).json()["id"]
    path = tmp_path / "big.npz"
    save_npz(make_synthetic(8, 8, image_size=32, seed=2), path)
    r = upload(client, alice, path.read_bytes(), filename="big.npz", image_size=32)
    assert r.status_code == 201 and r.json()["image_size"] == 32, r.text
    big = r.json()["id"]
    r = client.post(f"/v1/datasets/{small}/audits", headers=alice, json={"training": TRAIN_FAST})
    model = r.json()["resource"]["model_id"]
    assert run_jobs(app) == 1

    expected = (f"model {model} expects 16px images but dataset {big} was uploaded at 32px; "
                f"upload it again with image_size=16")
    r = client.post(f"/v1/models/{model}/evaluations", headers=alice, json={"dataset_id": big})
    assert r.status_code == 422 and r.json() == {"detail": expected}
    r = client.post(f"/v1/datasets/{big}/audits", headers=alice, json={"model_id": model})
    assert r.status_code == 422 and r.json() == {"detail": expected}
    # Nothing was queued by the refused requests.
    assert client.get("/v1/evaluations", headers=alice).json() == []
    assert [a["dataset_id"] for a in client.get("/v1/audits", headers=alice).json()] == [small]
    assert client.get("/v1/jobs?status=queued", headers=alice).json() == []


def test_a_class_too_small_to_cluster_is_refused_before_any_work(client, app, alice, tmp_path):
    from audit.synth import make_synthetic, save_npz

    path = tmp_path / "lopsided.npz"
    save_npz(make_synthetic(30, 6, image_size=16, seed=3), path)
    ds = upload(client, alice, path.read_bytes(), filename="lopsided.npz").json()["id"]
    r = client.post(f"/v1/datasets/{ds}/audits", headers=alice, json={"training": TRAIN_FAST})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("the negative class has 6 samples, too few to cluster into subgroups")
    assert client.get("/v1/audits", headers=alice).json() == []
    assert client.get("/v1/jobs", headers=alice).json() == [] and client.get("/v1/models", headers=alice).json() == []
