"""What the pages show: service results shaped for the templates, charts drawn, images named.

No HTTP types here except what a template needs to link to. Images are named by
an `Images` object: `LinkedImages` gives URLs into the service (the pages),
`InlineImages` gives base64 data URIs (the self-contained report download).
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.errors import DebiasError
from audit.features import TRAVERSAL_STEPS
from audit.stats import as_interval, wilson_interval

from ..routes.shapes import image_url
from ..services import NotFound
from ..services import audits as audit_service
from ..services import counterfactuals as counterfactual_service
from ..services import datasets as dataset_service
from ..services import jobs as job_service
from ..services import models as model_service
from ..services import reviews as review_service
from ..services.runners import audit_dir
from ..settings import Settings
from ..tables import Audit, AuditScore, Dataset, Job, Sample, TrainedModel
from . import audit_view, charts, counterfactual_view, curves, dataset_view, model_view
from .charts import fmt
from .naming import label_text

SAMPLE_GRID = 32          # thumbnails on a dataset page
EXTREMES = 12             # thumbnails per side (lowest / highest sampling probability), per class
ANOMALY_PAGE = 20         # rows per page of the anomaly table
DOWNLOAD_ANOMALIES = 50   # rows of the anomaly table in a downloaded report


# ------------------------------------------------------------------ images
@dataclass
class Thumb:
    src: str
    alt: str
    caption: str = ""
    index: int | None = None
    review: str | None = None   # the sample's review decision in the audit shown, if any
    details: str | None = None  # JSON rows of the dialog that shows it large (audit pages)


class LinkedImages:
    """Images as URLs the signed-in browser fetches from the service."""

    standalone = False

    def sample(self, dataset_id: int, index: int) -> str:
        return image_url(dataset_id, index)

    def figure(self, audit: Audit, name: str) -> str | None:
        file = (audit.report or {}).get("figures", {}).get(name)
        return f"/v1/audits/{audit.id}/figures/{file}" if file else None

    def file(self, audit: Audit, file: str | None) -> str | None:
        return f"/v1/audits/{audit.id}/figures/{file}" if file else None

    def traversal(self, audit: Audit, feature: int) -> str:
        return f"/audits/{audit.id}/traversals/{feature}.png"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


class InlineImages:
    """Images inlined as data URIs: the downloaded report needs no server (and no network)."""

    standalone = True

    def __init__(self, settings: Settings, session: Session, owner_id: int):
        self.settings, self.session, self.owner_id = settings, session, owner_id

    def sample(self, dataset_id: int, index: int) -> str:
        row = dataset_service.get(self.session, self.owner_id, dataset_id)
        return data_uri(png_bytes(dataset_service.images(self.settings, row)[index]))

    def figure(self, audit: Audit, name: str) -> str | None:
        return self.file(audit, (audit.report or {}).get("figures", {}).get(name))

    def file(self, audit: Audit, file: str | None) -> str | None:
        path = audit_dir(self.settings, audit.id) / file if file else None
        return data_uri(path.read_bytes()) if path and path.is_file() else None

    def traversal(self, audit: Audit, feature: int) -> str:
        return data_uri(traversal_png(self.settings, self.session, audit, feature))


# ------------------------------------------------------------------ jobs
def job_view(session: Session, owner_id: int, job_id: int | None) -> Job | None:
    if job_id is None:
        return None
    try:
        return job_service.get(session, owner_id, job_id)
    except NotFound:
        return None


# ------------------------------------------------------------------ datasets
def dataset_summary(row: Dataset) -> dict:
    return {"row": row, "attributes": {name: len(set(values) - set(dataset_view.MISSING_VALUES))
                                       for name, values in row.attributes.items()}}


def sample_labels(session: Session, dataset_id: int, indices: list[int]) -> dict[int, tuple[int, dict]]:
    rows = session.execute(select(Sample.index, Sample.label, Sample.attributes)
                           .where(Sample.dataset_id == dataset_id, Sample.index.in_(indices)))
    return {r.index: (r.label, r.attributes or {}) for r in rows}


def dataset_page(session: Session, owner_id: int, dataset_id: int) -> dict:
    row = dataset_service.get(session, owner_id, dataset_id)
    n = row.n_samples
    picks = sorted(set(np.linspace(0, n - 1, min(SAMPLE_GRID, n)).round().astype(int).tolist())) if n else []
    labels = sample_labels(session, row.id, picks)
    thumbs = []
    for i in picks:
        label, attrs = labels.get(i, (None, {}))
        desc = ", ".join(f"{k} {v}" for k, v in attrs.items() if v is not None and v not in dataset_view.MISSING_VALUES)
        shown = label_text(label) if label is not None else None
        thumbs.append(Thumb(image_url(row.id, i), f"sample {i}, label {shown or '?'}" + (f", {desc}" if desc else ""),
                            f"#{i} {shown or ''}", i))
    balance = charts.bar_chart([("positive (1)", row.n_positive), ("negative (0)", row.n_negative)],
                               f"class balance: {row.n_positive} positive, {row.n_negative} negative",
                               colors=[charts.CLASS_COLORS["positive"], charts.CLASS_COLORS["negative"]])
    attribute_charts = dataset_view.attribute_charts(session, row.id, {"positive": row.n_positive,
                                                                        "negative": row.n_negative})
    lists = dataset_view.work_lists(session, audit_service.list_for(session, owner_id, row.id),
                                    model_service.list_for(session, owner_id, row.id),
                                    lambda job_id: job_view(session, owner_id, job_id))
    return {"dataset": row, "thumbs": thumbs, "balance": balance, "attribute_charts": attribute_charts,
            **lists, "exclusions": exclusions(session, owner_id, row.id)}


def exclusions(session: Session, owner_id: int, dataset_id: int) -> list[dict]:
    """The dataset's ready audits that mark samples exclude: what "retrain without excluded" can start from."""
    out = []
    for a in audit_service.list_for(session, owner_id, dataset_id):
        if a.status == "ready":
            n = review_service.counts(session, a.id)[review_service.EXCLUDE]
            if n:
                out.append({"audit": a, "excluded": n})
    return out


