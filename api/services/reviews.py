"""Review decisions on an audit's samples (audit.reviews): record, list, export, and the exclusion a
training job takes from them.

One row per reviewed sample holds its latest decision, tags, note, who (the owner whose key made it)
and when. A decision for many samples at once is one INSERT ... SELECT over the audit's scores with
an upsert, so marking a 100k-sample subgroup costs one statement, not 100k round trips.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import JSON, Integer, String, bindparam, delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audit.errors import DebiasError

from ..db import UTCDateTime, utcnow
from ..tables import Audit, AuditReview, AuditScore, Dataset
from . import Conflict, NotFound
from . import audits as audit_service

DECISIONS = ("reviewed", "keep", "exclude")   # audit.reviews.DECISIONS
EXCLUDE = "exclude"


@dataclass(frozen=True)
class Reviewer:
    """Who records a decision: the owner behind the request's API key."""

    id: int
    name: str


@dataclass
class Selection:
    """The samples a bulk decision covers; every given criterion must hold."""

    indices: list[int] | None = None
    subgroup: int | None = None
    label: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    flagged_only: bool | None = None
    min_anomaly_score: float | None = None
    min_under_representation: float | None = None
    review: str | None = None

    def is_empty(self) -> bool:
        return (self.indices is None and self.subgroup is None and self.label is None and not self.attributes
                and self.flagged_only is None and self.min_anomaly_score is None
                and self.min_under_representation is None and self.review is None)


def _score_query(session: Session, audit: Audit, sel: Selection):
    by_rarity = sel.min_under_representation is not None
    f = audit_service.ScoreFilter(order="under_representation" if by_rarity else "anomaly_score",
                                  min_score=sel.min_under_representation if by_rarity else sel.min_anomaly_score,
                                  label=sel.label, attributes=sel.attributes, only_anomalies=bool(sel.flagged_only),
                                  subgroup=sel.subgroup, review=sel.review)
    q = audit_service.select_scores(session, audit, f)
    if by_rarity and sel.min_anomaly_score is not None:
        q = q.where(AuditScore.anomaly_score >= sel.min_anomaly_score)
    if sel.flagged_only is False:
        q = q.where(AuditScore.is_anomaly.is_(False))
    if sel.indices is not None:
        # Inline integers (validated as such): a bound parameter each would pass SQLite's limit of 32,766.
        q = q.where(AuditScore.sample_index.in_(bindparam("indices", sorted(set(sel.indices)), expanding=True,
                                                          literal_execute=True)))
    return q


def _check_selection(session: Session, audit: Audit, sel: Selection) -> None:
    if sel.is_empty():
        raise DebiasError("the selection is empty: give indices, subgroup, label, attribute, flagged_only, "
                          "min_anomaly_score, min_under_representation or review (e.g. {\"subgroup\": 3})")
    if sel.subgroup is not None:
        known = sorted(s["id"] for s in (audit.report or {}).get("subgroups", []))
        if known and sel.subgroup not in known:
            raise DebiasError(f"audit {audit.id} has no subgroup {sel.subgroup}; its subgroups are "
                              f"{', '.join(map(str, known))}")
    if sel.indices is not None:
        wanted = set(sel.indices)
        found = set(session.scalars(select(AuditScore.sample_index).where(
            AuditScore.audit_id == audit.id,
            AuditScore.sample_index.in_(bindparam("indices", sorted(wanted), expanding=True, literal_execute=True)))))
        missing = sorted(wanted - found)
        if missing:
            raise DebiasError(f"audit {audit.id} has no sample {', '.join(map(str, missing[:5]))}"
                              f"{f' (and {len(missing) - 5} more)' if len(missing) > 5 else ''}; its samples are "
                              f"0-{(audit.n_samples or 1) - 1}")


def _upsert(session: Session, audit: Audit, scores, decision: str, tags: list[str], note: str,
            who: Reviewer) -> None:
    """Record the decision for every score row `scores` selects, replacing earlier decisions."""
    dialect = session.get_bind().dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert
    rows = scores.with_only_columns(
        AuditScore.audit_id, AuditScore.sample_index, literal(decision, String), literal(tags, JSON),
        literal(note, String), literal(who.id, Integer), literal(who.name, String), literal(utcnow(), UTCDateTime))
    columns = ["audit_id", "sample_index", "decision", "tags", "note", "reviewer_id", "reviewer", "reviewed_at"]
    stmt = insert(AuditReview).from_select(columns, rows)
    stmt = stmt.on_conflict_do_update(index_elements=["audit_id", "sample_index"],
                                      set_={c: stmt.excluded[c] for c in columns[2:]})
    session.execute(stmt)


def decide(session: Session, who: Reviewer, audit_id: int, index: int, decision: str, tags: list[str],
           note: str) -> AuditReview:
    """Record one sample's decision; NotFound when the audit (or the sample in it) does not exist."""
    audit = audit_service.get_ready(session, who.id, audit_id)
    if session.get(AuditScore, (audit.id, index)) is None:
        raise NotFound(f"audit {audit_id} has no sample {index}; its samples are 0-{(audit.n_samples or 1) - 1}")
    _upsert(session, audit, select(AuditScore).where(AuditScore.audit_id == audit.id,
                                                     AuditScore.sample_index == index), decision, tags, note, who)
    session.commit()
    return session.get(AuditReview, (audit.id, index), populate_existing=True)


