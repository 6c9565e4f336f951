"""A counterfactual test started from the model page in a real browser (headless Chromium): the form sends the
two values as a list, the job's progress turns into a link, and the test's flips and pairs picture show."""
from __future__ import annotations

import re
import time

import httpx
import pytest

from audit.synth import make_synthetic, save_npz

from .conftest import TRAIN_FAST, browser_sign_in
from .test_browser import JOB_TIMEOUT_MS, api_upload

pytestmark = pytest.mark.slow
expect = pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright for Python").expect


def trained_model(server, key: str, dataset_id: int) -> int:
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.post(f"{server.url}/v1/datasets/{dataset_id}/models", headers=auth,
                   json={"method": "standard", "val_fraction": 0, **TRAIN_FAST})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while (job := httpx.get(f"{server.url}{r.json()['job']['url']}", headers=auth).json())["status"] in (
            "queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    return r.json()["resource"]["model_id"]


def test_start_a_counterfactual_test_from_the_model_page(page, live_server, tmp_path):
    key = live_server.new_key("counterfactual")
    data = tmp_path / "lit.npz"
    save_npz(make_synthetic(24, 24, image_size=16, seed=0, balanced=True), data)
    dataset = api_upload(live_server, key, data, "lit faces")
    model = trained_model(live_server, key, dataset["id"])
    browser_sign_in(page, key, f"/models/{model}")
    form = page.locator("form[data-counterfactual-form]")
    form.get_by_label("Attribute").fill("lighting")
    form.get_by_label("From value").fill("bright")
    form.get_by_label("To value (and back)").fill("dim")
    form.get_by_label("Translator epochs").fill("1")
    form.get_by_role("button", name="Start the test").click()
    link = form.get_by_role("link", name=re.compile(r"Show test \d+"))
    expect(link).to_be_visible(timeout=JOB_TIMEOUT_MS)
    link.click()
    details = page.locator("details[data-counterfactual]").first
    expect(details).to_contain_text("lighting bright ↔ dim")
    expect(details).to_contain_text("Decisions flipped (95% interval)")
    expect(details.locator("img")).to_have_attribute("src", re.compile(r"/v1/counterfactuals/\d+/pairs\.png"))
    # The picture loads with the page's cookie.
    loaded = details.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    assert loaded
    page.screenshot(path=str(tmp_path / "model-page.png"), full_page=True)