# ------------------------------------------------------------------ audit report
def extremes(session: Session, audit_id: int, label: int, n: int, lowest: bool) -> list[AuditScore]:
    """The samples of one class with the lowest (or highest) debiasing sampling weight."""
    col = AuditScore.sampling_weight
    order = (col.asc(), AuditScore.sample_index.asc()) if lowest else (col.desc(), AuditScore.sample_index.desc())
    return list(session.scalars(select(AuditScore).where(AuditScore.audit_id == audit_id, AuditScore.label == label)
                                .order_by(*order).limit(n)))


def score_thumb(images, audit: Audit, r: AuditScore, what: str = "anomaly", review: str | None = None) -> Thumb:
    """A labelled picture of an audited sample (audit_view.describe); `what` is kept for callers."""
    d = audit_view.describe(r, audit_view.class_sizes(audit.report or {}), review)
    return Thumb(images.sample(audit.dataset_id, r.sample_index), d["alt"], d["caption"], r.sample_index, review,
                 audit_view.details_json(d["details"]))


@dataclass
class AnomalyQuery:
    label: int | None = None
    attribute: str | None = None       # NAME:VALUE
    min_score: float | None = None
    review: str | None = None          # a review state (audit_service.REVIEW_STATES)
    cursor: str | None = None          # the page after this cursor
    before: str | None = None          # or the page before this one
    errors: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, label: str | None, attribute: str | None, min_score: str | None, cursor: str | None,
              before: str | None = None, review: str | None = None) -> AnomalyQuery:
        q = cls(cursor=cursor or None, before=before or None)
        if review:
            if review in audit_service.REVIEW_STATES:
                q.review = review
            else:
                q.errors.append(f"review state must be one of {', '.join(audit_service.REVIEW_STATES)}, "
                                f"got {review[:40]!r}")
        if label not in (None, ""):
            if label in ("0", "1"):
                q.label = int(label)
            else:
                q.errors.append(f"label must be 0 or 1, got {label!r}")
        if attribute:
            if ":" in attribute:
                q.attribute = attribute
            else:
                q.errors.append(f"attribute filter {attribute!r} must be NAME:VALUE, e.g. skin_tone:dark")
        if min_score not in (None, ""):
            try:
                q.min_score = float(min_score)
            except ValueError:
                q.errors.append(f"minimum score must be a number, got {min_score!r}")
        return q

    def filter(self) -> audit_service.ScoreFilter:
        attrs = dict([self.attribute.split(":", 1)]) if self.attribute else {}
        return audit_service.ScoreFilter(order="anomaly_score", label=self.label, attributes=attrs,
                                         min_score=self.min_score, review=self.review)

    def review_selection(self) -> dict | None:
        """The bulk review selection (POST /v1/audits/{id}/reviews) of every sample this filter shows; None
        without a filter (a decision for the whole audit is not one click away) or with a bad one."""
        if self.errors:
            return None
        sel = {"label": self.label, "attribute": [self.attribute] if self.attribute else None,
               "min_anomaly_score": self.min_score, "review": self.review}
        sel = {k: v for k, v in sel.items() if v is not None}
        return sel or None

    def params(self, **override) -> dict:
        out = {"label": self.label, "attribute": self.attribute, "min_score": self.min_score, "review": self.review,
               **override}
        return {k: v for k, v in out.items() if v is not None and v != ""}


