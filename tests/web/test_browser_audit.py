"""The audit page in a real browser (headless Chromium, as tests/web/test_browser.py): the verdict at the top with
a subgroup's picture and its enriched attribute, labelled pictures that open large, and the latent map whose box
selection filters the grid below it."""
from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from .conftest import browser_sign_in
from .test_browser import api_upload
from .test_browser_reviews import audit_via_api

pytestmark = pytest.mark.slow
expect = pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright for Python").expect


def broken_images(page) -> list[str]:
    """As test_browser.broken_images, polled from here: the page's CSP forbids the string predicate that
    wait_for_function evaluates in the page while it waits."""
    deadline = time.monotonic() + 30
    while not page.evaluate("Array.from(document.images).every(i => i.complete)"):
        assert time.monotonic() < deadline, "images still loading after 30 s"
        time.sleep(0.05)
    return page.evaluate("Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.alt || i.src)")


@pytest.fixture(scope="module")
def audited(live_server, npz_files):
    key = live_server.new_key("verdict")
    ds = api_upload(live_server, key, npz_files["subgroup"], "faces for the verdict")
    audit = audit_via_api(live_server, key, ds["id"])
    report = httpx.get(f"{live_server.url}/v1/audits/{audit}", headers={"Authorization": f"Bearer {key}"}).json()
    return key, audit, report["report"]


def test_the_verdict_leads_with_a_subgroup_picture_and_its_enriched_attribute(page, live_server, audited):
    key, audit, report = audited
    browser_sign_in(page, key, f"/audits/{audit}")
    assert page.locator("main h2").first.inner_text() == "Verdict"
    top = report["verdict"]["subgroups"][0]
    card = page.locator(f"[data-verdict-subgroup='{top['id']}']")
    expect(card).to_be_visible()
    picture = card.get_by_role("img", name=re.compile(rf"members of subgroup {top['id']} \({top['class']}"))
    expect(picture).to_be_visible()
    assert picture.evaluate("i => i.complete && i.naturalWidth > 0")
    e = top["enriched"][0]
    expect(card.locator("[data-enriched]").first).to_have_text(f"{e['attribute']}={e['value']}")
    expect(card).to_contain_text(f"{top['n']} of {top['class_n']} {top['class']} samples")
    expect(card).to_contain_text(re.compile(r"Drawn\s*\d+\.\d× as often as the average"))
    # In the first screen at 1280px: the verdict is what an auditor reads first.
    assert card.bounding_box()["y"] < 900
    expect(page.locator("[data-anomaly-line]")).to_contain_text(
        f"{report['anomalies']['count']} of {report['summary']['n_samples']} samples flagged")
    # Attribute values ranked, counts and shares visible (no collapsed table).
    first_row = page.locator("table.verdict-attributes tbody tr").first
    expect(first_row).to_be_visible()
    a = report["verdict"]["attributes"][0]
    expect(first_row).to_contain_text(f"{a['attribute']}={a['value']}")
    expect(first_row).to_contain_text(str(a["count"]))
    assert broken_images(page) == []


def test_pictures_open_large_by_click_and_by_keyboard(page, live_server, audited):
    key, audit, _ = audited
    browser_sign_in(page, key, f"/audits/{audit}")
    thumb = page.locator("[aria-label$='samples with the highest sampling probability'] [data-open-sample]").first
    alt = thumb.locator("img").get_attribute("alt")
    assert re.match(r"sample \d+: (positive|negative), subgroup \d+.*; drawn [\d.]+× as often as the average", alt)
    caption = thumb.locator("xpath=../figcaption").inner_text()
    assert re.search(r"subgroup \d+", caption) and "drawn" in caption and " w " not in caption
    thumb.click()
    dialog = page.locator("#sample-dialog")
    expect(dialog).to_be_visible()
    index = alt.split(":")[0].removeprefix("sample ")
    expect(dialog.get_by_role("heading")).to_have_text(f"Sample {index}")
    for row in ("Class", "Subgroup", "Drawn", "Anomaly score (robust z)", "Log density (latent)"):
        expect(dialog.locator("dt", has_text=row).first).to_be_visible()
    assert dialog.locator("img").evaluate("i => i.getBoundingClientRect().width") >= 200  # large
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.hasAttribute('data-open-sample')")  # focus went back
    # Keyboard only: focus the next picture, Enter opens it.
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")


