"""DB-backed jobs: enqueue, claim (FOR UPDATE SKIP LOCKED), heartbeat, requeue, cancel, finish.

A job row is the only coordination between the API and any number of workers,
on any number of machines sharing the database (procrastinate's design).
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, object_session

from ..db import utcnow
from ..tables import Job
from . import Conflict, owned, owned_rows

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


class JobCancelled(Exception):
    """Raised inside a running job when its cancel was requested."""


class JobLost(Exception):
    """Raised inside a running job when another worker took it over (ours was presumed dead)."""


def enqueue(session: Session, owner_id: int, kind: str, payload: dict, dataset_id: int | None,
            max_attempts: int) -> Job:
    job = Job(owner_id=owner_id, kind=kind, payload=payload, dataset_id=dataset_id, max_attempts=max_attempts,
              status="queued", progress=0.0, message="queued", attempts=0)
    session.add(job)
    session.flush()
    return job


def get(session: Session, owner_id: int, job_id: int) -> Job:
    return owned(session, Job, owner_id, job_id, "job")


def queue_position(job: Job) -> int | None:
    """Where a queued job stands: 1 = the next one claimed (workers take the oldest first); None otherwise."""
    session = object_session(job)
    if job.status != "queued" or session is None:
        return None
    return session.scalar(select(func.count()).where(Job.status == "queued", Job.id <= job.id))


def list_for(session: Session, owner_id: int, status: str | None = None, limit: int = 100,
             before_id: int | None = None) -> list[Job]:
    return owned_rows(session, Job, owner_id, limit, before_id, status=status or None)


def claim(session: Session, worker_id: str) -> Job | None:
    """Take the oldest queued job, or None.

    PostgreSQL: the row is locked with SKIP LOCKED, so concurrent workers pick
    different rows without waiting.  SQLite has no row locks: the conditional
    UPDATE (status still 'queued') under its single-writer lock is the guard,
    and a worker that loses the race simply tries the next row.
    """
    for _ in range(10):
        candidate = session.scalar(
            select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1)
            .with_for_update(skip_locked=True))
        if candidate is None:
            session.rollback()
            return None
        now = utcnow()
        claimed = session.execute(
            update(Job).where(Job.id == candidate, Job.status == "queued")
            .values(status="running", worker_id=worker_id, heartbeat_at=now, started_at=now,
                    attempts=Job.attempts + 1, message="started", error=None)
            .execution_options(synchronize_session=False)).rowcount
        session.commit()
        if claimed == 1:
            return session.get(Job, candidate, populate_existing=True)
    return None


def heartbeat(session: Session, job_id: int, worker_id: str, progress: float | None = None,
              message: str | None = None) -> None:
    """Record liveness (and progress); raise JobCancelled / JobLost to stop the work."""
    values: dict = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = max(0.0, min(100.0, progress))
    if message is not None:
        values["message"] = message[:2000]
    owned = session.execute(update(Job).where(Job.id == job_id, Job.worker_id == worker_id,
                                              Job.status == "running").values(**values)).rowcount
    session.commit()
    if owned != 1:
        raise JobLost(f"job {job_id} is no longer held by {worker_id}")
    if session.scalar(select(Job.cancel_requested).where(Job.id == job_id)):
        raise JobCancelled(f"job {job_id} was cancelled")


def finish(session: Session, job: Job, status: str, message: str, error: str | None = None) -> None:
    """Close the job; the caller commits together with the job's results (one transaction)."""
    job.status, job.message, job.error = status, message, error
    job.finished_at = utcnow()
    if status == "succeeded":
        job.progress = 100.0


def mark_resources(session: Session, job: Job, status: str) -> None:
    """Give what the job produces (model, audit, evaluation) the job's final status, in the caller's transaction."""
    from .runners import RUNNERS  # runners import this module: resolve the cycle at call time
    RUNNERS[job.kind].mark_resources(session, job, status)


def requeue_stale(session: Session, stale_after: timedelta) -> list[int]:
    """Running jobs whose worker stopped heart-beating go back to the queue (or fail after max attempts)."""
    cutoff = utcnow() - stale_after
    stale = list(session.scalars(select(Job).where(Job.status == "running", Job.heartbeat_at < cutoff)
                                 .with_for_update(skip_locked=True)))
    for job in stale:
        lost = f"worker {job.worker_id} stopped heart-beating"
        if job.cancel_requested:
            finish(session, job, "cancelled", f"cancelled ({lost})")
            mark_resources(session, job, "cancelled")
        elif job.attempts >= job.max_attempts:
            finish(session, job, "failed", "failed", error=f"{lost}; gave up after {job.attempts} attempts")
            mark_resources(session, job, "failed")
        else:
            job.status, job.worker_id, job.message = "queued", None, f"requeued: {lost}"
    session.commit()
    return [j.id for j in stale]


def release(session: Session, job_id: int, worker_id: str, message: str) -> bool:
    """Put a job we hold back in the queue (its worker is shutting down); the attempt is not counted."""
    done = session.execute(update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.status == "running")
                           .values(status="queued", worker_id=None, message=message[:2000],
                                   attempts=Job.attempts - 1)).rowcount
    session.commit()
    return done == 1


def request_cancel(session: Session, owner_id: int, job_id: int) -> Job:
    job = get(session, owner_id, job_id)
    if job.status in FINISHED:
        raise Conflict(f"job {job_id} has already {job.status}")
    if job.status == "queued":
        # Guarded like a claim: a worker may be taking it right now.
        done = session.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                               .values(status="cancelled", message="cancelled", finished_at=utcnow())).rowcount
        if done == 1:
            # Its model / audit / evaluation would otherwise stay "pending" for ever.
            mark_resources(session, job, "cancelled")
            session.commit()
            session.refresh(job)
            return job
    job.cancel_requested = True
    job.message = "cancelling"
    session.commit()
    return job