def anomaly_rows(session: Session, audit: Audit, q: AnomalyQuery, images, limit: int) -> dict:
    result, errors = audit_service.Page([], None, None), list(q.errors)
    if not errors:
        try:
            result = audit_service.page(session, audit, q.filter(), limit, q.cursor, q.before)
        except (audit_service.InvalidCursor, DebiasError) as exc:
            errors.append(str(exc))
    decided = review_service.decisions_of(session, audit.id, [r.sample_index for r in result.rows])
    return {"rows": [{"score": r, "review": decided.get(r.sample_index),
                      "thumb": score_thumb(images, audit, r, review=decided.get(r.sample_index))}
                     for r in result.rows],
            "next_cursor": result.next_cursor, "prev_cursor": result.prev_cursor, "errors": errors}


def feature_key(f: dict) -> int:
    """A feature's id: `feature` since features are subgroup directions; older audits keyed them by dimension."""
    return f.get("feature", f.get("dimension"))


def feature_name(f: dict) -> str:
    if "feature" in f:
        return f"feature {f['feature']}: {f.get('name') or 'subgroup ' + str(f.get('subgroup'))}"
    return f"latent {f['dimension']}"


def _feature_views(audit: Audit, report: dict, images) -> list[dict]:
    hists = {h["dimension"]: h for h in report.get("latent_histograms", [])}
    views = []
    for f in report.get("under_represented_features", []):
        h = f.get("histogram") or hists.get(f["dimension"])
        name = feature_name(f)
        title = f"{name}, {f['class']} class, rank {f['rank']}"
        lo, hi = f.get("rare_range") or (None, None)
        chart = None
        if h:
            chart = charts.histogram(h["edges"], h["counts"],
                                     f"histogram of {name} per class; rare range of the "
                                     f"{f['class']} class {fmt(lo)} to {fmt(hi)} shaded",
                                     highlight=f.get("rare_range"))
        strip = None
        if f["class"] == "positive" and f.get("traversal_strip"):
            strip = Thumb(images.traversal(audit, feature_key(f)),
                          f"traversal of {name}: {TRAVERSAL_STEPS} images decoded from the rest of the positive class "
                          f"(left) towards subgroup {f.get('subgroup')} (right)")
        views.append({"f": f, "key": feature_key(f), "name": name, "title": title, "chart": chart, "strip": strip})
    return views


