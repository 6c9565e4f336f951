"""In headless Chromium: Cancel on a running job, and no two text boxes of any chart overlap at 1280px or 390px."""
from __future__ import annotations

import time

import httpx
import pytest

from .conftest import TRAIN_FAST, browser_sign_in
from .test_browser import JOB_TIMEOUT_MS, api_upload

pytestmark = pytest.mark.slow
expect = pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright for Python").expect

# Every <text> of every drawn chart, its getBBox mapped to the page (transforms included); pairs that overlap.
OVERLAPS = """() => {
  const boxes = [];
  document.querySelectorAll("svg.chart").forEach((svg, c) => {
    if (!svg.getBoundingClientRect().width) return;        // a drawing hidden at this width
    svg.querySelectorAll("text").forEach(t => {
      const b = t.getBBox(), m = t.getScreenCTM();
      if (!b.width || !m) return;
      const p = [[b.x, b.y], [b.x + b.width, b.y + b.height]].map(([x, y]) => new DOMPoint(x, y).matrixTransform(m));
      boxes.push({c, s: t.textContent, x0: p[0].x, y0: p[0].y, x1: p[1].x, y1: p[1].y});
    });
  });
  const out = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    if (a.c !== b.c) continue;
    const w = Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0), h = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
    if (w > 0.5 && h > 0.5) out.push(`${a.s} / ${b.s}`);
  }
  return {texts: boxes.length, overlaps: out};
}"""


def wait_done(server, key: str, job_url: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while (job := httpx.get(f"{server.url}{job_url}", headers=auth).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "succeeded", job


def post(server, key: str, path: str, body: dict) -> dict:
    r = httpx.post(f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()


def test_cancel_a_running_job_from_the_dataset_page(page, live_server, npz_files):
    key = live_server.new_key("canceller")
    ds = api_upload(live_server, key, npz_files["train"], "faces to cancel")
    # A slow job: 500 epochs; it stops at its next progress report once cancelled.
    slow = post(live_server, key, f"/v1/datasets/{ds['id']}/models", {"method": "standard", **TRAIN_FAST,
                                                                         "epochs": 500})
    model_id = slow["resource"]["model_id"]
    browser_sign_in(page, key, f"/datasets/{ds['id']}")
    widget = page.locator(f"[data-model='{model_id}'] .job")
    expect(widget.locator("label")).to_have_text(f"standard model {model_id}, 500 epochs")
    expect(widget.locator("[data-job-time]")).to_contain_text("running for", timeout=JOB_TIMEOUT_MS)
    widget.get_by_role("button", name=f"Cancel standard model {model_id}, 500 epochs").click()
    item = page.locator(f"[data-model='{model_id}']")
    expect(item).to_contain_text("cancelled", timeout=JOB_TIMEOUT_MS)
    job = httpx.get(f"{live_server.url}{slow['job']['url']}", headers={"Authorization": f"Bearer {key}"}).json()
    assert job["status"] == "cancelled"


def test_chart_text_never_overlaps_at_1280_or_390px(page, live_server, npz_files):
    key = live_server.new_key("charts")
    train = api_upload(live_server, key, npz_files["subgroup"], "faces with a subgroup")
    test = api_upload(live_server, key, npz_files["test"], "held-out faces")
    models = {}
    for method in ("standard", "dbvae"):
        r = post(live_server, key, f"/v1/datasets/{train['id']}/models", {"method": method, **TRAIN_FAST,
                                                                            "epochs": 2})
        wait_done(live_server, key, r["job"]["url"])
        models[method] = r["resource"]["model_id"]
    audit = post(live_server, key, f"/v1/datasets/{train['id']}/audits", {"model_id": models["dbvae"]})
    for model_id in models.values():
        r = post(live_server, key, f"/v1/models/{model_id}/evaluations", {"dataset_id": test["id"],
                                                                          "group_by": ["skin_tone"]})
        wait_done(live_server, key, r["job"]["url"])
    wait_done(live_server, key, audit["job"]["url"])
    compare = (f"/compare?model={models['dbvae']}&baseline={models['standard']}&dataset={test['id']}"
               f"&group_by=skin_tone&chosen=1")
    pages = [f"/datasets/{train['id']}", f"/models/{models['dbvae']}", compare,
             f"/audits/{audit['resource']['audit_id']}"]
    browser_sign_in(page, key, pages[0])
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for path in pages:
            page.goto(path)
            found = page.evaluate(OVERLAPS)
            assert found["texts"] > 10, (path, found)
            assert not found["overlaps"], (width, path, found["overlaps"])
