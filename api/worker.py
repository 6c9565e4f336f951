"""The job worker: claims jobs, runs each in a child process, heart-beats, honours cancel.

`debias worker` runs one in its own process; `debias serve` runs one in a thread.
Any number can share one database: claims never overlap (see services.jobs.claim).

Each job runs in its own process (api.jobchild), so a crash or an out-of-memory
kill fails that job and never the worker or the API. The worker supervises:
it relays the child's progress into the job row with its heartbeat, terminates
the child when the job is cancelled (or taken over), and closes the job when
the child ends without publishing a result.

A child killed by a signal (SIGKILL from the kernel's OOM killer) or out of
memory is never retried: the same options on the same data would need the same
memory again, so the job fails at once with the reason and the options to
lower. Only a lost worker (no heartbeat) requeues a job, up to max_attempts.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from datetime import timedelta
from multiprocessing.connection import wait

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from . import jobchild
from .services import jobs as job_service
from .services import limits
from .services.leftovers import debris_owners, remove_debris
from .services.runners import RUNNERS
from .settings import Settings
from .tables import Audit, Counterfactual, Job, TrainedModel

log = logging.getLogger("debias.worker")


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], worker_id: str | None = None,
                 address_space: int | None = None):
        """address_space: cap each job's process at its mapped size plus this many bytes (RLIMIT_AS);
        None (the default) sets no cap: the kernel's OOM killer, steered at the child, is the backstop."""
        self.settings, self.sessions = settings, sessions
        self.worker_id = worker_id or new_worker_id()
        self.address_space = address_space
        self.stopping = threading.Event()
        self.child = None  # the running job's process

    def run_forever(self) -> None:
        log.info("worker %s polling every %.1fs", self.worker_id, self.settings.poll_seconds)
        for start_up in (self.sweep, jobchild.warm_up):  # what killed jobs left; the engine's import
            try:
                start_up()
            except Exception:
                log.exception("worker %s: %s failed", self.worker_id, start_up.__name__)
        while not self.stopping.is_set():
            try:
                ran = self.run_once()
            except Exception:  # a database hiccup must not kill the worker
                log.exception("worker %s: error between jobs", self.worker_id)
                ran = False
            if not ran:
                self.stopping.wait(self.settings.poll_seconds)

    def sweep(self) -> None:
        """Remove staging debris of killed jobs, except that of results a running job is writing now."""
        for kind, table in (("audits", Audit), ("models", TrainedModel), ("counterfactuals", Counterfactual)):
            folder = self.settings.path(kind)
            owners = debris_owners(folder)
            if not owners:
                continue
            with self.sessions() as session:
                busy = set(session.scalars(select(table.id).join(Job, table.job_id == Job.id).where(
                    table.id.in_(owners), Job.status == "running")))
            for owner in owners - busy:
                remove_debris(folder / str(owner))

    def run_once(self) -> bool:
        """Requeue stale jobs, then claim and run one job. True if a job ran."""
        with self.sessions() as session:
            requeued = job_service.requeue_stale(session, timedelta(seconds=self.settings.stale_after_seconds))
            if requeued:
                log.warning("requeued stale jobs %s", requeued)
                # Given up: their files go (a job that runs again sweeps its own debris when it starts).
                given_up = select(Job).where(Job.id.in_(requeued), Job.status.in_(job_service.FINISHED))
                for job in session.scalars(given_up):
                    RUNNERS[job.kind].discard(self.settings, job.payload)
            job = job_service.claim(session, self.worker_id)
        if job is None:
            return False
        self._run(job)
        return True

    def _run(self, job: Job) -> None:
        log.info("job %s started: %s, attempt %s, worker %s", job.id, _what(job), job.attempts, self.worker_id)
        RUNNERS[job.kind].sweep(self.settings, job.payload)  # an earlier attempt's debris
        ctx = jobchild.context()
        reader, writer = ctx.Pipe(duplex=False)
        started = time.monotonic()
        proc = ctx.Process(target=jobchild.main, name=f"debias-job-{job.id}", daemon=True,
                           args=(self.settings, job.id, self.worker_id, writer, self.address_space))
        try:
            proc.start()
        except Exception as exc:  # no process for it (fork refused, forkserver gone): fail it, keep polling
            log.exception("job %s: could not start its process", job.id)
            reader.close()
            self._close(job, "failed", "failed", f"internal error: could not start the job's process: {exc!r}",
                        seconds=time.monotonic() - started)
            return
        finally:
            writer.close()  # the child holds the only writer now: its death ends the pipe
        self.child = proc
        try:
            outcome, error, trace, last = self._supervise(job, proc, reader)
        finally:
            self.child = None
            reader.close()
        self._finish(job, proc.exitcode, outcome, error, trace, last, time.monotonic() - started)

    def _supervise(self, job: Job, proc, reader) -> tuple[str | None, str | None, str | None, str]:
        """Relay progress and heart-beat until the child ends; stop it on cancel, loss or shutdown."""
        beat = _Heartbeat(self, job.id)
        final: tuple = (None, None, None)
        waiting = [reader, proc.sentinel]
        while True:
            ready = wait(waiting, timeout=beat.due_in())
            try:
                while reader in waiting and reader.poll():  # everything the child has sent so far
                    message = reader.recv()
                    if message[0] == "progress":
                        beat.progress, beat.message = message[1], message[2]
                    else:
                        final = message
            except EOFError:
                waiting.remove(reader)
            if proc.sentinel in ready:
                proc.join()
                return (*final, beat.message or "starting")
            if final[0] is not None:
                continue  # the child has finished the job (or given up on it): just let it exit
            try:
                beat.maybe_beat()
            except job_service.JobCancelled:
                _stop(proc)
                return "cancelled", None, None, beat.message
            except job_service.JobLost:
                _stop(proc)
                return "lost", None, None, beat.message
            if self.stopping.is_set():
                _stop(proc)
                return "released", None, None, beat.message

    def _finish(self, job: Job, exitcode: int | None, outcome: str | None, error: str | None, trace: str | None,
                last: str, seconds: float) -> None:
        if outcome == "succeeded":  # the child published its results and closed the job
            log.info("job %s succeeded: %s, in %.1f s", job.id, _what(job), seconds)
            return
        if outcome == "lost":
            # Its folders now belong to the worker that took it over: leave them alone.
            log.warning("job %s lost: %s, taken over by another worker after %.1f s; dropped our work", job.id,
                        _what(job), seconds)
            return
        if outcome == "released":
            with self.sessions() as session:
                job_service.release(session, job.id, self.worker_id, "requeued: its worker shut down")
            log.info("job %s requeued: %s, its worker shut down after %.1f s", job.id, _what(job), seconds)
            return
        if outcome == "cancelled":
            self._close(job, "cancelled", "cancelled", seconds=seconds)
        elif outcome == "failed":
            self._close(job, "failed", "failed", error, seconds=seconds)
        elif outcome == "crashed":
            log.error("job %s crashed:\n%s", job.id, trace)
            self._close(job, "failed", "failed", f"internal error: {error}", seconds=seconds)
        elif outcome == "out_of_memory":
            log.error("job %s ran out of memory:\n%s", job.id, trace)
            self._close(job, "failed", "failed", f"the job ran out of memory ({error}) after {seconds:.0f} s, "
                                                 f"while {last!r}", oom=True, seconds=seconds)
        else:  # the child died without a word: killed by a signal (SIGKILL: the OOM killer), or crashed
            killed = exitcode is not None and exitcode < 0
            why = (f"the job's process was killed by signal {-exitcode} ({_signal_name(-exitcode)})" if killed
                   else f"the job's process exited with code {exitcode} without a result")
            oom = killed and -exitcode == signal.SIGKILL
            self._close(job, "failed", "failed", f"{'' if oom else 'internal error: '}{why} after {seconds:.0f} s, "
                                                 f"while {last!r}", oom=oom, seconds=seconds)

    def _close(self, job: Job, status: str, message: str, error: str | None = None, oom: bool = False,
               seconds: float = 0.0) -> None:
        """Close a job whose child has ended: drop its files, fail or cancel it and its results; log one line."""
        with self.sessions() as session:
            row = session.scalar(select(Job).where(Job.id == job.id).with_for_update())
            if row is None or row.worker_id != self.worker_id or row.status != "running":
                return  # finished by its child, or taken over
            if oom:
                error += (f"; not retried, since the same options would need as much memory again: "
                          f"{limits.options_in_use(session, row)} (and if jobs within {limits.LIMIT_SETTING} "
                          f"are killed, this machine has less to give: lower it)")
            RUNNERS[row.kind].discard(self.settings, row.payload)
            job_service.finish(session, row, status, message, error)
            job_service.mark_resources(session, row, status)
            session.commit()
        if status == "failed":
            log.error("job %s failed: %s, after %.1f s: %s", job.id, _what(job), seconds, " ".join(error.split()))
        else:
            log.info("job %s %s: %s, after %.1f s", job.id, status, _what(job), seconds)


