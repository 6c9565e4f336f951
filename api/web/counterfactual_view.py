"""The model page's counterfactual tests: each test's flip rates with intervals, its translation checks and
pairs picture, and the form that starts one (audit.counterfactual)."""
from __future__ import annotations

from audit.counterfactual import MIN_IMAGES_PER_VALUE

from ..tables import Counterfactual, Dataset, TrainedModel
from .charts import fmt, pct
from .dataset_view import MISSING_VALUES


def _interval(ci, signed: bool = False) -> str:
    if not ci:
        return ""
    if signed:
        return f" ({ci[0]:+.3f} to {ci[1]:+.3f})"
    return f" ({pct(ci[0])}–{pct(ci[1])})"


def counterfactual_summary(row: Counterfactual, dataset: Dataset | None) -> dict:
    """One test: per direction its checks and per class flips, mean change in p(positive), accuracy before
    and after, each with its 95% interval, in words for the page."""
    result = row.result or {}
    directions = []
    for d in result.get("directions", []):
        classes = [{"name": c["class"], "n": c["n"],
                    "flips": pct(c["flip_rate"]) + _interval(c["flip_rate_ci"]),
                    "change": (f"{c['mean_probability_change']:+.3f}" if c["mean_probability_change"] is not None
                               else "–") + _interval(c["mean_probability_change_ci"], signed=True),
                    "accuracy": f"{pct(c['accuracy_original'])} → {pct(c['accuracy_translated'])}"}
                   for c in d["classes"]]
        directions.append({"name": f"{d['from']} → {d['to']}", "n": d["n"], "reliable": d["reliable"],
                           "probe": pct(d["translation"]["probe_target_share"])
                           + _interval(d["translation"]["probe_target_share_ci"]),
                           "cycle": fmt(d["translation"]["cycle_error"]) + (
                               f" ({pct(d['translation']['cycle_error_ratio'])} of the distance between two "
                               f"images of {d['from']})" if d["translation"].get("cycle_error_ratio") is not None
                               else ""), "classes": classes, "all": classes[0]})
    translator = result.get("translator", {})
    return {"row": row, "dataset": dataset, "directions": directions, "warnings": result.get("warnings", []),
            "reliable": result.get("reliable"), "trained": translator.get("trained"),
            "translator_epochs": translator.get("epochs"), "translator_seconds": fmt(translator.get("seconds")),
            "probe_accuracy": pct(result.get("probe", {}).get("held_out_accuracy")),
            "pairs_src": f"/v1/counterfactuals/{row.id}/pairs.png" if result.get("pairs_png") else None}


def testable(model: TrainedModel, datasets: list[Dataset]) -> list[dict]:
    """The datasets the model can be tested on (its image size) with, per attribute, the values that have enough
    images to translate."""
    out = []
    for d in datasets:
        if d.image_size != model.image_size:
            continue
        attributes = {name: sorted(str(v) for v, n in counts.items()
                                   if n >= MIN_IMAGES_PER_VALUE and str(v) not in MISSING_VALUES)
                      for name, counts in d.attributes.items()}
        attributes = {k: v for k, v in attributes.items() if len(v) >= 2}
        if attributes:
            out.append({"dataset": d, "attributes": attributes})
    return out


def reusable(tests: list[Counterfactual]) -> list[Counterfactual]:
    """Ready tests whose translator another test may reuse."""
    return [t for t in tests if t.status == "ready" and t.result]
