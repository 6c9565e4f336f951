"""Audits: start an audit job (training a DB-VAE first when no model is given), read reports, list scores.

Score lists use keyset pagination over (score DESC, sample_index DESC): a page
costs the same at row 10 and at row 900,000.
"""
from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import exists, func, select, tuple_
from sqlalchemy.orm import Session

from audit.errors import DebiasError
from audit.report import check_class_sizes

from ..settings import Settings
from ..tables import Audit, AuditReview, AuditScore, Job
from . import Conflict, owned, owned_rows
from . import datasets as dataset_service
from . import jobs as job_service
from . import models as model_service

ORDERS = {"anomaly_score": AuditScore.anomaly_score, "sampling_weight": AuditScore.sampling_weight,
          "under_representation": AuditScore.under_representation}
from .limits import check_inference, check_training
from .locks import lock_datasets, lock_model_source


class InvalidCursor(ValueError):
    pass


@dataclass
class ScoreFilter:
    order: str = "anomaly_score"
    label: int | None = None
    attributes: dict[str, str] | None = None
    min_score: float | None = None         # on the ordering column
    only_anomalies: bool = False
    subgroup: int | None = None
    review: str | None = None              # a review state: a decision, "any" or "none" (see REVIEW_STATES)


REVIEW_STATES = ("reviewed", "keep", "exclude", "any", "none")


def start_audit(session: Session, settings: Settings, owner_id: int, dataset_id: int, model_id: int | None,
                audit_options: dict, train_options: dict) -> tuple[Audit, Job]:

    [dataset] = lock_datasets(session, owner_id, [dataset_id])  # until commit: a delete waits (see locks)
    class_counts = {"positive": dataset.n_positive, "negative": dataset.n_negative}
    if model_id is None:
        check_class_sizes(class_counts)  # 422, as the CLI's exit 2
        model = model_service.new_model_row(owner_id, dataset, {**train_options, "method": "dbvae",
                                                                "density": audit_options["density"]})
        check_training(settings, dataset, model, auditing=True)  # 422 before anything is stored
        session.add(model)
        session.flush()
    else:
        model = lock_model_source(session, owner_id, model_service.get(session, owner_id, model_id))
        model_service.require_ready(model)
        if model.method != "dbvae":
            raise DebiasError(f"model {model.id} is a {model.method} classifier; auditing needs a DB-VAE's latent "
                              f"space: pass a dbvae model or leave model_id out to train one")
        model_service.check_fits(model, dataset)
        check_inference(settings, dataset, model, "auditing with")
        check_class_sizes(class_counts)
    audit = Audit(owner_id=owner_id, dataset_id=dataset.id, model_id=model.id, options=audit_options,
                  status="pending")
    session.add(audit)
    session.flush()
    payload = {"audit_id": audit.id, "model_id": model.id, "train_model": model_id is None}
    job = job_service.enqueue(session, owner_id, "audit", payload, dataset.id, settings.max_attempts)
    audit.job_id = job.id
    if model_id is None:
        model.job_id = job.id
    session.commit()
    return audit, job


def get(session: Session, owner_id: int, audit_id: int) -> Audit:
    return owned(session, Audit, owner_id, audit_id, "audit")


def get_ready(session: Session, owner_id: int, audit_id: int) -> Audit:
    audit = get(session, owner_id, audit_id)
    if audit.status != "ready":
        raise Conflict(f"audit {audit_id} is {audit.status}; its scores are listed once job {audit.job_id} succeeds")
    return audit


def figure_files(report: dict | None) -> set[str]:
    """Every image file the audit wrote: its figures, the positives' traversal strips, the subgroup grids (real
    members and, for positive subgroups, generated ones)."""
    report = report or {}
    strips = {f["traversal_strip"] for f in report.get("under_represented_features", []) if f.get("traversal_strip")}
    grids = {s[k] for s in report.get("subgroups", []) for k in ("grid", "generated_grid") if s.get(k)}
    return set(report.get("figures", {}).values()) | strips | grids


def list_for(session: Session, owner_id: int, dataset_id: int | None = None) -> list[Audit]:
    return owned_rows(session, Audit, owner_id, dataset_id=dataset_id)


MAX_CURSOR_CHARS = 512


def encode_cursor(audit_id: int, order: str, value: float, index: int) -> str:
    raw = json.dumps({"a": audit_id, "o": order, "v": value, "i": index}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, audit_id: int, order: str) -> tuple[float, int]:
    """The (score, index) a cursor points at; InvalidCursor unless this audit and order made it."""
    invalid = InvalidCursor("invalid cursor; pass a page's next_cursor (as cursor) or prev_cursor (as before), "
                            "or neither for the first page")
    if len(cursor) > MAX_CURSOR_CHARS:
        raise invalid
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        value, index, made_by, made_order = data["v"], data["i"], data["a"], data["o"]
    except Exception:
        raise invalid from None
    # Scores are finite and indexes non-negative; a forged cursor must not reach the query.
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 2**31):
        raise invalid
    if made_by != audit_id:
        raise InvalidCursor(f"this cursor pages through another audit's list, not audit {audit_id}'s")
    if made_order != order:
        raise InvalidCursor(f"this cursor pages through order={made_order}, not order={order}")
    return float(value), index


def _attribute_equals(dialect: str, name: str, value: str):
    if dialect == "sqlite":
        # SQLite's JSON paths cannot quote a name holding '"': find the key with json_each instead.
        each = func.json_each(AuditScore.attributes).table_valued("key", "value")
        return exists(select(1).select_from(each).where(each.c.key == name, each.c.value == value))
    return AuditScore.attributes[name].as_string() == value


