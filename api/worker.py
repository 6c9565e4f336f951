"""The job worker: claims jobs, runs them through the engine, heart-beats, honours cancel.

`debias worker` runs one in its own process; `debias serve` runs one in a thread.
Any number can share one database: claims never overlap (see services.jobs.claim).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from audit.errors import DebiasError

from .services import jobs as job_service
from .services.runners import RUNNERS, JobContext
from .settings import Settings
from .tables import Job

log = logging.getLogger("debias.worker")


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], worker_id: str | None = None):
        self.settings, self.sessions = settings, sessions
        self.worker_id = worker_id or new_worker_id()
        self.stopping = threading.Event()

    def run_forever(self) -> None:
        log.info("worker %s polling every %.1fs", self.worker_id, self.settings.poll_seconds)
        while not self.stopping.is_set():
            try:
                ran = self.run_once()
            except Exception:  # a database hiccup must not kill the worker
                log.exception("worker %s: error between jobs", self.worker_id)
                ran = False
            if not ran:
                self.stopping.wait(self.settings.poll_seconds)

    def run_once(self) -> bool:
        """Requeue stale jobs, then claim and run one job. True if a job ran."""
        with self.sessions() as session:
            requeued = job_service.requeue_stale(session, timedelta(seconds=self.settings.stale_after_seconds))
            if requeued:
                log.warning("requeued stale jobs %s", requeued)
            job = job_service.claim(session, self.worker_id)
        if job is None:
            return False
        self._run(job)
        return True

    def _run(self, job: Job) -> None:
        log.info("worker %s runs job %s (%s, attempt %s)", self.worker_id, job.id, job.kind, job.attempts)
        beat = _Heartbeat(self, job.id)
        ctx = JobContext(job=job, settings=self.settings, sessions=self.sessions, report=beat.report)
        runner = RUNNERS[job.kind]
        beat.start()
        try:
            runner.run(ctx)
        except job_service.JobLost:
            # Its folders now belong to the worker that took it over: leave them alone.
            log.warning("job %s was taken over by another worker; dropping our work", job.id)
        except job_service.JobCancelled:
            runner.discard(ctx)
            self._close(ctx, "cancelled", "cancelled")
        except DebiasError as exc:  # the user's input: a clear message, no traceback
            runner.discard(ctx)
            self._close(ctx, "failed", "failed", str(exc))
        except Exception as exc:
            log.exception("job %s crashed", job.id)
            runner.discard(ctx)
            detail = "".join(traceback.format_exception_only(exc)).strip()
            self._close(ctx, "failed", "failed", f"internal error: {detail}")
        finally:
            beat.stop()

    def _close(self, ctx: JobContext, status: str, message: str, error: str | None = None) -> None:
        with self.sessions() as session:
            job = session.get(Job, ctx.job.id)
            if job is None or job.worker_id != self.worker_id or job.status != "running":
                return
            job_service.finish(session, job, status, message, error)
            RUNNERS[job.kind].mark_resources(session, job, status)
            session.commit()


class _Heartbeat:
    """Beats on a thread while the job runs; progress reports piggyback on it."""

    def __init__(self, worker: Worker, job_id: int):
        self.worker, self.job_id = worker, job_id
        self.progress: float | None = None
        self.message: str | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id}", daemon=True)
        self._last_report = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        with self.worker.sessions() as session:
            job_service.heartbeat(session, self.job_id, self.worker.worker_id, self.progress, self.message)

    def _loop(self) -> None:
        while not self._stop.wait(self.worker.settings.heartbeat_seconds):
            try:
                self._beat()
            except (job_service.JobCancelled, job_service.JobLost) as exc:
                self.error = exc  # raised in the job's thread at its next report
            except Exception:
                log.exception("heartbeat of job %s failed", self.job_id)

    def report(self, progress: float, message: str) -> None:
        """Called from the job's thread: records progress at most twice a second; stops the job if asked."""
        self.progress, self.message = progress, message
        if self.error is not None:
            raise self.error
        now = time.monotonic()
        if now - self._last_report >= 0.5:
            self._last_report = now
            self._beat()
