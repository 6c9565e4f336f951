"""End to end in a real browser: Debian's headless Chromium, driven by Playwright, against a live server.

Sign in, upload (file picker and drag-and-drop), start an audit and watch its
progress bar turn into a link, read the report (every image loaded), page and
filter the anomalies, download the CSV and the self-contained HTML (opened
offline), train two models from the page and compare them. Nothing may be
fetched from anywhere but the server (the `page` fixture checks), and the pages
must fit 390px as well as 1280px.
"""
from __future__ import annotations

import base64
import csv
import io
import re

import httpx
import numpy as np
import pytest

from .conftest import TRAIN_FAST, browser_sign_in

pytestmark = pytest.mark.slow
expect = pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright for Python").expect

JOB_TIMEOUT_MS = 90_000


def broken_images(page) -> list[str]:
    """Every <img> on the page once loading settled; those that did not decode, by alt text."""
    page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
    return page.evaluate("Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.alt || i.src)")


def image_count(page) -> int:
    return page.evaluate("document.images.length")


def fits(page, width: int) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= width


def api_upload(server, key: str, path, name: str) -> dict:
    with open(path, "rb") as f:
        r = httpx.post(f"{server.url}/v1/datasets", headers={"Authorization": f"Bearer {key}"},
                       files={"file": (path.name, f)}, data={"image_size": "16", "name": name}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()


def test_sign_in_and_out(page, live_server):
    key = live_server.new_key("signin")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    page.get_by_label("API key").fill("dbk_000000000000_wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_contain_text("not valid")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Datasets", exact=True)).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "debias_key")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] == -1
    assert "debias_key" not in page.evaluate("document.cookie")  # out of reach of any script
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    assert not [c for c in page.context.cookies() if c["name"] == "debias_key"]
    page.goto("/datasets/1")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_keyboard_and_narrow_screen(page, live_server):
    browser_sign_in(page, live_server.new_key("keys"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    assert fits(page, 390)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.evaluate("document.activeElement.getBoundingClientRect().left") >= 0  # shown when focused
    for _ in range(12):  # on through the navigation to the upload form's file input
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "upload-file":
            break
    else:
        pytest.fail("the file input cannot be reached with the keyboard")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "keyboard focus must be visible"


def test_a_refused_upload_says_why(page, live_server, tmp_path):
    browser_sign_in(page, live_server.new_key("refused"))
    buf = io.BytesIO()
    np.savez(buf, images=np.zeros((4, 16, 16, 3), np.uint8), labels=np.array([0, 1, 2, 1]))
    # Dropped onto the drop zone, as when dragged from the desktop.
    transfer = page.evaluate_handle(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "application/octet-stream"}));
            return dt;
        }""", ["three-labels.npz", base64.b64encode(buf.getvalue()).decode()])
    page.dispatch_event("[data-dropzone]", "drop", {"dataTransfer": transfer})
    expect(page.locator("[data-file-name]")).to_contain_text("three-labels.npz")
    page.get_by_role("button", name="Upload").click()
    error = page.locator("[data-upload-error]")
    expect(error).to_contain_text("The upload was refused: labels in three-labels.npz must be 0 or 1")
    expect(page.locator("#upload-bar")).to_have_attribute("value", "100")
    # The file picker too, with a file that is no dataset at all.
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    page.get_by_label("Dataset file").set_input_files(notes)
    page.get_by_role("button", name="Upload").click()
    expect(error).to_contain_text("notes.txt is not a dataset file")
    assert "no datasets yet" in page.locator("main").inner_text().lower()


def test_upload_audit_and_read_the_report(page, live_server, npz_files, tmp_path, browser):
    browser_sign_in(page, live_server.new_key("auditor"))
    # Upload with the file picker; the progress bar's highest value is kept across the page change.
    # The faces with a subgroup of blue squares: two epochs set it apart, so the report has a feature to draw.
    page.get_by_label("Dataset file").set_input_files(npz_files["subgroup"])
    page.get_by_label("Name").fill("browser faces")
    page.get_by_label("Image size in pixels").fill("16")
    page.evaluate("""() => {
        const bar = document.getElementById('upload-bar');
        new MutationObserver(() => sessionStorage.setItem('upload-max',
            Math.max(Number(sessionStorage.getItem('upload-max') || 0), bar.value))).observe(bar, {attributes: true});
    }""")
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(re.compile(r"/datasets/\d+$"))
    assert float(page.evaluate("sessionStorage.getItem('upload-max')")) == 100
    expect(page.get_by_role("heading", level=1)).to_contain_text("browser faces")
    assert image_count(page) == 32 and broken_images(page) == []
    # Class balance + one chart per class that has values of an attribute: 8 attributes, of which
    # lighting, background and look have values in both classes.
    assert page.locator("svg.chart").count() == 1 + 8 + 3

    # Start an audit with the fast training options; the progress bar becomes a link.
    form = page.locator("form[data-what=audit]")
    form.get_by_label("Epochs").fill("2")
    form.get_by_label("Batch size").fill(str(TRAIN_FAST["batch_size"]))
    form.get_by_label("Latent dimensions").fill(str(TRAIN_FAST["latent_dim"]))
    form.get_by_role("button", name="Start audit").click()
    expect(form.locator(".jobs progress, .jobs .job-done")).to_have_count(1)
    link = form.get_by_role("link", name=re.compile(r"Open audit report \d+"))
    expect(link).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(form.locator(".jobs progress")).to_have_count(0)
    link.click()
    page.wait_for_url(re.compile(r"/audits/\d+$"))
    audit_url = page.url

    # The report: every image loads (thumbnails, traversal strips, figures).
    for heading in ("Summary", "Lowest and highest sampling probability", "Under-represented latent features",
                    "Supplied attributes and latent features", "Representation per attribute value", "Anomalies"):
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    assert image_count(page) >= 4 * 12 + 20 + 5
    assert broken_images(page) == []
    assert page.locator(".strip img").count() >= 1
    assert page.evaluate("Array.from(document.images).every(i => i.alt.length > 0)")

    # Page through the anomalies, then filter them.
    rows = page.locator("table.anomalies tbody th")
    first = rows.all_inner_texts()
    assert len(first) == 20
    page.get_by_role("link", name="Next page").click()
    page.wait_for_url(re.compile(r"cursor="))
    second = rows.all_inner_texts()
    assert len(second) == 20 and not set(first) & set(second)
    assert broken_images(page) == []
    page.get_by_role("link", name="Next page").click()
    page.wait_for_url(re.compile(r"cursor="))
    page.get_by_role("link", name="Previous page").click()
    page.wait_for_url(re.compile(r"before="))
    assert rows.all_inner_texts() == second
    page.get_by_role("link", name="Previous page").click()
    expect(rows.first).to_have_text(first[0])
    assert rows.all_inner_texts() == first
    expect(page.get_by_role("link", name="Previous page")).to_have_count(0)
    page.get_by_role("link", name="Next page").click()
    page.wait_for_url(re.compile(r"cursor="))
    page.get_by_role("link", name="First page").click()
    expect(rows.first).to_have_text(first[0])
    page.get_by_label("Label", exact=True).select_option("1")
    page.get_by_label("Minimum score").fill("-100")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"label=1"))
    labels = page.locator("table.anomalies tbody td:nth-child(3)").all_inner_texts()
    assert labels and set(labels) == {"positive"}

    # The CSV download carries the filter: the 60 positives.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download anomalies (CSV)").click()
    table = list(csv.DictReader(io.StringIO(open(download.value.path()).read())))
    assert len(table) == 60 and {r["label"] for r in table} == {"1"} and "anomaly_score" in table[0]

    # Print layout: no navigation, forms or buttons.
    page.emulate_media(media="print")
    expect(page.locator(".actions")).to_be_hidden()
    expect(page.locator("form.filters")).to_be_hidden()
    page.emulate_media(media="screen")

    # The self-contained report: saved, then opened from disk with the network off; every image there.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download report (HTML)").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    html = saved.read_text()
    assert 'src="/' not in html and "<script" not in html
    offline = browser.new_context(offline=True)
    try:
        copy = offline.new_page()
        copy.goto(saved.as_uri())
        expect(copy.get_by_role("heading", level=1)).to_contain_text("Audit report: browser faces")
        assert image_count(copy) >= 4 * 12 + 50 and broken_images(copy) == []
    finally:
        offline.close()

    # Readable on a phone: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(audit_url)
    assert fits(page, 390)
    page.go_back()


def test_train_two_models_and_compare_them(page, live_server, npz_files):
    key = live_server.new_key("modeller")
    train = api_upload(live_server, key, npz_files["train"], "train faces")
    test = api_upload(live_server, key, npz_files["test"], "balanced test faces")
    browser_sign_in(page, key, f"/datasets/{train['id']}")
    form = page.locator("form[data-what=training]")
    for method in ("standard", "dbvae"):
        form.get_by_label("Method").select_option(method)
        form.get_by_label("Epochs", exact=True).fill("2")  # exact: job widgets name "…, 2 epochs"
        form.get_by_label("Batch size").fill(str(TRAIN_FAST["batch_size"]))
        form.get_by_label("Latent dimensions").fill(str(TRAIN_FAST["latent_dim"]))
        form.get_by_role("button", name="Start training").click()
        expect(form.locator(".jobs > *")).to_have_count(1 if method == "standard" else 2)
    links = form.get_by_role("link", name=re.compile(r"Open model \d+"))
    expect(links).to_have_count(2, timeout=JOB_TIMEOUT_MS)
    standard_id, dbvae_id = (int(t.split()[-1]) for t in links.all_inner_texts())

    page.get_by_role("link", name="Compare models").first.click()
    page.get_by_label("Baseline model", exact=True).select_option(str(standard_id))
    page.get_by_label("Compared model", exact=True).select_option(str(dbvae_id))
    page.get_by_label("Evaluation dataset", exact=True).select_option(str(test["id"]))
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(re.compile(r"chosen=1"))
    # Tick a group-by box and evaluate straight away (no "Compare" first): the ticked box is what is evaluated,
    # and the page then shows that grouping.
    page.get_by_label("skin_tone").check()   # the dataset's attributes are offered once it is chosen
    page.get_by_role("button", name=re.compile("Evaluate both models")).click()
    # Both evaluations run; the page goes to the comparison grouped by skin_tone when they are done.
    page.wait_for_url(re.compile(r"group_by=skin_tone"), timeout=JOB_TIMEOUT_MS)
    wide = page.locator("#group-bars .chart-wide svg")
    expect(wide).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.locator("[data-verdict]")).to_contain_text("worst group")
    expect(page.get_by_role("row", name=re.compile("Worst group accuracy"))).to_be_visible()
    bars = wide.locator("rect")
    # Groups: the negatives (skin tone n/a) and the positives by skin tone; per group a baseline and a model bar.
    assert bars.count() == 2 + 2 * 4   # legend keys + 2 bars x 4 groups
    # Every bar has its error bar, drawn and visible.
    error_bars = wide.locator("g.error-bar")
    assert error_bars.count() == 2 * 4
    expect(error_bars.first).to_be_visible()
    # The chart takes the card's width at 1280px.
    chart_w = wide.bounding_box()["width"]
    card_w = page.locator("#group-bars").bounding_box()["width"]
    assert chart_w >= 0.9 * card_w > 600, (chart_w, card_w)
    assert page.locator("svg[aria-label^='classification loss (BCE) per epoch']").count() == 1  # BCE with BCE
    assert page.locator("svg[aria-label^='training accuracy per epoch']").count() == 1
    assert fits(page, 1280)
    # At 390px the narrow drawing shows, error bars included, and nothing runs off the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    narrow = page.locator("#group-bars .chart-narrow svg")
    expect(narrow).to_be_visible()
    expect(narrow.locator("g.error-bar").first).to_be_visible()
    assert fits(page, 390)