def decide_many(session: Session, who: Reviewer, audit_id: int, sel: Selection, decision: str, tags: list[str],
                note: str) -> int:
    """Record the decision for every sample of the selection; returns how many."""
    audit = audit_service.get_ready(session, who.id, audit_id)
    _check_selection(session, audit, sel)
    scores = _score_query(session, audit, sel)
    count = session.scalar(select(func.count()).select_from(scores.subquery()))
    if count:
        _upsert(session, audit, scores, decision, tags, note, who)
    session.commit()
    return count


def forget(session: Session, owner_id: int, audit_id: int, index: int) -> None:
    """Remove one sample's decision (it is then unreviewed); nothing to remove is fine."""
    audit = audit_service.get_ready(session, owner_id, audit_id)
    if session.get(AuditScore, (audit.id, index)) is None:
        raise NotFound(f"audit {audit_id} has no sample {index}; its samples are 0-{(audit.n_samples or 1) - 1}")
    session.execute(delete(AuditReview).where(AuditReview.audit_id == audit.id, AuditReview.sample_index == index))
    session.commit()


def _check_decision(decision: str | None) -> None:
    if decision is not None and decision not in DECISIONS:
        raise DebiasError(f"unknown decision {decision!r}; choose one of {', '.join(DECISIONS)}")


def page(session: Session, audit: Audit, decision: str | None, limit: int,
         after: int | None) -> tuple[list[tuple[AuditReview, int, int | None]], int | None]:
    """(review, label, subgroup) rows in sample order after sample `after`, and the next page's `after`."""
    _check_decision(decision)
    q = (select(AuditReview, AuditScore.label, AuditScore.subgroup)
         .join(AuditScore, (AuditScore.audit_id == AuditReview.audit_id)
               & (AuditScore.sample_index == AuditReview.sample_index))
         .where(AuditReview.audit_id == audit.id))
    if decision is not None:
        q = q.where(AuditReview.decision == decision)
    if after is not None:
        q = q.where(AuditReview.sample_index > after)
    rows = [tuple(r) for r in session.execute(q.order_by(AuditReview.sample_index).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1][0].sample_index if more else None


def iterate(session: Session, audit: Audit, decision: str | None, chunk: int = 5000) -> Iterator[tuple]:
    after = None
    while True:
        rows, after = page(session, audit, decision, chunk, after)
        yield from rows
        session.expunge_all()
        if after is None:
            return


def counts(session: Session, audit_id: int) -> dict[str, int]:
    found = dict(session.execute(select(AuditReview.decision, func.count()).where(AuditReview.audit_id == audit_id)
                                 .group_by(AuditReview.decision)).all())
    return {d: int(found.get(d, 0)) for d in DECISIONS}


def decisions_of(session: Session, audit_id: int, indices: list[int]) -> dict[int, str]:
    """{sample index: decision} for those of `indices` that have one (a page of scores)."""
    if not indices:
        return {}
    return dict(session.execute(select(AuditReview.sample_index, AuditReview.decision).where(
        AuditReview.audit_id == audit_id, AuditReview.sample_index.in_(indices))).all())


def exclusion_for(session: Session, owner_id: int, audit_id: int, dataset: Dataset) -> list[int]:
    """The samples audit `audit_id` marks exclude now, for a training job on `dataset`, checked: the audit is
    the owner's (404), of this dataset and ready, marks some samples, and leaves both classes some."""
    audit = audit_service.get(session, owner_id, audit_id)
    if audit.dataset_id != dataset.id:
        raise DebiasError(f"audit {audit_id} is of dataset {audit.dataset_id}, not dataset {dataset.id}; "
                          f"exclude_from_audit takes an audit of the dataset being trained on")
    if audit.status != "ready":
        raise Conflict(f"audit {audit_id} is {audit.status}; its samples can be reviewed (and excluded) once "
                       f"job {audit.job_id} succeeds")
    rows = session.execute(select(AuditScore.sample_index, AuditScore.label)
                           .join(AuditReview, (AuditReview.audit_id == AuditScore.audit_id)
                                 & (AuditReview.sample_index == AuditScore.sample_index))
                           .where(AuditScore.audit_id == audit.id, AuditReview.decision == EXCLUDE)
                           .order_by(AuditScore.sample_index)).all()
    if not rows:
        raise DebiasError(f"audit {audit_id} marks no sample exclude; mark some first (PUT "
                          f"/v1/audits/{audit_id}/reviews/INDEX or POST /v1/audits/{audit_id}/reviews)")
    for label, name, total in ((1, "positive", dataset.n_positive), (0, "negative", dataset.n_negative)):
        if sum(1 for _, lab in rows if lab == label) >= total:
            raise DebiasError(f"audit {audit_id} marks every {name} sample exclude; training needs both classes: "
                              f"mark fewer samples exclude")
    return [index for index, _ in rows]
