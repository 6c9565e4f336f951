from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi import Path as FPath
from fastapi.responses import FileResponse, StreamingResponse

from audit.csvsafe import safe_row
from audit.errors import DebiasError

from ..deps import CurrentOwner, SessionDep, SettingsDep
from ..schemas import Accepted, AuditCreate, AuditOut, ReviewState, ScorePage
from ..services import NotFound
from ..services import audits as service
from ..services import reviews as review_service
from ..services.runners import audit_dir
from ..tables import Audit
from .params import MAX_ID, OptionalQueryId, PathId
from .shapes import audit_out, image_url, job_out, score_out

router = APIRouter(tags=["audits"])

CSV_COLUMNS = ["index", "label", "log_density", "sampling_weight", "anomaly_score", "is_anomaly",
               "reconstruction_error", "predicted_probability", "subgroup", "under_representation"]


@router.post("/v1/datasets/{dataset_id}/audits", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
def start_audit(dataset_id: PathId, body: AuditCreate, session: SessionDep, settings: SettingsDep,
                owner: CurrentOwner):
    """Audit the dataset in a DB-VAE's latent space (trained first when no model_id is given)."""
    audit_options = body.model_dump(exclude={"model_id", "training"})
    train_options = body.training.model_dump()
    audit, job = service.start_audit(session, settings, owner.id, dataset_id, body.model_id, audit_options,
                                     train_options)
    return Accepted(job=job_out(job), resource={"audit_id": audit.id, "model_id": audit.model_id,
                                                "url": f"/v1/audits/{audit.id}"})


@router.get("/v1/audits", response_model=list[AuditOut])
def list_audits(session: SessionDep, owner: CurrentOwner, dataset_id: OptionalQueryId = None):
    return [audit_out(a, with_report=False) for a in service.list_for(session, owner.id, dataset_id)]


@router.get("/v1/audits/{audit_id}", response_model=AuditOut)
def get_audit(audit_id: PathId, session: SessionDep, owner: CurrentOwner):
    """The audit and, once its job succeeded, the whole report (figures as URLs)."""
    return audit_out(service.get(session, owner.id, audit_id))


@router.get("/v1/audits/{audit_id}/figures/{name}", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}}})
def get_figure(audit_id: PathId, name: Annotated[str, FPath(max_length=200)], session: SessionDep, settings: SettingsDep, owner: CurrentOwner):
    audit = service.get_ready(session, owner.id, audit_id)
    if name not in service.figure_files(audit.report):  # only names the report lists: no path tricks
        raise NotFound(f"audit {audit_id} has no figure {name!r}")
    return FileResponse(audit_dir(settings, audit.id) / name, media_type="image/png")


@router.get("/v1/audits/{audit_id}/subgroups/{subgroup}/generated.png", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}}})
def get_generated(audit_id: PathId, subgroup: Annotated[int, FPath(ge=0, le=MAX_ID)], session: SessionDep,
                  settings: SettingsDep, owner: CurrentOwner):
    """New images decoded from a positive subgroup's latent region at audit time (labelled as generated)."""
    audit = service.get_ready(session, owner.id, audit_id)
    found = next((s for s in (audit.report or {}).get("subgroups", []) if s["id"] == subgroup), None)
    if found is None:
        raise NotFound(f"audit {audit_id} has no subgroup {subgroup}")
    if not found.get("generated_grid"):
        raise NotFound(f"subgroup {subgroup} of audit {audit_id} has no generated images: the model's decoder "
                       f"learns positives only (this subgroup is {found['class']}), or the audit predates them")
    return FileResponse(audit_dir(settings, audit.id) / found["generated_grid"], media_type="image/png")


Order = Literal["anomaly_score", "sampling_weight", "under_representation"]
Subgroup = Annotated[int | None, Query(ge=0, le=MAX_ID, description="only this discovered subgroup's samples")]


def parse_attributes(attribute: list[str] | None) -> dict[str, str]:
    attributes = {}
    for item in attribute or []:
        name, sep, value = item.partition(":")
        if not sep or not name:
            raise DebiasError(f"attribute filter {item!r} must be NAME:VALUE, e.g. skin_tone:dark")
        attributes[name] = value
    return attributes