def _class_legend(rows: list[dict]) -> list[tuple[str, str]]:
    classes = sorted({r["class"] for r in rows}, key=lambda c: c != "positive")
    return [(f"{c} class", charts.CLASS_COLORS.get(c, charts.PALETTE[0])) for c in classes]


def _with_share_ci(row: dict) -> dict:
    """The row with its share's 95% Wilson interval; reports written before the engine added it get it here,
    from the count and the class size (count / share)."""
    if row.get("share_ci") is not None or not row.get("share"):
        return row
    n_class = round(row["count"] / row["share"])
    return {**row, "share_ci": as_interval(*wilson_interval(row["count"], n_class))}


def _representation(report: dict) -> list[dict]:
    by_attr: dict[str, list[dict]] = {}
    for r in report.get("representation", []):
        by_attr.setdefault(r["attribute"], []).append(r)
    out = []
    for name, rows in by_attr.items():
        rows = sorted(map(_with_share_ci, rows), key=lambda r: (r["class"] != "positive", -r["count"]))
        items = [(r["value"], r["mean_weight_ratio"]) for r in rows]
        chart = charts.bar_chart(
            items, f"mean sampling weight relative to uniform per value of {name}, per class: " + ", ".join(
                f"{r['value']} ({r['class']}) {fmt(r['mean_weight_ratio'])}" for r in rows),
            reference=1.0, reference_label="uniform = 1",
            colors=[charts.CLASS_COLORS.get(r["class"], charts.PALETTE[0]) for r in rows], legend=_class_legend(rows))
        out.append({"attribute": name, "rows": rows, "chart": chart})
    return out


def _relations(report: dict) -> dict:
    rel = report.get("attribute_relations", [])
    items = [(r["attribute"], r["strength"]) for r in rel]
    chart = charts.bar_chart(items, "strength of the relation of each attribute to the latent features (largest eta "
                                    "squared), per class: " + ", ".join(f"{r['attribute']} ({r['class']}) "
                                                                        f"{fmt(r['strength'])}" for r in rel),
                             max_value=1.0,
                             colors=[charts.CLASS_COLORS.get(r["class"], charts.PALETTE[0]) for r in rel],
                             legend=_class_legend(rel)) if items else None
    return {"rows": rel, "chart": chart}


def audit_page(session: Session, settings: Settings, owner_id: int, audit_id: int, images, q: AnomalyQuery,
               anomaly_limit: int = ANOMALY_PAGE) -> dict:
    audit = audit_service.get(session, owner_id, audit_id)
    dataset = dataset_service.get(session, owner_id, audit.dataset_id)
    ctx = {"audit": audit, "dataset": dataset, "job": job_view(session, owner_id, audit.job_id),
           "model": model_service.get(session, owner_id, audit.model_id), "images": images}
    if audit.status != "ready" or not audit.report:
        return ctx
    report = audit.report
    summary = report.get("summary", {})
    features = report.get("under_represented_features", [])
    side_by_side = []
    for label in (1, 0):
        low, high = (extremes(session, audit.id, label, EXTREMES, lowest) for lowest in (True, False))
        decided = review_service.decisions_of(session, audit.id, [r.sample_index for r in low + high])
        lowest, highest = ([score_thumb(images, audit, r, "weight", decided.get(r.sample_index)) for r in rows]
                           for rows in (low, high))
        if lowest or highest:
            side_by_side.append({"class": label_text(label), "lowest": lowest, "highest": highest})
    figures = [(name, images.figure(audit, name)) for name in (report.get("figures") or {})]
    attribute_options = [f"{name}:{value}" for name, values in dataset.attributes.items() for value in values]
    subgroups = [{**s, "src": images.file(audit, s.get("grid")), "generated_src": images.file(audit,
                                                                                               s.get("generated_grid"))}
                 for s in report.get("subgroups", [])]
    ctx.update(report=report, summary=summary, side_by_side=side_by_side, subgroups=subgroups,
               features=_feature_views(audit, report, images), representation=_representation(report),
               relations=_relations(report), figures=[(n, src) for n, src in figures if src],
               anomalies=anomaly_rows(session, audit, q, images, anomaly_limit), query=q,
               filter_selection=q.review_selection(),
               attribute_options=attribute_options, anomaly_info=report.get("anomalies", {}),
               review_counts=review_service.counts(session, audit.id), decisions=review_service.DECISIONS,
               review_states=audit_service.REVIEW_STATES,
               feature_dims={f["dimension"] for f in features if "feature" not in f})
    ctx.update(verdict=audit_view.verdict_view(audit, report, images),
               downloads=audit_view.downloads(audit, report, images),
               drawn=lambda r: audit_view.drawn_short(r, audit_view.class_sizes(report)),
               latent_map=audit_view.map_view(session, audit, report, images, audit_view.class_sizes(report)))
    return ctx


