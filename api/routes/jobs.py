from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response

from ..deps import CurrentOwner, SessionDep
from ..schemas import JobOut
from ..services import jobs as service
from .params import OptionalQueryId, PathId
from .shapes import job_out

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@router.get("", response_model=list[JobOut])
def list_jobs(response: Response, session: SessionDep, owner: CurrentOwner, status: JobStatus | None = None,
              limit: Annotated[int, Query(ge=1, le=500, description="jobs per page")] = 100,
              before: Annotated[OptionalQueryId, Query(description="a job id: list the jobs older than it")] = None):
    """The owner's jobs, newest first, a page at a time; when more remain, the `Link` header names the
    next page (`rel="next"`: the same query with `before` set to the last id listed)."""
    jobs = service.list_for(session, owner.id, status, limit, before)
    if len(jobs) == limit and jobs:
        query = urlencode({k: v for k, v in {"status": status, "limit": limit, "before": jobs[-1].id}.items() if v})
        response.headers["Link"] = f'</v1/jobs?{query}>; rel="next"'
    return [job_out(j) for j in jobs]


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: PathId, session: SessionDep, owner: CurrentOwner):
    return job_out(service.get(session, owner.id, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: PathId, session: SessionDep, owner: CurrentOwner):
    """Cancel a queued job at once, or ask a running one to stop at its next progress report."""
    return job_out(service.request_cancel(session, owner.id, job_id))