def _what(job: Job) -> str:
    """A job as the server log names it: its kind and dataset."""
    return f"{job.kind}, dataset {job.dataset_id if job.dataset_id is not None else '(deleted)'}"


def _stop(proc) -> None:
    proc.terminate()
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join()


def _signal_name(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        return "an unknown signal"
    return f"{name}: out of memory?" if number == signal.SIGKILL else name


class _Heartbeat:
    """Beats every heartbeat_seconds, and within half a second of new progress; stops the job if asked."""

    def __init__(self, worker: Worker, job_id: int):
        self.worker, self.job_id = worker, job_id
        self.progress: float | None = None
        self.message: str | None = None
        self._last = time.monotonic()
        self._sent: tuple | None = None

    def due_in(self) -> float:
        every = self.worker.settings.heartbeat_seconds
        if (self.progress, self.message) != self._sent:
            every = min(every, 0.5)
        return max(0.0, self._last + every - time.monotonic())

    def maybe_beat(self) -> None:
        if self.due_in() > 0:
            return
        self._last = time.monotonic()
        self._sent = (self.progress, self.message)
        try:
            with self.worker.sessions() as session:
                job_service.heartbeat(session, self.job_id, self.worker.worker_id, self.progress, self.message)
        except (job_service.JobCancelled, job_service.JobLost):
            raise
        except Exception:  # a database hiccup: the next beat tries again
            log.exception("heartbeat of job %s failed", self.job_id)
