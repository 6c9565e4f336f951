"""The audit page's own views: the verdict, labelled sample pictures and the latent map.

Kept apart from views.py (shared by every page). Every picture of a sample says
what it is (class, subgroup, attribute values) and how often the debiasing
sampler draws it, in words, relative to the average sample of its class; its
`details` are the rows of the dialog that shows it large.  No imports from
views.py (it imports this module).
"""
from __future__ import annotations

import json
from html import escape

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.subgroups import MISSING_VALUES
from audit.verdict import build_verdict

from ..services import reviews as review_service
from ..tables import Audit, AuditScore
from .naming import CLASS_OF_LABEL

# Okabe-Ito, then darker extras: told apart by most colour-blind readers; subgroups beyond reuse them.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#8C6D1F", "#000000",
           "#6A3D9A", "#B15928")
MAP_W, MAP_H, MAP_PAD = 640, 400, 14


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def class_sizes(report: dict) -> dict[int, int]:
    counts = (report.get("summary") or {}).get("class_counts") or {}
    return {label: int(counts.get(name) or 0) for label, name in CLASS_OF_LABEL.items()}


def weight_ratio(weight: float, label: int, sizes: dict[int, int]) -> float | None:
    """How many times as often as the average sample of its class the sampler draws it.

    Weights sum to 1 over the dataset, each class 1 / (number of classes): the class's average sample
    has weight 1 / (class size x classes)."""
    n_classes = sum(1 for n in sizes.values() if n)
    return weight * sizes[label] * n_classes if sizes.get(label) and weight is not None else None


def drawn_text(ratio: float | None, cls: str) -> str:
    if ratio is None:
        return "sampling weight unknown"
    value = f"{ratio:.1f}" if ratio >= 0.95 else f"{ratio:.2g}"
    return f"drawn {value}× as often as the average {cls} sample"


def drawn_short(r: AuditScore, sizes: dict[int, int]) -> str:
    """"3.1×": the sample's draw rate relative to its class's average sample, for a table cell."""
    ratio = weight_ratio(r.sampling_weight, int(r.label), sizes)
    return "n/a" if ratio is None else f"{ratio:.2g}×"


def known_attributes(attributes: dict | None) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in (attributes or {}).items() if v is not None and str(v) not in MISSING_VALUES]


SCORE_ROWS = ("Sampling probability", "Log density (latent)", "Anomaly score (robust z)", "Reconstruction error",
              "Predicted probability (positive)", "Under-representation (0-1)", "Review decision")


def sample_parts(r: AuditScore, sizes: dict[int, int], review: str | None = None) -> dict:
    """The facts every picture of a sample shows, formatted once: `compose` (here) and audit_map.js (for the
    map's grid) build the same alt text, caption and dialog rows from them."""
    cls = CLASS_OF_LABEL.get(int(r.label), str(r.label))
    ratio = weight_ratio(r.sampling_weight, int(r.label), sizes)
    return {"i": int(r.sample_index), "l": cls, "g": r.subgroup, "a": dict(known_attributes(r.attributes)),
            "w": ratio, "u": r.under_representation, "drawn": drawn_text(ratio, cls),
            "short": "n/a" if ratio is None else f"{ratio:.2g}×", "an": f"{r.anomaly_score:.1f}",
            "review": review,
            "s": [_num(r.sampling_weight), _num(r.log_density),
                  f"{r.anomaly_score:.2f}" + (" · flagged" if r.is_anomaly else ""), _num(r.reconstruction_error),
                  _num(r.predicted_probability), _num(r.under_representation), review or "not reviewed"]}


def compose(p: dict) -> dict:
    """alt, caption and details (the dialog's rows) from `sample_parts`; audit_map.js mirrors it."""
    what = [p["l"]] + ([f"subgroup {p['g']}"] if p["g"] is not None else []) + [f"{k}={v}" for k, v in p["a"].items()]
    alt = f"sample {p['i']}: {', '.join(what)}; {p['drawn']}; anomaly score {p['an']}"
    if p["review"]:
        alt += f"; review decision {p['review']}"
    caption = f"#{p['i']} · {' · '.join(what)} · drawn {p['short']}"
    details = [("Sample", str(p["i"])), ("Class", p["l"]), ("Subgroup", "n/a" if p["g"] is None else str(p["g"])),
               *p["a"].items(), ("Drawn", p["drawn"]), *zip(SCORE_ROWS, p["s"])]
    return {"alt": alt, "caption": caption, "details": details}


def describe(r: AuditScore, sizes: dict[int, int], review: str | None = None) -> dict:
    """alt, caption and details of one sample of an audit, and its parts."""
    parts = sample_parts(r, sizes, review)
    return {**compose(parts), "parts": parts, "ratio": parts["w"], "class": parts["l"], "attrs": parts["a"]}


def details_json(details: list[tuple[str, str]]) -> str:
    return json.dumps(details, separators=(",", ":"))


# ------------------------------------------------------------------ the verdict
def verdict_view(audit: Audit, report: dict, images) -> dict:
    """The report's verdict (built here for reports written before it), each subgroup with its picture."""
    verdict = report.get("verdict") or build_verdict(report)
    grids = {s["id"]: s.get("grid") for s in report.get("subgroups", [])}
    subgroups = []
    for s in verdict["subgroups"]:
        e = s["enriched"][0] if s["enriched"] else None
        # "mostly" only when most members hold the value; otherwise it is only more common here than elsewhere.
        held = "" if e is None else f", {'mostly' if e['precision'] >= 0.5 else 'enriched in'} " \
                                    f"{e['attribute']}={e['value']}"
        subgroups.append({**s, "src": images.file(audit, grids.get(s["id"])),
                          "alt": f"members of subgroup {s['id']} ({s['class']}{held})"})
    return {**verdict, "subgroups": subgroups}


