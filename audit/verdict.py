"""The audit's verdict: what an auditor should read first, built from the report's own parts.

Three answers, in order: which discovered subgroups the data lacks (and how
badly the model serves them, and which supplied attribute values they hold),
which supplied attribute values are drawn most by the debiasing sampler (the
under-represented ones), and how many samples were flagged as anomalies and
by which rule.  Every share and rate carries its 95% Wilson interval.  Pure
over a report dict, so the service can build it for reports written before
it existed.
"""
from __future__ import annotations

from .stats import as_interval, wilson_interval
from .subgroups import MISSING_VALUES

TOP_SUBGROUPS = 3       # subgroups in the verdict
TOP_ENRICHED = 2        # enriched attribute values per subgroup
TOP_ATTRIBUTES = 12     # attribute values in the verdict (the full table stays in `representation`)


def _ci(k: float, n: float) -> list[float] | None:
    return as_interval(*wilson_interval(round(k), round(n))) if n and n > 0 else None


def _enriched(e: dict, n_members: int) -> dict:
    """An enriched value with intervals: precision over the members holding a value of the attribute,
    recall over the class's samples holding this value (both recovered from the count)."""
    count = e.get("count", round(e["precision"] * n_members))
    out = {k: e[k] for k in ("attribute", "value", "precision", "recall") if k in e}
    out.update(count=int(count), lift=e.get("lift"),
               precision_ci=_ci(count, count / e["precision"]) if e["precision"] > 0 else None,
               recall_ci=_ci(count, count / e["recall"]) if e.get("recall") else None)
    return out


def _subgroup(s: dict) -> dict:
    n, share = s["n"], s["share"]
    class_n = round(n / share) if share else n
    error = s.get("error_rate")
    return {"id": s["id"], "class": s["class"], "rank": s.get("rank"), "n": n, "class_n": class_n,
            "share": share, "share_ci": _ci(n, class_n), "mean_weight_ratio": s["mean_weight_ratio"],
            "error_rate": error, "error_rate_ci": _ci(error * n, n) if error is not None else None,
            "enriched": [_enriched(e, n) for e in s.get("enriched", [])[:TOP_ENRICHED]]}


def anomaly_sentence(an: dict, n_samples: int) -> str:
    """One line: how many were flagged, and the rule that flagged them."""
    count = an.get("count", 0)
    source = {"both": "latent density or reconstruction error", "density": "latent density",
              "reconstruction": "reconstruction error"}.get(an.get("method"), "anomaly score")
    tail = an.get("tail")
    rule = (f"each class's least typical {tail:.0%} by {source}, and any sample beyond robust z "
            f"{an.get('threshold')}" if tail else f"robust z-score of {source} at or above {an.get('threshold')}")
    return f"{count} of {n_samples} samples flagged as anomalies ({count / max(n_samples, 1):.1%}): {rule}."


def build_verdict(report: dict, top: int = TOP_SUBGROUPS) -> dict:
    """{subgroups, attributes, anomalies, headline} from a report's subgroups, representation and anomalies.

    A subgroup enters when it is not small and the sampler draws it more often than its class's
    average (mean_weight_ratio > 1), in the report's rank order (most under-represented and worst
    served first).  Attribute values rank by mean_weight_ratio, highest first; missing values are left out.
    """
    ranked = [s for s in report.get("subgroups", []) if not s.get("small") and s["mean_weight_ratio"] > 1 + 1e-9]
    subgroups = [_subgroup(s) for s in ranked[:top]]
    rows = [r for r in report.get("representation", []) if str(r["value"]) not in MISSING_VALUES]
    rows.sort(key=lambda r: (-r["mean_weight_ratio"], r["attribute"], r["class"], str(r["value"])))
    attributes = [{k: r.get(k) for k in ("attribute", "value", "class", "count", "share", "share_ci",
                                          "mean_weight_ratio")} for r in rows[:TOP_ATTRIBUTES]]
    for a in attributes:  # reports written before representation carried intervals
        if a["share_ci"] is None and a["share"]:
            a["share_ci"] = _ci(a["count"], a["count"] / a["share"])
    an = report.get("anomalies", {})
    n_samples = report.get("summary", {}).get("n_samples", 0)
    anomalies = {"count": an.get("count", 0), "rate": an.get("rate", 0.0),
                 "sentence": anomaly_sentence(an, n_samples)}
    return {"subgroups": subgroups, "attributes": attributes, "anomalies": anomalies,
            "headline": headline(subgroups, attributes)}


def headline(subgroups: list[dict], attributes: list[dict]) -> str:
    if subgroups:
        s = subgroups[0]
        error = "" if s["error_rate"] is None else f", error rate {s['error_rate']:.0%}"
        e = s["enriched"][0] if s["enriched"] else None
        held = f"; most enriched value {e['attribute']}={e['value']}, held by {e['precision']:.0%} of it" if e else ""
        return (f"Most under-represented: subgroup {s['id']} of the {s['class']} class, {s['n']} samples "
                f"({s['share']:.1%} of the class), drawn {s['mean_weight_ratio']:.1f}x as often as average{error}"
                f"{held}.")
    if attributes and attributes[0]["mean_weight_ratio"] > 1:
        a = attributes[0]
        return (f"No discovered subgroup stands out; the most under-represented attribute value is "
                f"{a['attribute']}={a['value']} ({a['class']}, {a['count']} samples, {a['share']:.1%}), "
                f"drawn {a['mean_weight_ratio']:.1f}x as often as average.")
    return "No discovered subgroup or attribute value is drawn more often than average."


__all__ = ["build_verdict", "anomaly_sentence", "TOP_SUBGROUPS"]
