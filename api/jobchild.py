"""A job's own process: the worker starts one per job; it runs the job's runner and says how it ended.

Children come from a multiprocessing forkserver that has imported the engine
once (torch, sklearn, matplotlib: seconds), so a job starts in milliseconds and
inherits neither the worker's threads nor its database connections, as a plain
fork of a threaded process with torch loaded would. A crash or an
out-of-memory kill ends the child only: the worker (or the API, with the
embedded worker) sees it die and fails the job.

The child sends ("progress", percent, message) messages and one final outcome
(OUTCOMES) through a pipe; it touches the database only to read its inputs and
to publish its results, in one transaction with the job's success, as before.
The worker owns everything else: heartbeat, cancel, failure and clean-up.
"""
from __future__ import annotations

import errno
import multiprocessing
import os
import resource
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection

from audit.errors import DebiasError

from .db import make_engine, make_sessionmaker
from .services.jobs import JobLost
from .services.runners import RUNNERS, JobContext
from .settings import Settings
from .tables import Job

OUTCOMES = ("succeeded", "lost", "failed", "out_of_memory", "crashed")
# Imported once in the forkserver: this module pulls in the runners, the engine and torch; torch's
# optimizers import torch._dynamo on first use (seconds), which each job would otherwise pay.
PRELOAD = ["api.jobchild", "torch._dynamo"]

_context = None


def context() -> multiprocessing.context.BaseContext:
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _context = ctx
    return _context


def warm_up() -> None:
    """Start the forkserver now: it imports the engine in the background (seconds), not on the first job."""
    context()
    from multiprocessing import forkserver
    forkserver.ensure_running()


# How allocation failures read when they do not surface as MemoryError: torch's CPU and CUDA
# allocators, and oneDNN, which reports a failed scratch-pad allocation as a primitive it could not create.
_OOM_TEXTS = ("out of memory", "can't allocate memory", "could not create a primitive")


def out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch's and oneDNN's allocator failures (CPU and CUDA), ENOMEM from the system."""
    if isinstance(exc, MemoryError) or getattr(exc, "errno", None) == errno.ENOMEM:
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(t in text for t in _OOM_TEXTS)


def main(settings: Settings, job_id: int, worker_id: str, conn: Connection, address_space: int | None) -> None:
    """The child's entry point (a module-level function: the forkserver unpickles it by name)."""
    # The worker terminates a cancelled job: exit through Python, so open transactions roll back and
    # staged folders are removed (a SIGKILL, after 10 s, skips that; the worker sweeps what remains).
    signal.signal(signal.SIGTERM, _exit_on_terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the worker decides
    _be_the_one_killed()
    _exit_with_parent()
    if address_space is not None:
        _limit_address_space(address_space)
    outcome = run(settings, job_id, worker_id, lambda p, m: conn.send(("progress", p, m)))
    conn.send(outcome)
    conn.close()


def run(settings: Settings, job_id: int, worker_id: str, send) -> tuple[str, str | None, str | None]:
    """Run the job; (outcome, error message, traceback)."""
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)
    try:
        with sessions() as session:
            job = session.get(Job, job_id)
        if job is None or job.worker_id != worker_id or job.status != "running":
            return "lost", None, None
        ctx = JobContext(job=job, settings=settings, sessions=sessions, report=_Reporter(send))
        try:
            RUNNERS[job.kind].run(ctx)
            return "succeeded", None, None
        except JobLost:
            return "lost", None, None
        except DebiasError as exc:  # the user's input: a clear message, no traceback
            return "failed", str(exc), None
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(exc)).strip()
            kind = "out_of_memory" if out_of_memory(exc) else "crashed"
            return kind, detail[:2000], traceback.format_exc()[-20000:]
    finally:
        engine.dispose()


class _Reporter:
    """ctx.report in the child: progress to the worker, at most ten times a second (and every new percent)."""

    def __init__(self, send):
        self.send, self.last, self.last_percent = send, 0.0, -1

    def __call__(self, progress: float, message: str) -> None:
        now = time.monotonic()
        if now - self.last >= 0.1 or int(progress) != self.last_percent:
            self.last, self.last_percent = now, int(progress)
            self.send(progress, message)


def _exit_on_terminate(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def _be_the_one_killed() -> None:
    # When memory runs out, the kernel's OOM killer should pick this process, not the API or the worker.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass  # not Linux, or not allowed: the worker still survives most kills


def _exit_with_parent() -> None:
    # A forkserver child is not the worker's child: if the worker dies, nothing else would stop it.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(70)), name="parent-watch", daemon=True).start()


def _limit_address_space(extra: int) -> None:
    """Cap the address space at what is mapped now plus `extra` bytes (RLIMIT_AS): allocations beyond fail."""
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, vm + extra))
