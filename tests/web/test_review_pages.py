"""Review decisions on the pages: the audit page renders each sample's state (so it survives a reload) and the
controls to change it, filters on it, and the dataset and model pages offer "retrain without excluded"."""
from __future__ import annotations

import json
import re

from .conftest import TRAIN_FAST, run_jobs, sign_in
from .test_pages import Tags, audited


def test_audit_page_shows_and_filters_review_states(web, app, alice, tiny_npz_bytes):
    ds, audit = audited(web, app, alice, tiny_npz_bytes)
    top = web.get(f"/v1/audits/{audit}/anomalies", headers=alice, params={"limit": 1}).json()["items"][0]["index"]
    lowest = web.get(f"/v1/audits/{audit}/samples", headers=alice, params={"label": 1, "limit": 50}).json()
    rarest_face = lowest["items"][0]["index"]   # drawn most: shown among the highest sampling probability
    for index, decision in ((top, "exclude"), (rarest_face, "keep")):
        assert web.put(f"/v1/audits/{audit}/reviews/{index}", headers=alice,
                       json={"decision": decision}).status_code == 200
    sign_in(web, alice)
    html = web.get(f"/audits/{audit}").text
    tags = Tags(html)
    # The anomaly row of the excluded sample: its badge and its select, preselected.
    assert re.search(rf'data-api="/v1/audits/{audit}/reviews/{top}">\s*<select name="decision" '
                     rf'aria-label="Decision on sample {top}">', html)
    row = html[html.index(f'aria-label="Decision on sample {top}"'):]
    assert '<option value="exclude" selected>' in row[:row.index("</select>")]
    assert 'data-review-state="exclude">exclude</span>' in html
    # Thumbnails carry the state in their caption and alt text.
    assert any(i["alt"].endswith("review decision keep") for i in tags.all("img"))
    assert f'data-sample="{rarest_face}">keep</span>' in html
    # Counts, the CSV link, a bulk form per subgroup.
    assert re.search(r"review-exclude\">exclude</span> 1", html) and f"/v1/audits/{audit}/reviews?format=csv" in html
    assert len(tags.all("form")) >= 20 and any("review-bulk" in f.get("class", "") for f in tags.all("form"))
    # Filter on review state; a bad state is named on the page.
    only = web.get(f"/audits/{audit}", params={"review": "exclude"}).text
    assert len(re.findall(r'aria-label="Decision on sample \d+"', only)) == 1
    assert len(re.findall(r'aria-label="Decision on sample \d+"',
                          web.get(f"/audits/{audit}", params={"review": "none"}).text)) == 20
    assert "review state must be one of" in web.get(f"/audits/{audit}", params={"review": "maybe"}).text
    # "Mark every sample this filter shows": offered with a filter (its selection is the filter's), not without.
    assert "data-filter-review" not in html
    filtered = Tags(web.get(f"/audits/{audit}", params={"label": "1", "review": "none", "min_score": "0.5"}).text)
    [bulk] = [f for f in filtered.all("form") if "data-filter-review" in f]
    assert json.loads(bulk["data-selection"]) == {"label": 1, "min_anomaly_score": 0.5, "review": "none"}
    assert "data-filter-review" not in web.get(f"/audits/{audit}", params={"label": "7"}).text
    # The self-contained download shows states but no controls.
    download = web.get(f"/audits/{audit}/download").text
    assert "<form" not in download and 'data-review-state="exclude"' in download


def test_retrain_without_excluded_from_the_dataset_and_model_pages(web, app, alice, tiny_npz_bytes):
    ds, audit = audited(web, app, alice, tiny_npz_bytes)
    sign_in(web, alice)
    page = web.get(f"/datasets/{ds['id']}").text
    assert "Retrain without excluded samples" in page and "No audit of this dataset marks samples" in page
    web.post(f"/v1/audits/{audit}/reviews", headers=alice,
             json={"decision": "exclude", "selection": {"indices": [1, 2]}})
    page = web.get(f"/datasets/{ds['id']}").text
    form = next(f for f in Tags(page).all("form") if f.get("data-what") == "retraining")
    assert form["data-api"] == f"/v1/datasets/{ds['id']}/models"
    assert f'<option value="{audit}">audit {audit}: 2 excluded</option>' in page

    r = web.post(f"/v1/datasets/{ds['id']}/models", headers=alice,
                 json={"method": "standard", "exclude_from_audit": audit, **TRAIN_FAST})
    model = r.json()["resource"]["model_id"]
    assert run_jobs(app) == 1
    page = web.get(f"/models/{model}").text
    assert f'<a href="/audits/{audit}">audit {audit}</a>' in page and "Trained without the 2 samples" in page
    hidden = {i["name"]: i["value"] for i in Tags(page).all("input") if i.get("type") == "hidden"}
    assert hidden["method"] == "standard" and hidden["epochs"] == "1" and "exclude_from_audit" not in hidden
    assert f'<option value="{audit}" selected>' in page