def test_a_box_on_the_latent_map_filters_the_grid(page, live_server, audited):
    key, audit, report = audited
    browser_sign_in(page, key, f"/audits/{audit}")
    svg = page.locator("svg[data-map]")
    svg.scroll_into_view_if_needed()
    box = svg.bounding_box()
    assert box["width"] >= 600  # readable at 1280px
    grid = page.locator("[data-map-grid] li")
    n_points = report["latent_map"]["n_points"]
    expect(page.locator("[data-map-grid-status]")).to_have_text(f"Showing {min(48, n_points)} of {n_points} samples "
                                                                 f"on the map (none selected).")
    # The grid's pictures (labelled by the script) read exactly as the page's own (labelled by the server).
    described = """sel => Object.fromEntries(Array.from(document.querySelectorAll(sel)).map(
        b => [b.dataset.index, [b.querySelector('img').alt, JSON.parse(b.dataset.details)]]))"""
    by_script = page.evaluate(described, "[data-map-grid] [data-open-sample]")
    by_server = page.evaluate(described, ".side-by-side [data-open-sample], table.anomalies [data-open-sample]")
    both = set(by_script) & set(by_server)
    assert both and all(by_script[i] == by_server[i] for i in both)
    # Hovering a mark shows its picture.
    mark = page.locator("svg[data-map] [data-k]").last  # drawn on top of any mark at the same place
    mark.hover()
    expect(page.locator("[data-map-preview] img")).to_have_count(1)
    # Drag a box over the left half: the grid shows exactly the samples whose marks lie inside it.
    x0, y0 = box["x"] + 2, box["y"] + 2
    x1, y1 = box["x"] + box["width"] / 2, box["y"] + box["height"] - 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    inside = page.evaluate("""([x0, y0, x1, y1]) => Array.from(document.querySelectorAll('svg[data-map] [data-k]'))
        .filter(m => { const r = m.getBoundingClientRect(), cx = r.x + r.width / 2, cy = r.y + r.height / 2;
                       return cx >= x0 && cx <= x1 && cy >= y0 && cy <= y1; })
        .map(m => JSON.parse(document.getElementById('map-data').textContent).points[+m.dataset.k].i)""",
                           [x0, y0, x1, y1])
    assert 0 < len(inside) < n_points
    expect(page.locator("[data-map-status]")).to_contain_text(f"{len(inside)} samples selected")
    expect(grid).to_have_count(min(48, len(inside)))
    shown = [int(v) for v in grid.locator("[data-open-sample]").evaluate_all("bs => bs.map(b => b.dataset.index)")]
    assert set(shown) <= set(inside)
    assert page.locator("svg[data-map] [data-k].dim").count() == n_points - len(inside)
    assert broken_images(page) == []
    # A legend entry selects by keyboard too: colour by class, pick the positives.
    page.get_by_label("Colour by").select_option("class")
    positive = page.get_by_role("button", name=re.compile(r"select positive, \d+ samples"))
    positive.focus()
    page.keyboard.press("Enter")
    expect(positive).to_have_attribute("aria-pressed", "true")
    alts = grid.locator("img").evaluate_all("is => is.map(i => i.alt)")
    assert alts and all(": positive," in a for a in alts)
    # The grid's pictures open large like every other.
    grid.locator("[data-open-sample]").first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#sample-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Clear selection").click()
    expect(page.locator("svg[data-map] [data-k].dim")).to_have_count(0)
    # Colour by how often drawn: every mark gets a colour of the ramp.
    page.get_by_label("Colour by").select_option("weight")
    fills = page.locator("svg[data-map] [data-k]").evaluate_all("ms => ms.map(m => m.getAttribute('fill'))")
    assert all(f.startswith("rgb(") for f in fills)
    # From the verdict: "Show subgroup N on the map" selects its samples and focuses the map.
    top = report["verdict"]["subgroups"][0]
    page.get_by_role("button", name=f"Show subgroup {top['id']} on the map").click()
    expect(page.locator("[data-map-status]")).to_contain_text(f"{top['n']} samples selected (subgroup {top['id']})")
    alts = grid.locator("img").evaluate_all("is => is.map(i => i.alt)")
    assert len(alts) == min(48, top["n"]) and all(f"subgroup {top['id']}" in a for a in alts)
    assert page.evaluate("document.activeElement.matches('svg[data-map]')")
    page.keyboard.press("ArrowRight")                     # the keyboard walks the marks; Enter opens one
    expect(page.locator("[data-map-preview] img")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(page.locator("#sample-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    assert json.loads(page.locator("#map-data").text_content())["points"][0]["i"] >= 0
