"""The model page's counterfactual tests: the form that starts one, each test's flips with intervals, its
translation checks and pairs picture."""
from __future__ import annotations

from html import unescape

from ..api.test_api_counterfactuals import lit_npz_bytes, ready_model  # noqa: F401  (fixture)
from .conftest import run_jobs, sign_in
from .test_pages import Tags


def test_model_page_starts_and_shows_counterfactual_tests(web, app, alice, lit_npz_bytes):  # noqa: F811
    ds, model = ready_model(web, app, alice, lit_npz_bytes)
    sign_in(web, alice)
    page = web.get(f"/models/{model}").text
    assert "No counterfactual tests yet." in page, page[page.find("counterfactuals-heading"):][:3000]
    assert "data-counterfactual-form" in page, page[page.find("counterfactuals-heading"):][:3000]
    form = next(f for f in Tags(page).all("form") if "data-counterfactual-form" in f)
    assert form["data-api"] == f"/v1/models/{model}/counterfactuals"
    # The dataset's attributes with two values of 10+ images are offered; lighting is one.
    assert '<option value="lighting">' in page and 'value="bright"' in page and 'value="dim"' in page

    r = web.post(f"/v1/models/{model}/counterfactuals", headers=alice,
                 json={"dataset_id": ds, "attribute": "lighting", "values": ["bright", "dim"], "epochs": 1})
    assert r.status_code == 202, r.text
    test_id = r.json()["resource"]["counterfactual_id"]
    assert run_jobs(app) == 1
    result = web.get(f"/v1/counterfactuals/{test_id}", headers=alice).json()["result"]
    page = unescape(web.get(f"/models/{model}").text)
    assert f'id="counterfactual-{test_id}"' in page and f"Test {test_id}: lighting bright ↔ dim" in page
    first = result["directions"][0]["classes"][0]
    lo, hi = first["flip_rate_ci"]
    assert f"bright → dim: {100 * first['flip_rate']:.1f}% ({100 * lo:.1f}%–{100 * hi:.1f}%)" in page
    assert "Mean change in p(positive) (95% interval)" in page and "Accuracy, original → translated" in page
    assert f'src="/v1/counterfactuals/{test_id}/pairs.png"' in page
    if result["reliable"]:
        assert "data-warning" not in page
    else:  # a translator of one epoch on 48 images may well fail its check: the page must say so
        assert "unreliable" in page and all(w in page for w in result["warnings"])
    # Its translator is offered for the next test.
    assert f"reuse test {test_id}'s (lighting bright ↔ dim, model {model})" in page
