"""Review decisions on an audit's samples: one by one, for a selection, listed, exported as CSV."""
from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from audit.csvsafe import safe_row

from ..deps import CurrentOwner, SessionDep
from ..schemas import Decision, ReviewBulk, ReviewBulkResult, ReviewIn, ReviewOut, ReviewPage
from ..services import audits as audit_service
from ..services import reviews as service
from ..tables import AuditReview
from .audits import parse_attributes
from .params import MAX_INDEX, PathId, SampleIndex
from .shapes import image_url

router = APIRouter(tags=["reviews"])

CSV_COLUMNS = ["index", "decision", "tags", "note", "reviewed_by", "reviewed_at", "label", "subgroup", "image_url"]


def _who(owner) -> service.Reviewer:
    return service.Reviewer(owner.id, owner.name)


def review_out(row: AuditReview, dataset_id: int) -> ReviewOut:
    return ReviewOut(index=row.sample_index, decision=row.decision, tags=row.tags, note=row.note,
                     reviewed_by=row.reviewer, reviewed_at=row.reviewed_at,
                     image_url=image_url(dataset_id, row.sample_index))


@router.put("/v1/audits/{audit_id}/reviews/{index}", response_model=ReviewOut)
def review_sample(audit_id: PathId, index: SampleIndex, body: ReviewIn, session: SessionDep, owner: CurrentOwner):
    """Record a decision on one sample (replacing an earlier one): reviewed, keep or exclude, with tags and a
    note; who and when are recorded."""
    row = service.decide(session, _who(owner), audit_id, index, body.decision, body.tags, body.note)
    return review_out(row, audit_service.get(session, owner.id, audit_id).dataset_id)


@router.delete("/v1/audits/{audit_id}/reviews/{index}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response)
def forget_review(audit_id: PathId, index: SampleIndex, session: SessionDep, owner: CurrentOwner):
    """Remove one sample's decision: it is unreviewed again."""
    service.forget(session, owner.id, audit_id, index)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/audits/{audit_id}/reviews", response_model=ReviewBulkResult)
def review_selection(audit_id: PathId, body: ReviewBulk, session: SessionDep, owner: CurrentOwner):
    """Record one decision for every sample of a selection (indices, a subgroup, the anomalies, samples above
    an under-representation, ...: every given criterion must hold), replacing earlier decisions;
    `selection.review: "none"` keeps them."""
    sel = body.selection
    selection = service.Selection(indices=sel.indices, subgroup=sel.subgroup, label=sel.label,
                                  attributes=parse_attributes(sel.attribute), flagged_only=sel.flagged_only,
                                  min_anomaly_score=sel.min_anomaly_score,
                                  min_under_representation=sel.min_under_representation, review=sel.review)
    count = service.decide_many(session, _who(owner), audit_id, selection, body.decision, body.tags, body.note)
    return ReviewBulkResult(decision=body.decision, count=count)


Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
After = Annotated[int | None, Query(ge=0, le=MAX_INDEX, description="a page's next_after: the page after it")]


@router.get("/v1/audits/{audit_id}/reviews", response_model=ReviewPage,
            responses={200: {"content": {"text/csv": {}}}})
def list_reviews(request: Request, audit_id: PathId, session: SessionDep, owner: CurrentOwner,
                 decision: Decision | None = None, limit: Limit = 100, after: After = None,
                 format: Literal["json", "csv"] = "json"):
    """The audit's decisions in sample order, `decision` keeping one kind; `format=csv` streams them all
    (`index,decision,...`: what `debias train --exclude-from` reads)."""
    audit = audit_service.get_ready(session, owner.id, audit_id)
    if format == "csv":
        # The stream outlives this request's session: it opens its own.
        return StreamingResponse(_csv_rows(request.app.state.sessions, owner.id, audit.id, decision),
                                 media_type="text/csv", headers={
                                     "Content-Disposition": f'attachment; filename="audit-{audit.id}-reviews.csv"'})
    rows, next_after = service.page(session, audit, decision, limit, after)
    return ReviewPage(items=[review_out(r, audit.dataset_id) for r, _, _ in rows], next_after=next_after,
                      limit=limit, counts=service.counts(session, audit.id))


def _csv_rows(sessions, owner_id: int, audit_id: int, decision: str | None):
    with sessions() as session:
        audit = audit_service.get_ready(session, owner_id, audit_id)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for i, (r, label, subgroup) in enumerate(service.iterate(session, audit, decision)):
            # Tags and notes are the reviewer's text: neutralised so a spreadsheet shows, not runs, them.
            writer.writerow(safe_row([r.sample_index, r.decision, "; ".join(r.tags), r.note, r.reviewer,
                                      r.reviewed_at.isoformat(), label, subgroup,
                                      image_url(audit.dataset_id, r.sample_index)]))
            if i % 1000 == 999:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()
