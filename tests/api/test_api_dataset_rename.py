"""PATCH /v1/datasets/{id}: rename, owner-isolated, refused names in the documented error shape."""
from __future__ import annotations

from .conftest import assert_error, upload


def test_rename_a_dataset(client, alice, bob, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes, name="before").json()
    r = client.patch(f"/v1/datasets/{ds['id']}", headers=alice, json={"name": "after ünïcode"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "after ünïcode" and r.json()["n_samples"] == ds["n_samples"]
    assert client.get(f"/v1/datasets/{ds['id']}", headers=alice).json()["name"] == "after ünïcode"
    # Another owner's dataset is not found (not forbidden): its existence is not disclosed.
    assert_error(client.patch(f"/v1/datasets/{ds['id']}", headers=bob, json={"name": "mine"}), 404)
    assert_error(client.patch("/v1/datasets/999999", headers=alice, json={"name": "x"}), 404)
    # Refused, never trimmed or altered: blank, control characters, too long, unknown fields, no body.
    for body, status, fragment in (({"name": "   "}, 422, "blank"), ({"name": "a\nb"}, 422, "name: is blank or contains a control character"),
                                   ({"name": "x" * 256}, 422, "name"), ({"name": "x", "owner_id": 2}, 422, "owner_id"),
                                   ({}, 422, "name")):
        assert_error(client.patch(f"/v1/datasets/{ds['id']}", headers=alice, json=body), status, fragment)
    assert client.get(f"/v1/datasets/{ds['id']}", headers=alice).json()["name"] == "after ünïcode"
    assert_error(client.patch(f"/v1/datasets/{ds['id']}", json={"name": "anon"}), 401)
