"""The page routes through the ASGI client: sign-in cookie, CSRF defence, owner isolation, what pages show."""
from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser

from fastapi.testclient import TestClient

from api.web import STATIC_DIR, TEMPLATES_DIR, charts

from .conftest import LOOPBACK, TRAIN_FAST, key_of, run_jobs, sign_in, upload


class Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


def audited(web, app, alice, npz_bytes, training: dict = TRAIN_FAST) -> tuple[dict, int]:
    ds = upload(web, alice, npz_bytes, name="tiny faces").json()
    r = web.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": training})
    assert r.status_code == 202, r.text
    assert run_jobs(app) == 1
    return ds, r.json()["resource"]["audit_id"]


# --------------------------------------------------------------------------- sign in and out


def test_pages_redirect_to_login_without_a_valid_cookie(web):
    for path in ("/", "/datasets/1", "/audits/1?label=1", "/models/1", "/compare", "/audits/1/download"):
        r = web.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next="), path
    r = web.get("/audits/1?label=1", follow_redirects=False)
    assert r.headers["location"] == "/login?next=%2Faudits%2F1%3Flabel%3D1"
    r = web.get("/login")
    assert r.status_code == 200 and 'name="key"' in r.text and 'type="password"' in r.text
    # A stale cookie is cleared on the way to the sign-in page.
    web.cookies.set("debias_key", "dbk_000000000000_nope")
    r = web.get("/", follow_redirects=False)
    assert r.status_code == 303 and 'debias_key=""' in r.headers["set-cookie"]