def _filter(order: str, label: int | None, attribute: list[str] | None, min_score: float | None,
            only_anomalies: bool = False, subgroup: int | None = None,
            review: str | None = None) -> service.ScoreFilter:
    return service.ScoreFilter(order=order, label=label, attributes=parse_attributes(attribute),
                               min_score=min_score, only_anomalies=only_anomalies, subgroup=subgroup, review=review)


def _listing(request: Request, audit: Audit, session, f: service.ScoreFilter, limit: int, cursor: str | None,
             before: str | None, fmt: str):
    if fmt == "csv":
        service.page(session, audit, f, 1, None)  # validate the filter now, while a 4xx can still be sent
        # The stream outlives this request's session: it opens its own.
        rows = _csv_rows(request.app.state.sessions, audit.owner_id, audit.id, f)
        return StreamingResponse(rows, media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="audit-{audit.id}-{f.order}.csv"'})
    result = service.page(session, audit, f, limit, cursor, before)
    decided = review_service.decisions_of(session, audit.id, [r.sample_index for r in result.rows])
    return ScorePage(items=[score_out(r, audit.dataset_id, decided.get(r.sample_index)) for r in result.rows],
                     next_cursor=result.next_cursor, prev_cursor=result.prev_cursor, limit=limit)


def _csv_rows(sessions, owner_id: int, audit_id: int, f: service.ScoreFilter):
    with sessions() as session:
        audit = service.get_ready(session, owner_id, audit_id)
        attr_names = sorted(service.dataset_service.get(session, owner_id, audit.dataset_id).attributes)
        buf = io.StringIO()
        writer = csv.writer(buf)
        # Attribute names and values are the uploader's text: neutralised so a spreadsheet shows, not runs, them.
        writer.writerow(safe_row([*CSV_COLUMNS, *attr_names, "image_url"]))
        for i, r in enumerate(service.iterate(session, audit, f)):
            writer.writerow(safe_row([r.sample_index, r.label, r.log_density, r.sampling_weight, r.anomaly_score,
                             r.is_anomaly, r.reconstruction_error, r.predicted_probability, r.subgroup,
                             r.under_representation,
                             *(r.attributes.get(a) for a in attr_names), image_url(audit.dataset_id, r.sample_index)]))
            if i % 1000 == 999:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()


Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
Attribute = Annotated[list[str] | None, Query(description="NAME:VALUE, repeatable")]
Before = Annotated[str | None, Query(description="a page's prev_cursor: the page before it")]
Review = Annotated[ReviewState | None, Query(description="only samples in this review state: a decision, any "
                                             "(decided) or none (not yet)")]


@router.get("/v1/audits/{audit_id}/anomalies", response_model=ScorePage,
            responses={200: {"content": {"text/csv": {}}}})
def list_anomalies(request: Request, audit_id: PathId, session: SessionDep, owner: CurrentOwner, limit: Limit = 50,
                   cursor: str | None = None, before: Before = None,
                   label: Annotated[int | None, Query(ge=0, le=1)] = None,
                   attribute: Attribute = None, min_score: float | None = None,
                   flagged_only: bool = False, subgroup: Subgroup = None, review: Review = None,
                   format: Literal["json", "csv"] = "json"):
    """Samples by anomaly score, highest first; `next_cursor` pages on, `prev_cursor` (as `before`) back;
    `format=csv` streams them all."""
    audit = service.get_ready(session, owner.id, audit_id)
    f = _filter("anomaly_score", label, attribute, min_score, flagged_only, subgroup, review)
    return _listing(request, audit, session, f, limit, cursor, before, format)


@router.get("/v1/audits/{audit_id}/samples", response_model=ScorePage,
            responses={200: {"content": {"text/csv": {}}}})
def list_samples(request: Request, audit_id: PathId, session: SessionDep, owner: CurrentOwner,
                 order: Order = "sampling_weight", limit: Limit = 50, cursor: str | None = None,
                 before: Before = None, label: Annotated[int | None, Query(ge=0, le=1)] = None,
                 attribute: Attribute = None, min_score: float | None = None, subgroup: Subgroup = None,
                 review: Review = None, format: Literal["json", "csv"] = "json"):
    """Samples by `order` (sampling_weight: most often drawn first; under_representation: the most
    under-represented first); paged like the anomalies; `subgroup` keeps one discovered subgroup."""
    audit = service.get_ready(session, owner.id, audit_id)
    f = _filter(order, label, attribute, min_score, subgroup=subgroup, review=review)
    return _listing(request, audit, session, f, limit, cursor, before, format)
