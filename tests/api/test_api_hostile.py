"""Hostile input to the HTTP API: each case from the security probe gets a 4xx naming the problem,
never a 500, and leaves nothing stored or on disk. Runs on SQLite and on PostgreSQL.

The loaders' own hostile files (HDF5 external storage, decoded-size bombs, zip bombs) are in
tests/test_loaders_hostile.py; job memory, killed workers, races and cancel in test_api_job_safety.py.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from .conftest import TRAIN_FAST, assert_error, rng_images, run_jobs, upload
from .test_api_datasets import assert_refused, npz_bytes

MAX_ID = 2**31 - 1


def ok_npz(**attrs) -> bytes:
    labels = np.array([1] * 12 + [0] * 12)
    return npz_bytes(images=rng_images(24), labels=labels, **{f"attr_{k}": v for k, v in attrs.items()})


# --------------------------------------------------------------------------- multipart floods


def multipart(parts: list[tuple[str, bytes, str | None]], boundary: str = "XyZ",
              padding_headers: int = 0) -> tuple[bytes, dict]:
    body = io.BytesIO()
    pad = "".join(f"X-Pad-{i}: {'p' * 3000}\r\n" for i in range(padding_headers))
    for name, value, filename in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body.write(f"--{boundary}\r\nContent-Disposition: {disp}\r\n{pad}\r\n".encode() + value + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize("case", ["too-many-parts", "field-too-long", "unknown-field", "field-twice",
                                  "huge-part-headers", "field-not-utf8"])
def test_form_floods_are_refused_early(client, alice, settings, tiny_npz_bytes, case):
    file_part = ("file", tiny_npz_bytes, "tiny.npz")
    parts, status, fragment = {
        "too-many-parts": ([file_part, ("name", b"x", None), ("positive", b"p", None)], 400, "more than 2 parts"),
        "field-too-long": ([file_part, ("name", b"n" * 5000, None)], 422, "'name' is over 4096 bytes"),
        "unknown-field": ([file_part, ("padding", b"x", None)], 422, "unknown form field 'padding'"),
        "field-twice": ([file_part, ("name", b"a", None), ("name", b"b", None)], 422, "sent more than once"),
        "huge-part-headers": ([file_part, ("name", b"x", None)], 400, "headers are over 8192 bytes"),
        "field-not-utf8": ([file_part, ("name", b"\xff\xfe", None)], 422, "'name' is not UTF-8"),
    }[case]
    # Every legitimate upload has at most 4 parts, and unknown or repeated names are refused first;
    # the part count is the last line of defence, so it is exercised with a lowered limit.
    settings.max_form_parts = 2 if case == "too-many-parts" else settings.max_form_parts
    # Three header lines of 3,000 bytes: each under python-multipart's per-line limit, together over ours.
    body, headers = multipart(parts, padding_headers=3 if case == "huge-part-headers" else 0)
    r = client.post("/v1/datasets", headers={**alice, **headers}, content=body)
    assert_refused(r, status, fragment, client, alice, settings)


def test_flood_limits_come_from_settings(app, client, alice, settings, tiny_npz_bytes):
    settings.max_form_field_bytes = 100
    body, headers = multipart([("file", tiny_npz_bytes, "tiny.npz"), ("name", b"n" * 101, None)])
    r = client.post("/v1/datasets", headers={**alice, **headers}, content=body)
    assert_refused(r, 422, "'name' is over 100 bytes", client, alice, settings)


# --------------------------------------------------------------------------- text fields of an upload


@pytest.mark.parametrize("fields, fragment", [
    ({"image_size": "\u00b2"}, "image_size must be a whole number"),
    ({"image_size": "\u2460"}, "image_size must be a whole number"),
    ({"image_size": "0"}, "image_size must be a multiple of 16 between 16 and 512, got 0"),
    ({"image_size": "-16"}, "image_size must be a whole number"),
    ({"image_size": "99999999999"}, "image_size must be a whole number"),
    ({"name": "a\x00b"}, "contains a control character"),
    ({"name": "x" * 256}, "name is 256 characters long; keep it to 255"),
    ({"positive": "face\x00"}, "contains a control character"),
])
def test_bad_text_fields_are_refused(client, alice, settings, tiny_npz_bytes, fields, fragment):
    r = upload(client, alice, tiny_npz_bytes, **fields)
    assert_refused(r, 422, fragment, client, alice, settings)


@pytest.mark.parametrize("filename, status, fragment", [
    ("ti\x00ny.npz", 422, "contains a control character"),
    ("x" * 300 + ".npz", 422, "characters long; keep it to 255"),
    ("notes.txt", 415, "is not a dataset file"),
    ("data.pkl", 415, "is not a dataset file"),
])
def test_bad_file_names_are_refused(client, alice, settings, tiny_npz_bytes, filename, status, fragment):
    body, headers = multipart([("file", tiny_npz_bytes, filename)])
    r = client.post("/v1/datasets", headers={**alice, **headers}, content=body)
    assert_refused(r, status, fragment, client, alice, settings)


def test_not_multipart_is_415(client, alice, settings):
    r = client.post("/v1/datasets", headers={**alice, "Content-Type": "application/json"}, content=b"{}")
    assert_refused(r, 415, "multipart/form-data", client, alice, settings)


def test_unicode_name_is_kept_as_sent(client, alice, tiny_npz_bytes):
    r = upload(client, alice, tiny_npz_bytes, name="visages \u00e9t\u00e9 \U0001f600")
    assert r.status_code == 201 and r.json()["name"] == "visages \u00e9t\u00e9 \U0001f600"


# --------------------------------------------------------------------------- ids


BAD_IDS = [str(MAX_ID + 1), str(2**63), str(2**64), "1.0", "+1", "1e3", "-1", "0", "\u00b2", "0x1", "1 "]


def id_routes(ds: int) -> list[tuple[str, str]]:
    return [("GET", "/v1/datasets/{}"), ("DELETE", "/v1/datasets/{}"), ("GET", "/v1/datasets/{}/samples/0/image"),
            ("GET", f"/v1/datasets/{ds}/samples/{{}}/image"), ("GET", "/v1/audits/{}"),
            ("GET", "/v1/audits/{}/anomalies"), ("GET", "/v1/audits/{}/samples"),
            ("GET", "/v1/audits/{}/figures/x.png"), ("GET", "/v1/models/{}"), ("GET", "/v1/evaluations/{}"),
            ("GET", "/v1/jobs/{}"), ("POST", "/v1/jobs/{}/cancel"), ("GET", "/v1/audits?dataset_id={}"),
            ("GET", "/v1/models?dataset_id={}"), ("GET", "/v1/evaluations?model_id={}"),
            ("GET", f"/v1/models/{{}}/compare?baseline=1&dataset={ds}"), ("GET", "/v1/models/1/compare?baseline={}&dataset=1"),
            ("GET", "/datasets/{}"), ("GET", "/audits/{}"), ("GET", "/models/{}"), ("GET", "/compare?model={}")]


def test_out_of_range_and_non_integer_ids_are_4xx(client, alice, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes).json()["id"]
    client.cookies.set("debias_key", alice["Authorization"].split()[1])  # the web pages sign in by cookie
    for method, template in id_routes(ds):
        for bad in BAD_IDS:
            if bad == "0" and "/samples/{}" in template:
                continue  # sample indexes start at 0
            url = template.format(bad)
            r = client.request(method, url, headers=alice, follow_redirects=False)
            assert r.status_code in (404, 422), (method, url, r.status_code, r.text[:200])
    # `1.0` is not dataset 1: nothing was deleted.
    assert client.get(f"/v1/datasets/{ds}", headers=alice).status_code == 200
    r = client.delete(f"/v1/datasets/{ds}.0", headers=alice)
    assert_error(r, 422, "whole number")
    assert client.get(f"/v1/datasets/{ds}", headers=alice).status_code == 200


@pytest.mark.parametrize("body", ['{"dataset_id": 2147483648}', '{"dataset_id": 1.5}', '{"dataset_id": "1"}',
                                  '{"dataset_id": true}', '{"dataset_id": 1e400}', '{"dataset_id": -1}'])
def test_ids_in_json_bodies(client, alice, tiny_npz_bytes, body):
    upload(client, alice, tiny_npz_bytes)
    r = client.post("/v1/models/1/evaluations", headers={**alice, "Content-Type": "application/json"},
                    content=body)
    assert_error(r, 422, "dataset_id")


def test_audit_model_id_out_of_range(client, alice, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes).json()["id"]
    for model_id in (2**31, 2**63, 2**70):
        r = client.post(f"/v1/datasets/{ds}/audits", headers=alice, json={"model_id": model_id})
        assert_error(r, 422, "model_id")
    assert client.get("/v1/jobs", headers=alice).json() == []


# --------------------------------------------------------------------------- numbers in job bodies


@pytest.mark.parametrize("raw, fragment", [
    ('{"seed": -1}', "seed"), ('{"seed": 18446744073709551616}', "seed"), ('{"seed": 1e30}', "seed"),
    ('{"lr": NaN}', "lr: Input should be a finite number"), ('{"lr": Infinity}', "lr"),
    ('{"kl_weight": -Infinity}', "kl_weight"), ('{"kl_weight": 1e308}', "kl_weight"),
    ('{"strength": NaN}', "strength"), ('{"epochs": 1e9}', "epochs"), ('{"batch_size": 1}', "batch_size"),
    ('{"latent_dim": 0}', "latent_dim"), ('{"nonsense": 1}', "nonsense"), ('[1, 2]', "request"),
    ('{"lr": 1', "JSON"), ('{"error_schedule": "linear"}', "error_schedule"),
    ('{"val_fraction": 0.6}', "val_fraction"), ('{"val_fraction": -0.1}', "val_fraction"),
    # Rules across fields, which the OpenAPI document cannot state (see test_api_schema.NOT_CHECKED).
    ('{"epochs": 2, "error_epoch": 2, "error_upweight": 5}', "error_epoch (2) must be less than epochs (2)"),
    ('{"mix_groups": 0.5, "error_upweight": 0}', "mix_groups mixes across the error set"),
    ('{"method": "standard", "decoder": "adversarial"}', "an adversarial decoder needs a decoder"),
    ('{"decoder": "sharp"}', "decoder"), ('{"adversarial_weight": 0}', "adversarial_weight"),
])
def test_bad_numbers_in_training_options(client, alice, tiny_npz_bytes, raw, fragment):
    ds = upload(client, alice, tiny_npz_bytes).json()["id"]
    r = client.post(f"/v1/datasets/{ds}/models", headers={**alice, "Content-Type": "application/json"}, content=raw)
    assert_error(r, 422, fragment)
    assert client.get("/v1/jobs", headers=alice).json() == [] and client.get("/v1/models", headers=alice).json() == []


@pytest.mark.parametrize("raw", ['{"anomaly_threshold": NaN}', '{"anomaly_threshold": Infinity}',
                                 '{"training": {"kl_weight": NaN}}', '{"strength": 1e300}'])
def test_bad_numbers_in_audit_options(client, alice, tiny_npz_bytes, raw):
    ds = upload(client, alice, tiny_npz_bytes).json()["id"]
    r = client.post(f"/v1/datasets/{ds}/audits", headers={**alice, "Content-Type": "application/json"}, content=raw)
    assert r.status_code == 422, r.text
    assert client.get("/v1/jobs", headers=alice).json() == [] and client.get("/v1/audits", headers=alice).json() == []


# --------------------------------------------------------------------------- attributes end to end


@pytest.mark.slow
def test_hostile_attributes_filters_and_csv(client, app, alice, tiny_npz_bytes):
    """Quotes in names, NaN values, formula text: stored, filtered and exported safely on every backend."""
    # 24 per class: the audit clusters a class of at least 20 (2 x min_subgroup_size).
    quoted = np.array(["x", "y"] * 24)
    with_nan = np.array([0.5, np.nan] * 24)
    formula = np.array(["=HYPERLINK(\"http://evil\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"] * 12)
    content = npz_bytes(images=rng_images(48), labels=np.array([1, 0] * 24), **{
        'attr_a"b': quoted, "attr_score": with_nan, "attr_note": formula})
    ds = upload(client, alice, content).json()
    assert ds["attributes"]['a"b'] == {"x": 24, "y": 24}
    r = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST})
    assert r.status_code == 202, r.text
    audit = r.json()["resource"]["audit_id"]
    assert run_jobs(app) == 1
    assert client.get(f"/v1/audits/{audit}", headers=alice).json()["status"] == "ready"

    def listed(*filters: str) -> list[dict]:
        params = [("attribute", f) for f in filters] + [("limit", "500")]
        r = client.get(f"/v1/audits/{audit}/samples", headers=alice, params=params)
        assert r.status_code == 200, r.text
        return r.json()["items"]

    assert len(listed('a"b:x')) == 24 and all(i["attributes"]['a"b'] == "x" for i in listed('a"b:x'))
    assert len(listed("score:0.5")) == 24  # NaN became missing, never the text "nan"
    assert all(i["attributes"]["score"] is None for i in listed() if i["index"] % 2)
    for bad in ("note:a\x00b", "no\x00te:x", "note:" + "z" * 2000):
        r = client.get(f"/v1/audits/{audit}/samples", headers=alice, params={"attribute": bad})
        assert_error(r, 422, "NUL character or is over")
    for bad in ("nan", "inf", "-inf"):
        r = client.get(f"/v1/audits/{audit}/samples", headers=alice, params={"min_score": bad})
        assert_error(r, 422, "min_score must be a finite number")

    # Discovery travels with the scores: sortable by under_representation, filterable by subgroup.
    report = client.get(f"/v1/audits/{audit}", headers=alice).json()["report"]
    assert report["subgroups"] and all(client.get(s["grid"], headers=alice).status_code == 200
                                       for s in report["subgroups"] if s["grid"])
    ranked = client.get(f"/v1/audits/{audit}/samples", headers=alice,
                        params={"order": "under_representation", "limit": 500}).json()["items"]
    scores = [i["under_representation"] for i in ranked]
    assert len(scores) == 48 and scores == sorted(scores, reverse=True)
    first = report["subgroups"][0]
    members = client.get(f"/v1/audits/{audit}/samples", headers=alice,
                         params={"subgroup": first["id"], "limit": 500}).json()["items"]
    assert len(members) == first["n"] and {i["subgroup"] for i in members} == {first["id"]}

    csv_text = client.get(f"/v1/audits/{audit}/samples", headers=alice, params={"format": "csv"}).text
    for cell in ("'=HYPERLINK", "'+cmd|", "'-2+3", "'@SUM(A1)"):
        assert cell in csv_text, cell
    assert "\n=" not in csv_text and ",=" not in csv_text and ",+" not in csv_text and ",@" not in csv_text


def test_csv_cells_are_neutralised():
    from audit.csvsafe import safe_cell

    for text in ("=1+1", "+1", "-1", "@x", "\tx", "\rx"):
        assert safe_cell(text) == "'" + text
    assert safe_cell(-1.5) == -1.5 and safe_cell("plain") == "plain" and safe_cell(None) is None


# --------------------------------------------------------------------------- cursors


def forged_cursor(**data) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.slow
def test_cursors_are_bound_to_their_audit_and_finite(client, app, alice, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes).json()["id"]
    audits = [client.post(f"/v1/datasets/{ds}/audits", headers=alice, json={"training": TRAIN_FAST})
              .json()["resource"]["audit_id"] for _ in range(2)]
    assert run_jobs(app) == 2
    first = client.get(f"/v1/audits/{audits[0]}/anomalies", headers=alice, params={"limit": 2}).json()
    cursor = first["next_cursor"]
    r = client.get(f"/v1/audits/{audits[1]}/anomalies", headers=alice, params={"cursor": cursor})
    assert_error(r, 400, "another audit's list")
    for bad in [forged_cursor(a=audits[0], o="anomaly_score", v=v, i=0) for v in ("NaN", None, "x")] + [
            forged_cursor(a=audits[0], o="anomaly_score", v=1.0, i=i) for i in (-1, 2**40, 1.5)] + [
            "NaN", "x" * 600, "\u00e9t\u00e9"]:
        r = client.get(f"/v1/audits/{audits[0]}/anomalies", headers=alice, params={"cursor": bad})
        assert_error(r, 400, "invalid cursor")
    nan_cursor = "eyJhIjoxLCJvIjoiYW5vbWFseV9zY29yZSIsInYiOk5hTiwiaSI6MH0"  # {"v":NaN} as Python's json writes it
    r = client.get(f"/v1/audits/{audits[0]}/anomalies", headers=alice, params={"cursor": nan_cursor})
    assert r.status_code == 400


# --------------------------------------------------------------------------- CSRF, methods, error shape


@pytest.mark.parametrize("origin, allowed", [
    ("http://testserver", True), ("http://testserver:80", True), ("https://testserver", False),
    ("http://testserver:8080", False), ("http://evil.example", False), ("null", False),
    ("http://testserver:99999", False), ("javascript://testserver", False),
])
def test_cookie_requests_must_match_scheme_host_and_port(client, alice, tiny_npz_bytes, origin, allowed):
    ds = upload(client, alice, tiny_npz_bytes).json()["id"]
    client.cookies.set("debias_key", alice["Authorization"].split()[1])
    r = client.delete(f"/v1/datasets/{ds}", headers={"Origin": origin})
    assert r.status_code == (204 if allowed else 403), (origin, r.text)


def test_methods_and_allow_header(client, alice, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes).json()["id"]
    r = client.options(f"/v1/datasets/{ds}", headers=alice)
    assert r.status_code == 204 and r.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH"
    r = client.put(f"/v1/datasets/{ds}", headers=alice)
    assert_error(r, 405, "Method Not Allowed")
    assert r.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH"
    assert client.options("/v1/datasets", headers=alice).headers["allow"] == "GET, HEAD, OPTIONS, POST"


def test_openapi_documents_one_error_shape(client):
    doc = client.get("/openapi.json").json()
    assert doc["components"]["schemas"]["ErrorOut"]["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    upload_op = doc["paths"]["/v1/datasets"]["post"]["responses"]
    assert {"400", "401", "404", "413", "415", "422"} <= set(upload_op)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                for status in ("401", "404", "422"):
                    ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorOut"), (path, method, status)


def test_validation_errors_are_one_string(client, alice):
    r = client.get("/v1/audits/1/anomalies", headers=alice, params={"limit": "lots", "label": "7"})
    assert_error(r, 422, "limit:", "label:")