def test_sign_in_sets_an_http_only_strict_session_cookie_and_sign_out_clears_it(web, alice):
    r = web.post("/login", data={"key": key_of(alice), "next": "/compare"}, headers={"Origin": LOOPBACK},
                 follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/compare"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"debias_key={key_of(alice)};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie        # plain http on loopback: browsers would not all keep a Secure one
    assert "Max-Age" not in cookie and "expires" not in cookie.lower()  # a session cookie
    r = web.get("/")
    assert r.status_code == 200 and "Signed in as <strong>alice</strong>" in r.text
    assert web.get("/login", follow_redirects=False).status_code == 303  # already signed in
    r = web.post("/logout", headers={"Origin": LOOPBACK}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert 'debias_key=""' in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
    assert web.cookies.get("debias_key") is None
    assert web.get("/", follow_redirects=False).status_code == 303


def test_the_cookie_is_secure_except_on_plain_http_to_loopback(app, alice):
    for base, secure in (("https://debias.example.org", True), ("http://debias.example.org", True),
                         ("http://localhost:8000", False), ("http://[::1]:8000", False),
                         ("https://127.0.0.1", True)):
        with TestClient(app, base_url=base) as c:
            r = c.post("/login", data={"key": key_of(alice)}, headers={"Origin": base}, follow_redirects=False)
            assert r.status_code == 303, (base, r.text)
            assert ("; Secure" in r.headers["set-cookie"]) is secure, base


def test_sign_in_refuses_a_wrong_key_a_foreign_next_and_a_cross_site_form(web, alice):
    r = web.post("/login", data={"key": "dbk_000000000000_wrong"}, headers={"Origin": LOOPBACK})
    assert r.status_code == 401 and "not valid" in r.text and "set-cookie" not in r.headers
    r = web.post("/login", data={"key": ""}, headers={"Origin": LOOPBACK})
    assert r.status_code == 401 and "Enter your API key" in r.text
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        r = web.post("/login", data={"key": key_of(alice), "next": target}, headers={"Origin": LOOPBACK},
                     follow_redirects=False)
        assert r.headers["location"] == "/", target
    web.cookies.clear()
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"}):
        r = web.post("/login", data={"key": key_of(alice)}, headers=headers, follow_redirects=False)
        assert r.status_code == 403 and "cross-site" in r.text and "set-cookie" not in r.headers, headers
    r = web.post("/login", data={"key": key_of(alice)}, headers={"Referer": f"{LOOPBACK}/login"},
                 follow_redirects=False)
    assert r.status_code == 303


# --------------------------------------------------------------------------- the cookie on the JSON API


def test_the_cookie_authenticates_the_api_and_a_bearer_header_still_wins(web, alice, bob, tiny_npz_bytes):
    mine = upload(web, alice, tiny_npz_bytes, name="alice data").json()
    upload(web, bob, tiny_npz_bytes, name="bob data")
    sign_in(web, alice)
    names = [d["name"] for d in web.get("/v1/datasets").json()]
    assert names == ["alice data"]
    assert web.get(f"/v1/datasets/{mine['id']}/samples/0/image").headers["content-type"] == "image/png"
    # With an Authorization header the cookie is not looked at: bob's key acts for bob, a bad one fails.
    assert [d["name"] for d in web.get("/v1/datasets", headers=bob).json()] == ["bob data"]
    r = web.get("/v1/datasets", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json() == {"detail": "invalid or revoked API key"}
    web.cookies.clear()
    web.cookies.set("debias_key", "dbk_000000000000_revoked")
    r = web.get("/v1/datasets")
    assert r.status_code == 401 and "sign in again" in r.json()["detail"]


def test_cookie_authenticated_unsafe_requests_must_come_from_this_site(web, alice, tiny_npz_bytes):
    ds = upload(web, alice, tiny_npz_bytes).json()
    sign_in(web, alice)
    url, body = f"/v1/datasets/{ds['id']}/models", {"method": "standard", **TRAIN_FAST}
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Referer": "https://evil.example/page"}, {"Origin": "http://127.0.0.1:9999"}):
        r = web.post(url, json=body, headers=headers)
        assert r.status_code == 403, (headers, r.text)
        assert "cross-site request refused" in r.json()["detail"]
    r = web.delete(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 403
    assert web.post(url, json=body, headers={"Origin": LOOPBACK}).status_code == 202
    assert web.post(url, json=body, headers={"Referer": f"{LOOPBACK}/datasets/{ds['id']}"}).status_code == 202
    # Reads need no Origin; a bearer request needs none either, cookie or not.
    assert web.get(f"/v1/datasets/{ds['id']}").status_code == 200
    assert web.post(url, json=body, headers=alice).status_code == 202


# --------------------------------------------------------------------------- pages and owners


def test_datasets_page_lists_the_owners_datasets_with_counts_and_an_upload_form(web, alice, bob, tiny_npz_bytes):
    ds = upload(web, alice, tiny_npz_bytes, name="alice faces").json()
    upload(web, bob, tiny_npz_bytes, name="bob faces")
    sign_in(web, alice)
    r = web.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"] and r.headers["cache-control"] == "no-store"
    assert "alice faces" in r.text and "bob faces" not in r.text
    assert f'href="/datasets/{ds["id"]}"' in r.text and "skin_tone (3)" in r.text  # "n/a" is no value
    tags = Tags(r.text)
    form = next(f for f in tags.all("form") if f.get("id") == "upload-form")
    assert form["action"] == "/v1/datasets" and form["enctype"] == "multipart/form-data"
    inputs = {i["id"]: i for i in tags.all("input") if "id" in i}
    labels = {lab.get("for") for lab in tags.all("label")}
    assert {"upload-file", "upload-name", "upload-size", "upload-positive"} <= set(inputs) <= labels | {None}
    assert tags.all("progress")


def test_dataset_page_shows_samples_balance_attributes_and_the_action_forms(web, alice, tiny_npz_bytes):
    ds = upload(web, alice, tiny_npz_bytes, name="tiny faces").json()
    sign_in(web, alice)
    r = web.get(f"/datasets/{ds['id']}")
    assert r.status_code == 200
    tags = Tags(r.text)
    imgs = tags.all("img")
    assert len(imgs) == 32 and all(i["alt"].startswith("sample ") for i in imgs)
    assert imgs[0]["src"] == f"/v1/datasets/{ds['id']}/samples/0/image"
    assert re.search(r'alt="sample 0, label (positive|negative)', r.text)
    svgs = r.text.count('<svg class="chart"')
    # Class balance + per attribute one chart per class having values for it: negatives have no skin tone.
    charted = r.text.count('<div class="attr-class"') - r.text.count("has no ")
    assert svgs == 1 + charted and charted > len(ds["attributes"])
    assert "n/a" not in r.text and ">negative class</strong> <span class=\"muted\">has no skin_tone values" in r.text
    assert re.search(r"attribute skin_tone in the positive class \(24 samples\): \w+ \d+ \(\d+\.\d%\)", r.text)
    assert re.search(r">\d+ · \d+%</text>", r.text)  # each bar's count with its share of the class
    assert 'aria-label="class balance: 24 positive, 24 negative"' in r.text
    forms = {f.get("data-api") for f in tags.all("form")}
    assert f"/v1/datasets/{ds['id']}/audits" in forms and f"/v1/datasets/{ds['id']}/models" in forms
    names = {i.get("name") for i in tags.all("input") + tags.all("select")}
    assert {"training.epochs", "training.batch_size", "training.latent_dim", "density", "method", "epochs",
            "batch_size", "latent_dim"} <= names
    labelled = {lab.get("for") for lab in tags.all("label")}
    assert all(i["id"] in labelled for i in tags.all("input") + tags.all("select") if i.get("type") != "hidden")


def test_another_owners_pages_are_404_pages(web, app, alice, bob, tiny_npz_bytes):
    ds, audit_id = audited(web, app, alice, tiny_npz_bytes)
    model_id = web.get(f"/v1/audits/{audit_id}", headers=alice).json()["model_id"]
    sign_in(web, bob)
    for path in (f"/datasets/{ds['id']}", f"/audits/{audit_id}", f"/audits/{audit_id}/download",
                 f"/models/{model_id}", f"/audits/{audit_id}/traversals/0.png", "/datasets/999",
                 f"/compare?model={model_id}&baseline={model_id}&dataset={ds['id']}"):
        r = web.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html") and "Not found" in r.text, path
    r = web.get("/compare")
    assert r.status_code == 200 and "tiny faces" not in r.text
    assert web.get("/datasets/abc").status_code == 422  # not an id at all


def test_a_running_audit_shows_a_progress_bar_that_polls_its_job(web, alice, tiny_npz_bytes):
    ds = upload(web, alice, tiny_npz_bytes).json()
    r = web.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST})
    job_id, audit_id = r.json()["job"]["id"], r.json()["resource"]["audit_id"]
    sign_in(web, alice)
    for path in (f"/audits/{audit_id}", f"/datasets/{ds['id']}"):
        page = web.get(path).text
        assert f'data-job="{job_id}"' in page and "<progress" in page, path
        assert f'data-done-href="/audits/{audit_id}"' in page
    assert web.get(f"/audits/{audit_id}/download").status_code == 409


TWO_EPOCHS = {**TRAIN_FAST, "epochs": 2}


def test_audit_report_page(web, app, alice, subgroup_npz_bytes):
    ds, audit_id = audited(web, app, alice, subgroup_npz_bytes, TWO_EPOCHS)
    report = web.get(f"/v1/audits/{audit_id}", headers=alice).json()["report"]
    sign_in(web, alice)
    r = web.get(f"/audits/{audit_id}")
    assert r.status_code == 200
    html = r.text
    for heading in ("Discovered subgroups", "Summary", "Lowest and highest sampling probability",
                    "Under-represented latent features",
                    "Supplied attributes and latent features", "Representation per attribute value", "Anomalies",
                    "Verdict", "Latent map", "Downloads"):
        assert f">{heading}</h2>" in html, heading
    # The verdict first: the top under-represented subgroup with its picture, numbers, its enriched attribute.
    assert html.index(">Verdict</h2>") < html.index(">Latent map</h2>") < html.index(">Discovered subgroups</h2>")
    verdict = report["verdict"]
    top = verdict["subgroups"][0]
    e = top["enriched"][0]
    held = "mostly" if e["precision"] >= 0.5 else "enriched in"
    assert f'alt="members of subgroup {top["id"]} ({top["class"]}, {held} {e["attribute"]}={e["value"]})"' in html
    assert f'<span class="enriched" data-enriched>{e["attribute"]}={e["value"]}</span>' in html
    assert unescape(verdict["headline"]) in unescape(html) and top["mean_weight_ratio"] > 1
    assert f"{top['n']} of {top['class_n']} {top['class']} samples" in html
    assert "samples flagged as anomalies" in html and report["anomalies"]["count"] > 0  # the tail rule flags
    # Every drawn point of the latent map, its data for the script, and the figures as downloads, not images.
    assert html.count("data-k=") == report["latent_map"]["n_points"] == 90 and 'id="map-data"' in html
    hrefs = [a.get("href") for a in Tags(html).all("a")]
    for url in report["figures"].values():
        assert url in hrefs
    tags = Tags(html)
    imgs = tags.all("img")
    assert imgs and all(i.get("alt") for i in imgs)
    srcs = [i["src"] for i in imgs]
    positive_features = [f for f in report["under_represented_features"] if f["class"] == "positive"]
    # The blue squares are the positives' top subgroup; the feature that sets them apart is named after them.
    assert positive_features and positive_features[0]["name"] == "look=blue"
    assert "feature 0: look=blue" in html
    # Two epochs leave the decoder unable to draw anything: the page says so beside the strip.
    note = positive_features[0]["traversal_note"]
    assert note.startswith("the decoded strip barely changes") and note in unescape(html)
    for f in positive_features:
        assert f"/audits/{audit_id}/traversals/{f['feature']}.png" in srcs
    # Discovered subgroups lead the report, each grid with an alt text naming it.
    assert html.index(">Discovered subgroups</h2>") < html.index(">Summary</h2>")
    for s in report["subgroups"][:6]:
        if s["stratum"] not in (None, "the rest"):          # how it was found, beside its numbers
            assert f"clustered among the class's {s['stratum']}" in unescape(html)
        if s["grid"]:
            assert s["grid"] in srcs and web.get(s["grid"]).status_code == 200
        # Beside a positive subgroup's members, images generated from its latent region, labelled as such.
        if s["class"] == "positive" and s["n"] >= 2:
            assert f'data-generated="{s["id"]}"' in html and web.get(s["generated_grid"]).status_code == 200
            assert any(src.endswith(f"/subgroup_{s['id']}_generated.png") for src in srcs)
    assert any(s["stratum"] == "early error set" for s in report["subgroups"][:6])
    assert "Generated, not real:" in html and any(i["alt"].startswith("generated images (not real samples)")
                                                   for i in imgs)
    # Lowest and highest sampling probability: 12 a side for each class; the anomaly table's first 20. Every
    # picture says its class, subgroup, attribute values and how often it is drawn, and opens large.
    samples = [i for i in imgs if i["alt"].startswith("sample ")]
    assert len(samples) == 4 * 12 + 20
    labelled = re.compile(r"sample \d+: (positive|negative), subgroup \d+(, \w+=\w+)*; drawn [\d.e+-]+× as often as "
                          r"the average (positive|negative) sample; anomaly score -?\d+\.\d")
    assert all(labelled.fullmatch(i["alt"]) for i in samples), samples[0]["alt"]
    assert any("look=blue" in i["alt"] for i in samples)
    buttons = [b for b in tags.all("button") if "data-open-sample" in b]
    assert len(buttons) == len(samples) and all(json.loads(b["data-details"])[0][0] == "Sample" for b in buttons)
    assert "w 9" not in html and ' · w ' not in html
    # One histogram per feature, one chart per attribute's representation, one for the relations.
    assert html.count('aria-label="histogram of feature') == len(report["under_represented_features"])
    # Representation: counts and shares with their Wilson intervals in the visible table (no <details>).
    rep = report["representation"][0]
    lo, hi = rep["share_ci"]
    assert lo <= rep["share"] <= hi and html.count("data-share-ci") == len(report["representation"])
    assert f"[{100 * lo:.1f}%, {100 * hi:.1f}%]" in html and "<summary>Table</summary>" not in html
    # Anomaly table: the first 20 by score, alt text naming sample, label and score; a next-page link.
    def anomaly_alts(page: str) -> list[str]:
        table = page[page.index('<table class="anomalies">'):]
        return [i["alt"] for i in Tags(table[:table.index("</table>")]).all("img")]

    rows = anomaly_alts(html)
    assert len(rows) == 20
    next_link = next(a["href"] for a in tags.all("a") if a.get("rel") == "next")
    second_rows = anomaly_alts(web.get(next_link).text)
    assert len(second_rows) == 20 and not set(second_rows) & set(rows)
    csv_link = next(a["href"] for a in tags.all("a") if "format=csv" in a.get("href", ""))
    assert web.get(csv_link).headers["content-type"].startswith("text/csv")
    # Filters: label, attribute, minimum score; bad input is named on the page.
    faces = web.get(f"/audits/{audit_id}", params={"label": "1", "attribute": "skin_tone:dark"}).text
    alts = anomaly_alts(faces)
    assert alts and all(re.match(r"sample \d+: positive, .*skin_tone=dark", a) for a in alts)
    r = web.get(f"/audits/{audit_id}", params={"min_score": "lots", "attribute": "nope"})
    assert r.status_code == 200 and "minimum score must be a number" in r.text and "NAME:VALUE" in r.text
    r = web.get(f"/audits/{audit_id}", params={"attribute": "hat:red"})
    assert "unknown attribute(s) hat" in r.text
    r = web.get(f"/audits/{audit_id}", params={"cursor": "garbage"})
    assert "invalid cursor" in r.text


def test_traversal_strips_are_decoded_images(web, app, alice, subgroup_npz_bytes):
    import io

    from PIL import Image

    _, audit_id = audited(web, app, alice, subgroup_npz_bytes, TWO_EPOCHS)
    report = web.get(f"/v1/audits/{audit_id}", headers=alice).json()["report"]
    sign_in(web, alice)
    feature = next(f for f in report["under_represented_features"] if f["class"] == "positive")
    r = web.get(f"/audits/{audit_id}/traversals/{feature['feature']}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (9 * 64 + 8 * 2, 64)  # nine 16px images enlarged to 64px, 2px apart
    assert web.get(f"/audits/{audit_id}/traversals/{feature['feature']}.png").content == r.content  # kept
    dims = {f["feature"] for f in report["under_represented_features"] if f["class"] == "positive"}
    other = next(d for d in range(64) if d not in dims)
    assert web.get(f"/audits/{audit_id}/traversals/{other}.png").status_code == 404


def test_downloaded_report_is_self_contained(web, app, alice, tiny_npz_bytes):
    _, audit_id = audited(web, app, alice, tiny_npz_bytes)
    sign_in(web, alice)
    r = web.get(f"/audits/{audit_id}/download")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == f'attachment; filename="audit-{audit_id}-report.html"'
    html = r.text
    tags = Tags(html)
    imgs = tags.all("img")
    assert len(imgs) > 60 and all(i["src"].startswith("data:image/png;base64,") and i["alt"] for i in imgs)
    assert not tags.all("script") and not tags.all("link") or all(
        link["href"].startswith("data:") for link in tags.all("link"))
    assert "<style>" in html and "@media print" in html
    # Nothing to fetch: no URL in any src or href but fragments and data URIs.
    for tag, attrs in tags.tags:
        for name in ("src", "href", "action"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:", "#")), (tag, name, value)
    assert html.count("<tr") >= 50  # the top 50 anomalies, statically
    # The verdict and a static latent map (no script, so no map data or dialog), figures as saved files.
    assert ">Verdict</h2>" in html and 'class="latent-map"' in html and 'id="map-data"' not in html
    assert "<dialog" not in html and "data-open-sample" not in html
    assert any(a.get("download", "").endswith(".png") and a["href"].startswith("data:image/png")
               for a in tags.all("a"))


def test_model_page_and_comparison(web, app, alice, tiny_npz_bytes, test_npz_bytes):
    train = upload(web, alice, tiny_npz_bytes, name="train faces").json()
    test = upload(web, alice, test_npz_bytes, filename="test.npz", name="balanced test").json()
    ids = {}
    for method in ("standard", "dbvae"):
        r = web.post(f"/v1/datasets/{train['id']}/models", headers=alice, json={"method": method, **TRAIN_FAST})
        ids[method] = r.json()["resource"]["model_id"]
    assert run_jobs(app) == 2
    sign_in(web, alice)
    page = web.get(f"/models/{ids['dbvae']}").text
    assert 'aria-label="training loss (total: BCE + reconstruction + KL) per epoch' in page
    # Loss parts: one chart each (own scale), the KL's weight stated.
    assert "Loss parts" in page and page.count('aria-label="KL divergence, weight 0.0005 (kl_weight)') == 1
    assert 'aria-label="classification (BCE), weight 1' in page and 'aria-label="reconstruction (L1)' in page
    # A validation split is held out by default: its figures share charts with the same training quantity.
    assert 'aria-label="accuracy, training vs held-out validation per epoch: training' in page
    assert 'aria-label="classification loss (BCE), training vs held-out validation per epoch' in page
    assert "data-validation-note" in page and ">Validation accuracy</th>" in page
    # Only the options the method uses: a standard model shows none of the DB-VAE's.
    standard_page = web.get(f"/models/{ids['standard']}").text
    assert '<th scope="row">epochs</th>' in standard_page and '<th scope="row">val_fraction</th>' in standard_page
    for dbvae_only in ("latent_dim", "kl_weight", "reweight", "strength", "error_schedule"):
        assert f'<th scope="row">{dbvae_only}</th>' not in standard_page, dbvae_only
    assert '<th scope="row">latent_dim</th>' in page
    # Defaults: the newest debiased model against the newest standard one.
    page = web.get("/compare", params={"dataset": test["id"]}).text
    assert re.search(rf'<option value="{ids["dbvae"]}" title="[^"]*" selected>', page)
    params = {"model": ids["dbvae"], "baseline": ids["standard"], "dataset": test["id"], "group_by": "skin_tone",
              "chosen": "1"}
    page = web.get("/compare", params=params).text
    form = next(f for f in Tags(page).all("form") if f.get("data-api"))
    assert form["data-api"].split() == [f"/v1/models/{ids['dbvae']}/evaluations",
                                        f"/v1/models/{ids['standard']}/evaluations"]
    for model_id in ids.values():
        r = web.post(f"/v1/models/{model_id}/evaluations", headers={"Origin": LOOPBACK},
                     json={"dataset_id": test["id"], "group_by": ["skin_tone"]})
        assert r.status_code == 202, r.text
    page = web.get("/compare", params=params).text
    assert "data-reload-when-done" in page and page.count("data-job=") == 2
    assert run_jobs(app) == 2
    # Each evaluation row on the model page opens its per-group results, with a way to compare.
    model_page = web.get(f"/models/{ids['dbvae']}").text
    [evaluation] = [e for e in web.get("/v1/evaluations", headers=alice).json() if e["model_id"] == ids["dbvae"]]
    assert f'href="#evaluation-{evaluation["id"]}"' in model_page
    details = Tags(model_page).all("details")
    [opened] = [d for d in details if d.get("id") == f"evaluation-{evaluation['id']}"]
    assert model_page.count("label positive, skin_tone") >= 2 and "False negative rate" in model_page
    assert f'href="/v1/evaluations/{evaluation["id"]}"' in model_page
    assert f"/compare?model={ids['dbvae']}&amp;dataset={test['id']}&amp;chosen=1&amp;group_by=skin_tone" in model_page
    page = web.get("/compare", params=params).text
    assert "Worst group accuracy" in page and 'id="group-bars"' in page
    assert page.count("label positive, skin_tone") >= 3 and "training accuracy" in page
    # The two models' curves overlay the same quantity: BCE with BCE, never a DB-VAE's total loss.
    assert 'aria-label="classification loss (BCE) per epoch' in page and "training loss (total" not in page
    # The page opens with the API's verdict sentence; every group bar has its error bar and its n.
    cmp = web.get(f"/v1/models/{ids['dbvae']}/compare",
                  params={"baseline": ids["standard"], "dataset": test["id"]}).json()
    verdict = re.search(r"<p class=\"verdict[^\"]*\" data-verdict>(.*?)</p>", page, re.S)
    assert verdict and unescape(verdict.group(1)) == cmp["sentence"]
    assert page.index("data-verdict") < page.index('id="compare-form"') and "McNemar p" in cmp["sentence"]
    groups = cmp["groups"]
    # Two drawings (phone and wide card), each with an error bar per bar: 2 models x groups.
    assert page.count('class="error-bar"') == 2 * 2 * len(groups) > 0
    for g in groups:
        assert f"n={g['n']}" in page
        assert f"[{100 * g['accuracy_ci'][0]:.1f}, {100 * g['accuracy_ci'][1]:.1f}]" in page  # on the chart
        assert f"[{100 * g['accuracy_ci'][0]:.1f}%, {100 * g['accuracy_ci'][1]:.1f}%]" in page  # in the table
    assert page.count('data-worst="model"') == 1 and page.count('data-worst="baseline"') == 1
    assert 'data-change="better"' in page or 'data-change="worse"' in page or 'data-change="same"' in page
    assert ">Error rates per group</h2>" in page and "FNR model" in page and "FPR baseline" in page
    # Small groups are warned about; tested on another dataset than the models learned from: no training-set warning.
    assert "fewer than 30 samples" in page and "was trained on dataset" not in page
    # The accuracy axis stops at 100%, the loss axis at 0.
    ys = [t for t in re.findall(r'text-anchor="end">(-?[\d.]+%?)</text>', page)]
    assert not [y for y in ys if y.endswith("%") and float(y[:-1]) > 100] and not [y for y in ys if y.startswith("-")]
    # The evaluate form takes the ticked group-by boxes of the compare form, not only the address's.
    page = web.get("/compare", params={**params, "group_by": ["skin_tone", "kind"]}).text
    assert "Evaluate both models" in page
    form = next(f for f in Tags(page).all("form") if f.get("data-api"))
    assert form["data-group-from"] == "compare-form" and 'id="compare-form"' in page
    # Compared on the models' training set: warned, and why.
    page = web.get("/compare", params={**params, "dataset": train["id"]}).text
    assert page.count("was trained on dataset") == 2 and "overstates" in page and "held-out" in page


def test_compare_defaults_prefer_a_baseline_of_the_same_training_set(web, app, alice, tiny_npz_bytes,
                                                                      test_npz_bytes):
    train = upload(web, alice, tiny_npz_bytes, name="train faces").json()
    other = upload(web, alice, test_npz_bytes, filename="test.npz", name="other faces").json()
    ids = {}
    for key, ds, method in (("same", train, "standard"), ("dbvae", train, "dbvae"), ("newer", other, "standard")):
        r = web.post(f"/v1/datasets/{ds['id']}/models", headers=alice, json={"method": method, **TRAIN_FAST})
        ids[key] = r.json()["resource"]["model_id"]
    assert run_jobs(app) == 3
    sign_in(web, alice)
    page = web.get("/compare").text
    selected = {s["id"]: None for s in Tags(page).all("select")}
    assert re.search(rf'<option value="{ids["same"]}" title="[^"]*" selected>', page), selected
    assert re.search(rf'<option value="{ids["dbvae"]}" title="[^"]*" selected>', page)
    # The default test set is one neither model was trained on; the select's text starts with what matters.
    assert re.search(rf'<option value="{other["id"]}" selected>', page)
    assert f'>#{ids["dbvae"]} dbvae (histogram) · train faces · 1 ep<' in page


# --------------------------------------------------------------------------- static files, charts


def test_static_files_are_served_and_nothing_comes_from_elsewhere(web):
    for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        r = web.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    urls = re.compile(r"(?:https?:)?//[\w.-]+")
    for path in [*TEMPLATES_DIR.glob("*.html"), *STATIC_DIR.iterdir()]:
        text = path.read_text()
        assert not urls.findall(text.replace("http://www.w3.org/2000/svg", "")), path.name


def test_charts_escape_their_text_and_describe_themselves():
    svg = charts.bar_chart([("<script>alert(1)</script>", 3.0), ("b & c", 1.0)], 'counts "quoted"')
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "b &amp; c" in svg
    assert svg.startswith('<svg class="chart"') and 'role="img"' in svg and "&#34;quoted&#34;" in svg
    hist = charts.histogram([0, 1, 2, 3], {"positive": [1, 5, 2], "negative": [0, 2, 9]}, "h",
                            highlight=[2, 3])
    assert hist.count("<rect") == 2 + 6 + 1 + 1  # legend keys, bars, rare range, the negatives' hatch
    assert "url(#hatch" in hist and "rare range</text>" in hist
    line = charts.line_chart([("a", [(1, 0.5), (2, 0.25)]), ("b", [])], "curve")
    assert "<polyline" in line and line.count("<circle") == 1 + 2  # legend key, points (series b: squares)
    bars = charts.grouped_bars([("g1", [0.5, 0.75]), ("g2", [None, 1.0])], [("base", "#000"), ("new", "#00f")],
                               "acc", marked=[0])
    assert "★ g1" in bars and "base: no value" in bars and "75.0%" in bars


def test_model_options_say_which_schedule_a_gated_run_chose():
    from api.tables import TrainedModel
    from api.web.model_view import shown_options

    model = TrainedModel(method="dbvae", options={"epochs": 6, "error_schedule": None},
                         history=[{"epoch": 1}, {"epoch": 2, "error_schedule": "geometric"}])
    assert ("error_schedule", "default (ran geometric)") in shown_options(model)
    model.history = [{"epoch": 1}]                      # not taken yet (or a run without an error set)
    assert ("error_schedule", "default") in shown_options(model)
