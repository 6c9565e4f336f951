from __future__ import annotations

from fastapi import APIRouter

from ..deps import CurrentOwner, SessionDep
from ..schemas import JobOut
from ..services import jobs as service
from .shapes import job_out

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("", response_model=list[JobOut])
def list_jobs(session: SessionDep, owner: CurrentOwner, status: str | None = None):
    return [job_out(j) for j in service.list_for(session, owner.id, status)]


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: int, session: SessionDep, owner: CurrentOwner):
    return job_out(service.get(session, owner.id, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: int, session: SessionDep, owner: CurrentOwner):
    """Cancel a queued job at once, or ask a running one to stop at its next progress report."""
    return job_out(service.request_cancel(session, owner.id, job_id))