# ------------------------------------------------------------------ the latent map
def _color_of(key, palette=PALETTE) -> str:
    return palette[int(key) % len(palette)] if key is not None else "#9ca3af"


def map_view(session: Session, audit: Audit, report: dict, images, sizes: dict[int, int]) -> dict | None:
    """The stored 2-D projection's points as an SVG (coloured by subgroup) and, for the page's script,
    one record per point: sample, class, subgroup, attributes, drawn ratio, picture, caption, details."""
    lm = report.get("latent_map")
    if not lm or not lm.get("points"):
        return None
    points = lm["points"]
    rows = {r.sample_index: r for r in session.scalars(
        select(AuditScore).where(AuditScore.audit_id == audit.id,
                                 AuditScore.sample_index.in_([p[0] for p in points])))}
    decided = review_service.decisions_of(session, audit.id, list(rows))
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (MAP_W - 2 * MAP_PAD) / ((x1 - x0) or 1.0)
    sy = (MAP_H - 2 * MAP_PAD) / ((y1 - y0) or 1.0)
    marks, records = [], []
    for index, x, y in points:
        r = rows.get(index)
        if r is None:
            continue
        d = describe(r, sizes, decided.get(index))
        cx, cy = MAP_PAD + (x - x0) * sx, MAP_H - MAP_PAD - (y - y0) * sy
        k, fill = len(records), _color_of(r.subgroup)
        # Class by shape as well as colour: positives are circles, negatives squares.
        if int(r.label) == 1:
            marks.append(f'<circle data-k="{k}" cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{fill}"/>')
        else:
            marks.append(f'<rect data-k="{k}" x="{cx - 3:.1f}" y="{cy - 3:.1f}" width="6" height="6" fill="{fill}"/>')
        # Parts, not the composed texts: a third of the bytes (2,000 points with 8 attributes: 0.7 MB, not 2.4).
        records.append({k: v for k, v in d["parts"].items() if v is not None or k == "g"})
    explained = lm.get("explained_variance_ratio") or [0, 0]
    subgroups = sorted({rec["g"] for rec in records if rec["g"] is not None})
    attributes = sorted({k for rec in records for k in rec["a"]})
    legend = [{"key": g, "color": _color_of(g), "label": f"subgroup {g}",
               "n": sum(rec["g"] == g for rec in records)} for g in subgroups]
    svg = Markup(
        f'<svg class="latent-map" viewBox="0 0 {MAP_W} {MAP_H}" role="img" data-map '
        f'aria-labelledby="map-title" preserveAspectRatio="xMidYMid meet">'
        f'<title id="map-title">Latent map: {len(records)} samples on the first two principal components of the '
        f'latent means, coloured by subgroup; circles positive, squares negative</title>'
        f'<rect class="map-frame" x="0.5" y="0.5" width="{MAP_W - 1}" height="{MAP_H - 1}" fill="none"/>'
        f'<g class="map-points">{"".join(marks)}</g>'
        f'<rect class="map-box" x="0" y="0" width="0" height="0" hidden/></svg>')
    # The downloaded report draws the map without its script, so no picture URLs are needed there.
    src = None if images.standalone else images.sample(audit.dataset_id, 0)
    data = {"points": records, "palette": list(PALETTE), "score_rows": list(SCORE_ROWS),
            "src": src and src.replace("/samples/0/", "/samples/{i}/")}
    # "</" cannot end the data block early: JSON allows "<\/".
    blob = Markup(json.dumps(data, separators=(",", ":")).replace("</", "<\\/"))
    return {"svg": svg, "data": blob, "legend": legend, "attributes": attributes,
            "n_points": len(records), "n_samples": lm.get("n_samples", len(records)), "sampled": lm.get("sampled"),
            "x_label": f"PC 1 ({explained[0]:.0%} of the latent variance)",
            "y_label": f"PC 2 ({explained[1]:.0%} of the latent variance)",
            "method": escape(str(lm.get("method", "pca")).upper())}


def downloads(audit: Audit, report: dict, images) -> list[dict]:
    """The report's figures (they repeat what the page shows) as files to save, with plain names."""
    names = {"sampling_extremes_positive": "Positives by sampling probability",
             "sampling_extremes_negative": "Negatives by sampling probability",
             "traversals": "Traversals of the under-represented features",
             "latent_histograms": "Projections on the top features",
             "reconstructions": "Inputs and their reconstructions"}
    out = []
    for name, file in (report.get("figures") or {}).items():
        href = images.figure(audit, name)
        if href:
            out.append({"href": href, "file": file, "label": names.get(name, name.replace("_", " "))})
    for s in report.get("subgroups", []):
        href = images.file(audit, s.get("grid"))
        if href:
            out.append({"href": href, "file": s["grid"], "label": f"Subgroup {s['id']} ({s['class']}) members"})
    return out


__all__ = ["describe", "details_json", "verdict_view", "map_view", "downloads", "class_sizes", "weight_ratio"]
