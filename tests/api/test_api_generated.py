"""Generated images of an audit's subgroups through the API and on the audit page, owner-isolated."""
from __future__ import annotations

from .conftest import assert_error
from .test_api_reviews import ready_audit


def test_a_positive_subgroup_serves_its_generated_images(client, app, alice, bob, subgroup_npz_bytes):
    _, audit = ready_audit(client, app, alice, subgroup_npz_bytes)
    subgroups = client.get(f"/v1/audits/{audit}", headers=alice).json()["report"]["subgroups"]
    positive = next(s for s in subgroups if s["class"] == "positive" and s.get("generated_grid"))
    url = f"/v1/audits/{audit}/subgroups/{positive['id']}/generated.png"
    r = client.get(url, headers=alice)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    assert positive["generated_grid"] == url  # the report links it
    negative = next(s for s in subgroups if s["class"] == "negative")
    assert_error(client.get(f"/v1/audits/{audit}/subgroups/{negative['id']}/generated.png", headers=alice), 404,
                 "learns positives only")
    assert_error(client.get(f"/v1/audits/{audit}/subgroups/999/generated.png", headers=alice), 404,
                 "has no subgroup 999")
    assert_error(client.get(url, headers=bob), 404, f"audit {audit} not found")
