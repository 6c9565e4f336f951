"""The dataset page names each job by what it makes, labels an audit's own model, and lists work per dataset."""
from __future__ import annotations

import re

from .conftest import TRAIN_FAST, run_jobs, sign_in, upload


def test_jobs_are_named_by_what_they_make_and_can_be_cancelled(web, app, alice, tiny_npz_bytes):
    ds = upload(web, alice, tiny_npz_bytes, name="tiny faces").json()
    audit = web.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST}).json()
    own_model = audit["resource"]["model_id"]
    trained = web.post(f"/v1/datasets/{ds['id']}/models", headers=alice,
                       json={"method": "dbvae", "density": "gmm", **TRAIN_FAST}).json()
    model_id = trained["resource"]["model_id"]
    assert trained["job"]["queue_position"] == 2 and audit["job"]["queue_position"] == 1
    sign_in(web, alice)
    page = web.get(f"/datasets/{ds['id']}").text
    assert f">DB-VAE model {model_id}, gmm, 1 epoch</label>" in page
    assert (f">audit {audit['resource']['audit_id']}, histogram, training its own DB-VAE model {own_model} "
            f"(1 epoch)</label>") in page
    assert page.count('data-cancel aria-label="Cancel ') >= 2 and "(job " not in page
    assert "No audits yet" not in page and "data-refresh-lists" in page
    # The datasets list: the work on each dataset, by status.
    listing = web.get("/").text
    assert re.search(r'<td data-audits><span class="tag status-pending">1 pending</span></td>', listing)
    assert re.search(r'<td data-models><span class="tag status-pending">2 pending</span>.*2 jobs running or '
                     r'queued', listing)
    assert run_jobs(app) == 2
    page = web.get(f"/datasets/{ds['id']}").text
    # The audit's own model says so; the audit form offers the ready DB-VAE models of this dataset.
    assert f'trained by <a href="/audits/{audit["resource"]["audit_id"]}">audit' in page
    assert "trained its own DB-VAE" in page
    options = re.findall(r'<option value="(\d+)">DB-VAE model \d+, (\w+), 1 epoch</option>', page)
    assert sorted(int(i) for i, _ in options) == sorted([own_model, model_id])
    second = web.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"model_id": model_id}).json()
    page = web.get(f"/datasets/{ds['id']}").text
    assert f">audit {second['resource']['audit_id']}, histogram, with DB-VAE model {model_id}</label>" in page
    assert '<span class="tag status-ready">2 ready</span>' in web.get("/").text