def _query(audit_id: int, f: ScoreFilter, dialect: str):
    col = ORDERS[f.order]
    q = select(AuditScore).where(AuditScore.audit_id == audit_id)
    if f.label is not None:
        q = q.where(AuditScore.label == f.label)
    if f.min_score is not None:
        q = q.where(col >= f.min_score)
    if f.only_anomalies:
        q = q.where(AuditScore.is_anomaly.is_(True))
    if f.subgroup is not None:
        q = q.where(AuditScore.subgroup == f.subgroup)
    for name, value in (f.attributes or {}).items():
        q = q.where(_attribute_equals(dialect, name, value))
    if f.review is not None:
        q = q.where(_review_state(f.review))
    return q, col


def _review_state(state: str):
    """The sample's review decision is `state` ("any": it has one, "none": it has none yet)."""
    decided = exists().where(AuditReview.audit_id == AuditScore.audit_id,
                             AuditReview.sample_index == AuditScore.sample_index)
    if state == "none":
        return ~decided
    return decided if state == "any" else decided.where(AuditReview.decision == state)


def select_scores(session: Session, audit: Audit, f: ScoreFilter):
    """The checked query of the audit's score rows that `f` keeps (unordered), for callers beyond paging."""
    _check_query(session, audit, f)
    return _query(audit.id, f, session.get_bind().dialect.name)[0]


@dataclass
class Page:
    rows: list[AuditScore]
    next_cursor: str | None      # pages on after the last row
    prev_cursor: str | None      # pages back before the first row (pass it as `before`)


def page(session: Session, audit: Audit, f: ScoreFilter, limit: int, cursor: str | None,
         before: str | None = None) -> Page:
    """One page in (order desc, sample_index desc): after `cursor`, or the page just before `before`."""
    if f.order not in ORDERS:
        raise DebiasError(f"unknown order {f.order!r}; choose one of {', '.join(ORDERS)}")
    if cursor and before:
        raise InvalidCursor("give cursor (the next page) or before (the previous page), not both")
    _check_query(session, audit, f)
    q, col = _query(audit.id, f, session.get_bind().dialect.name)
    key = tuple_(col, AuditScore.sample_index)
    if before:
        # Walk backwards (ascending) from `before`, then restore the page's descending order.
        q = q.where(key > tuple_(*decode_cursor(before, audit.id, f.order)))
        rows = list(session.scalars(q.order_by(col.asc(), AuditScore.sample_index.asc()).limit(limit + 1)))
        more_before = len(rows) > limit
        rows = rows[:limit][::-1]
        return Page(rows, _cursor_of(audit, f, rows[-1]) if rows else None,
                    _cursor_of(audit, f, rows[0]) if more_before else None)
    if cursor:
        q = q.where(key < tuple_(*decode_cursor(cursor, audit.id, f.order)))
    rows = list(session.scalars(q.order_by(col.desc(), AuditScore.sample_index.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    # After a cursor there is at least the row it was made from before this page (scores never change).
    return Page(rows, _cursor_of(audit, f, rows[-1]) if more else None,
                _cursor_of(audit, f, rows[0]) if cursor and rows else None)


def _cursor_of(audit: Audit, f: ScoreFilter, row: AuditScore) -> str:
    return encode_cursor(audit.id, f.order, getattr(row, f.order), row.sample_index)


def iterate(session: Session, audit: Audit, f: ScoreFilter, chunk: int = 5000) -> Iterator[AuditScore]:
    """Every matching row in page order, fetched a chunk at a time (for CSV export)."""
    cursor = None
    while True:
        result = page(session, audit, f, chunk, cursor)
        yield from result.rows
        session.expunge_all()
        cursor = result.next_cursor
        if cursor is None:
            return


MAX_FILTER_CHARS = 1024


def _check_filter(f: ScoreFilter) -> None:
    """Refuse what no stored score can match, rather than silently matching nothing."""
    if f.min_score is not None and not math.isfinite(f.min_score):
        raise DebiasError(f"min_score must be a finite number, got {f.min_score}")
    if f.review is not None and f.review not in REVIEW_STATES:
        raise DebiasError(f"unknown review state {f.review!r}; choose one of {', '.join(REVIEW_STATES)}")
    for name, value in (f.attributes or {}).items():
        for what, text in (("name", name), ("value", value)):
            if len(text) > MAX_FILTER_CHARS or "\x00" in text:
                raise DebiasError(f"attribute filter {what} {text[:40]!r} contains a NUL character or is over "
                                  f"{MAX_FILTER_CHARS} characters; stored attributes never are")


def _check_discovery(audit: Audit, f: ScoreFilter) -> None:
    if (f.order == "under_representation" or f.subgroup is not None) and "subgroups" not in (audit.report or {}):
        raise DebiasError(f"audit {audit.id} was made before subgroups and under_representation existed; "
                          f"run a new audit to sort or filter by them")


def _check_query(session: Session, audit: Audit, f: ScoreFilter) -> None:
    _check_filter(f)
    _check_discovery(audit, f)
    if not f.attributes:
        return
    known = dataset_service.get(session, audit.owner_id, audit.dataset_id).attributes
    unknown = [a for a in f.attributes if a not in known]
    if unknown:
        raise DebiasError(f"unknown attribute(s) {', '.join(unknown)} to filter on; this audit's dataset has: "
                          f"{', '.join(known) or 'none'}")