# ------------------------------------------------------------------ traversal strips
def traversal_png(settings: Settings, session: Session, audit: Audit, feature: int) -> bytes:
    """The decoded traversal strip the audit wrote for one of its positive-class features, as PNG."""
    strips = {feature_key(f): f.get("traversal_strip")
              for f in (audit.report or {}).get("under_represented_features", []) if f["class"] == "positive"}
    path = audit_dir(settings, audit.id) / strips[feature] if strips.get(feature) else None
    if path is None or not path.is_file():
        raise NotFound(f"audit {audit.id} has no traversal for feature {feature}; traversals are "
                       f"drawn for its under-represented features of the positive class")
    return path.read_bytes()


# ------------------------------------------------------------------ models and comparison
def model_label(m: TrainedModel, datasets: dict[int, Dataset] | None = None) -> str:
    ds = datasets.get(m.dataset_id) if datasets else None
    method = f"{m.method} ({m.density})" if m.density else m.method
    epochs = m.options.get("epochs")
    on = f" on {ds.name}" if ds is not None else f" on dataset {m.dataset_id}"
    return f"model {m.id}: {method}{on}, {epochs} epoch{'s' if epochs != 1 else ''}"


def training_curves(models: list[tuple[str, TrainedModel]], colors: list[str] | None = None) -> list[dict]:
    """Loss and accuracy per epoch, one line per model (see curves.py: several models overlay BCE with BCE)."""
    return curves.training_curves(models, colors)


def model_page(session: Session, owner_id: int, model_id: int) -> dict:
    model = model_service.get(session, owner_id, model_id)
    dataset = dataset_service.get(session, owner_id, model.dataset_id)
    evaluations = model_service.list_evaluations(session, owner_id, model.id)
    datasets = {d.id: d for d in dataset_service.list_for(session, owner_id)}
    has_val, epochs = model_view.epoch_rows(model)
    return {"model": model, "dataset": dataset, "job": job_view(session, owner_id, model.job_id),
            "options": model_view.shown_options(model),
            "retrain_fields": model_view.retrain_fields(model),
            "exclusions": exclusions(session, owner_id, model.dataset_id),
            "curves": training_curves([(f"model {model.id}", model)]),
            "parts": curves.loss_parts(model), "has_val": has_val, "epochs": epochs,
            "evaluations": [{"row": e, "dataset": datasets.get(e.dataset_id),
                             "job": job_view(session, owner_id, e.job_id), **model_view.evaluation_view(model, e)}
                            for e in evaluations],
            "label": model_label(model, datasets),
            **counterfactual_section(session, owner_id, model, datasets)}


def counterfactual_section(session: Session, owner_id: int, model: TrainedModel, datasets: dict) -> dict:
    everyone = counterfactual_service.list_for(session, owner_id)
    tests = [t for t in everyone if t.model_id == model.id]
    return {"counterfactuals": [{**counterfactual_view.counterfactual_summary(t, datasets.get(t.dataset_id)),
                                 "job": job_view(session, owner_id, t.job_id)} for t in tests],
            "testable": counterfactual_view.testable(model, list(datasets.values())),
            "translators": counterfactual_view.reusable(everyone)}
