"""Model sets in the service: one model per seed, trained by one job each, compared set against set by seed."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from api.tables import TrainedModel

from .conftest import TRAIN_FAST, assert_error, run_jobs, upload


def _datasets(client, alice, tiny_npz_bytes, test_npz_bytes) -> tuple[int, int]:
    train = upload(client, alice, tiny_npz_bytes, name="train").json()["id"]
    test = upload(client, alice, test_npz_bytes, filename="test.npz", name="test").json()["id"]
    return train, test


def _create_set(client, headers, dataset_id: int, method: str, seeds=(0, 1)) -> dict:
    r = client.post(f"/v1/datasets/{dataset_id}/model-sets", headers=headers,
                    json={"method": method, "seeds": list(seeds), **TRAIN_FAST})
    assert r.status_code == 202, r.text
    return r.json()


def test_model_sets_train_per_seed_and_compare_paired_by_seed(client, app, alice, bob, tiny_npz_bytes,
                                                              test_npz_bytes):
    train, test = _datasets(client, alice, tiny_npz_bytes, test_npz_bytes)
    created = {m: _create_set(client, alice, train, m) for m in ("standard", "dbvae")}
    for m, body in created.items():
        assert len(body["jobs"]) == 2 and len(body["resource"]["model_ids"]) == 2
        s = client.get(body["resource"]["url"], headers=alice).json()
        assert s["status"] == "pending" and s["seeds"] == [0, 1] and s["method"] == m
        assert [x["seed"] for x in s["members"]] == [0, 1]
        model = client.get(f"/v1/models/{s['members'][1]['model_id']}", headers=alice).json()
        assert model["options"]["seed"] == 1 and model["model_set_id"] == s["id"]
    assert run_jobs(app) == 4
    sets = {m: client.get(b["resource"]["url"], headers=alice).json() for m, b in created.items()}
    assert all(s["status"] == "ready" for s in sets.values())

    # Not evaluated yet: 409 naming every POST to make.
    url = f"/v1/model-sets/{sets['dbvae']['id']}/compare"
    params = {"baseline_set": sets["standard"]["id"], "dataset": test}
    r = client.get(url, headers=alice, params=params)
    assert_error(r, 409, *(f"POST /v1/models/{x['model_id']}/evaluations" for s in sets.values()
                            for x in s["members"]))

    for s in sets.values():
        for x in s["members"]:
            r = client.post(f"/v1/models/{x['model_id']}/evaluations", headers=alice,
                            json={"dataset_id": test, "group_by": ["skin_tone"]})
            assert r.status_code == 202, r.text
    assert run_jobs(app) == 4

    r = client.get(url, headers=alice, params=params)
    assert r.status_code == 200, r.text
    cmp = r.json()
    assert cmp["seeds"] == [0, 1] and "seed" in cmp["pairing"]
    assert cmp["sentence"].startswith(f"model set {sets['dbvae']['id']} (dbvae)'s worst group")
    assert "McNemar p" in cmp["sentence"]
    n = cmp["paired"]["n"]
    assert n == 2 * 24  # two member pairs x 24 test images
    assert cmp["paired"]["pairing"]["mode"] == "seed-matched"
    across = cmp["across_seeds"]
    for side, members in (("model_set", cmp["model_set"]["members"]), ("baseline_set", cmp["baseline_set"]["members"])):
        for key in ("worst_group_accuracy", "overall_accuracy"):
            stat = across[side][key]
            values = [m[key] for m in members]
            assert stat["n"] == 2 and stat["mean"] == pytest.approx(sum(values) / 2)
            assert stat["sd"] is not None and stat["sd"] >= 0
        assert across[side]["seeds"] == [0, 1]
    for key in ("worst_group_accuracy", "overall_accuracy"):
        assert across["difference_of_means"][key] == pytest.approx(
            across["model_set"][key]["mean"] - across["baseline_set"][key]["mean"])

    # Another owner sees none of it.
    assert_error(client.get(f"/v1/model-sets/{sets['dbvae']['id']}", headers=bob), 404, "not found")
    assert_error(client.get(url, headers=bob, params=params), 404, "not found")
    bob_test = upload(client, bob, test_npz_bytes, filename="test.npz").json()["id"]
    assert_error(client.get(url, headers=alice, params={**params, "dataset": bob_test}), 404, "not found")
    r = client.post(f"/v1/datasets/{train}/model-sets", headers=bob, json={"seeds": [0], **TRAIN_FAST})
    assert_error(r, 404, "not found")


@pytest.mark.parametrize("seeds, fragment", [
    ([0, 1, 0], "repeats 0"),
    ([], "seeds"),
    (list(range(11)), "seeds"),
    ([-1], "seeds"),
    ([2**31], "seeds"),
    (["1"], "seeds"),
])
def test_bad_seeds_are_refused(client, alice, tiny_npz_bytes, seeds, fragment):
    train = upload(client, alice, tiny_npz_bytes).json()["id"]
    r = client.post(f"/v1/datasets/{train}/model-sets", headers=alice, json={"seeds": seeds, **TRAIN_FAST})
    assert_error(r, 422, fragment)


def test_seed_instead_of_seeds_and_no_partial_set(client, app, alice, tiny_npz_bytes):
    train = upload(client, alice, tiny_npz_bytes).json()["id"]
    r = client.post(f"/v1/datasets/{train}/model-sets", headers=alice, json={"seed": 3, "seeds": [0]})
    assert_error(r, 422, "not seed")
    assert_error(client.post(f"/v1/datasets/{train}/model-sets", headers=alice, json={**TRAIN_FAST}), 422, "seeds")
    # Refused by the memory limit: nothing stored, no job queued.
    app.state.settings.max_job_memory = 1 << 20
    r = client.post(f"/v1/datasets/{train}/model-sets", headers=alice, json={"seeds": [0, 1], **TRAIN_FAST})
    assert_error(r, 422, "memory")
    assert client.get("/v1/models", headers=alice).json() == []
    assert client.get("/v1/jobs", headers=alice).json() == []
    assert_error(client.get("/v1/model-sets/1", headers=alice), 404, "not found")


def test_sets_without_a_common_seed_are_refused(client, app, alice, tiny_npz_bytes, test_npz_bytes):
    train, test = _datasets(client, alice, tiny_npz_bytes, test_npz_bytes)
    a = _create_set(client, alice, train, "standard", seeds=[0])["resource"]["model_set_id"]
    b = _create_set(client, alice, train, "standard", seeds=[1])["resource"]["model_set_id"]
    # The seeds are checked first (422); then the members must be trained (409).
    r = client.get(f"/v1/model-sets/{a}/compare", headers=alice, params={"baseline_set": b, "dataset": test})
    assert_error(r, 422, "share no seed")
    r = client.get(f"/v1/model-sets/{a}/compare", headers=alice, params={"baseline_set": a, "dataset": test})
    assert_error(r, 409, "not ready")
    # A member that failed fails the set.
    with app.state.sessions() as session:
        member = session.scalars(select(TrainedModel).where(TrainedModel.model_set_id == b)).one()
        member.status = "failed"
        session.commit()
    assert client.get(f"/v1/model-sets/{b}", headers=alice).json()["status"] == "failed"
    assert client.get(f"/v1/model-sets/{a}", headers=alice).json()["status"] == "pending"


def test_deleting_the_dataset_removes_its_model_sets(client, app, alice, tiny_npz_bytes):
    train = upload(client, alice, tiny_npz_bytes).json()["id"]
    set_id = _create_set(client, alice, train, "standard", seeds=[0])["resource"]["model_set_id"]
    assert run_jobs(app) == 1
    r = client.delete(f"/v1/datasets/{train}", headers=alice)
    assert r.status_code in (200, 204), r.text
    assert_error(client.get(f"/v1/model-sets/{set_id}", headers=alice), 404, "not found")
