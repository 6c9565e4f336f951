"""Review decisions in a real browser (headless Chromium, as tests/web/test_browser.py): a decision on a sample
and on a whole subgroup survives a reload, and "retrain without excluded" leaves them out (the model says so)."""
from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from .conftest import TRAIN_FAST, browser_sign_in
from .test_browser import JOB_TIMEOUT_MS, api_upload

pytestmark = pytest.mark.slow
expect = pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright for Python").expect


def audit_via_api(server, key: str, dataset_id: int) -> int:
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.post(f"{server.url}/v1/datasets/{dataset_id}/audits", headers=auth, json={"training": TRAIN_FAST})
    assert r.status_code == 202, r.text
    job_url, audit_id = r.json()["job"]["url"], r.json()["resource"]["audit_id"]
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while (job := httpx.get(f"{server.url}{job_url}", headers=auth).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    return audit_id


def reviews(server, key: str, audit_id: int) -> list[dict]:
    r = httpx.get(f"{server.url}/v1/audits/{audit_id}/reviews", headers={"Authorization": f"Bearer {key}"},
                  params={"limit": 500})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_review_decisions_survive_a_reload_and_feed_a_retraining(page, live_server, npz_files):
    key = live_server.new_key("reviewer")
    ds = api_upload(live_server, key, npz_files["subgroup"], "faces to review")
    audit = audit_via_api(live_server, key, ds["id"])
    browser_sign_in(page, key, f"/audits/{audit}")

    # One sample: exclude the top anomaly; its badge changes at once, and after a reload it is still excluded.
    row = page.locator("table.anomalies tbody tr").first
    index = row.locator("th").inner_text()
    row.get_by_label(f"Decision on sample {index}", exact=True).select_option("exclude")
    row.get_by_role("button", name=f"Save the decision on sample {index}").click()
    expect(row.locator("[data-review-status]")).to_have_text("saved")
    expect(row.locator("[data-review-state]")).to_have_text("exclude")
    page.reload()
    row = page.locator("table.anomalies tbody tr").first
    expect(row.locator("th")).to_have_text(index)
    expect(row.get_by_label(f"Decision on sample {index}", exact=True)).to_have_value("exclude")
    expect(row.locator("[data-review-state]")).to_have_text("exclude")
    expect(page.locator("#review-counts")).to_contain_text("exclude 1")

    # A whole subgroup: mark it keep (samples already decided keep theirs); the page reloads with the counts.
    form = page.get_by_role("form", name=re.compile(r"Review decision for subgroup \d+")).first
    form.locator("select[name=decision]").select_option("keep")
    with page.expect_navigation():
        form.get_by_role("button", name=re.compile(r"Mark subgroup \d+")).click()
    expect(page.locator("#review-counts")).to_contain_text("exclude 1")
    kept = int(re.search(r"keep (\d+)", page.locator("#review-counts").inner_text()).group(1))
    assert kept >= 1

    # The latent map: a legend entry selects samples; the form under the grid marks exactly those (the ones
    # decided already keep their decision).
    decided = {r["index"] for r in reviews(live_server, key, audit)}
    map_form = page.locator("form[data-map-review]")
    expect(map_form).to_be_hidden()
    page.locator("[data-map-legend] [data-legend-key]").last.click()
    expect(map_form).to_be_visible()
    selected = set(json.loads(map_form.get_attribute("data-selection"))["indices"])
    expect(map_form.locator("[data-map-review-label]")).to_contain_text(f"Mark the {len(selected)} selected samples")
    map_form.locator("select[name=decision]").select_option("reviewed")
    with page.expect_navigation():
        map_form.get_by_role("button", name="Mark the selection").click()
    now = {r["index"]: r["decision"] for r in reviews(live_server, key, audit)}
    assert {i for i, d in now.items() if d == "reviewed"} == selected - decided

    # Filter the table on review state.
    page.get_by_label("Review state").select_option("exclude")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"review=exclude"))
    assert page.locator("table.anomalies tbody th").all_inner_texts() == [index]

    # Retrain without the excluded sample from the dataset page; the model page says what was left out.
    page.goto(f"/datasets/{ds['id']}")
    form = page.locator("form[data-what=retraining]")
    expect(form.get_by_label("Exclusions of")).to_have_value(str(audit))
    form.get_by_label("Method").select_option("standard")
    form.get_by_label("Epochs").fill(str(TRAIN_FAST["epochs"]))
    form.get_by_label("Batch size").fill(str(TRAIN_FAST["batch_size"]))
    form.get_by_label("Latent dimensions").fill(str(TRAIN_FAST["latent_dim"]))
    form.get_by_role("button", name="Retrain without excluded").click()
    link = form.get_by_role("link", name=re.compile(r"Open model \d+"))
    expect(link).to_be_visible(timeout=JOB_TIMEOUT_MS)
    link.click()
    page.wait_for_url(re.compile(r"/models/\d+$"))
    expect(page.locator("[data-exclusion]")).to_contain_text(f"Trained without the 1 samples that audit {audit}")
    expect(page.get_by_role("row", name=re.compile("excluded_samples"))).to_contain_text("1")
