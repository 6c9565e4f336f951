"""A model set's members trained side by side, one process each, on a CPU's cores.

Small convolutions split poorly across threads: on the 2-core development machine a 64px DB-VAE step ran
at 1,091-1,144 samples/s on 2 threads and 740-751 on 1, and two 1-thread processes together reached
1,501-1,543 (the standard classifier: 2,212-2,278 on 2 threads, 3,346-3,361 for two 1-thread processes;
bench/out/member_processes.txt). So
k members on cores/k threads each finish sooner than one after another on every core, once there is
enough work to repay starting the processes (MIN_WORK).

Each member is trained exactly as `train_model` trains it alone; only its thread count differs from a
sequential run, which changes float summation order (not the method, nor the seed's random streams).
"""
from __future__ import annotations

import os

from .errors import DebiasError

ENV = "DEBIAS_MEMBER_PROCESSES"
# Every process gets its own copy of an in-memory dataset (a memory-mapped one is pickled as a copy too):
# beyond this, members train one after another instead.
MAX_COPIED_BYTES = 1 << 30


def requested_processes() -> int | None:
    """DEBIAS_MEMBER_PROCESSES as a positive integer, None when unset."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DebiasError(f"{ENV} must be a positive whole number of processes, got {text!r}")
    return value


# A spawned process costs ~5 s before it trains (importing torch and the pipeline, copying the data), and
# side by side trains ~1.4x faster: below this much work a member (epochs x images x (side / 32)^2, in 32px
# images) is done sooner one after another (bench/member_processes.py: 2 seeds of 2 epochs on 3,000 64px
# images took 0.49-0.83x as long one after another).
MIN_WORK = 60_000


def member_work(epochs: int, n_images: int, image_size: int) -> float:
    return epochs * n_images * (image_size / 32) ** 2


def member_processes(n_members: int, device_type: str, image_bytes: int, one_process_only: bool,
                     work: float = float("inf")) -> int:
    """How many members to train at once: the cores (or DEBIAS_MEMBER_PROCESSES), at most one per member;
    1 on a GPU (one device, already busy with one model), when progress must reach a caller (a service
    job's callback) or a distributed run is under way, when the copies would not fit MAX_COPIED_BYTES, or,
    unless DEBIAS_MEMBER_PROCESSES asks, when a member's `work` is under MIN_WORK."""
    cores = os.cpu_count() or 1
    requested = requested_processes()
    k = min(requested or cores, n_members, cores)
    if k < 2 or device_type != "cpu" or one_process_only or image_bytes * k > MAX_COPIED_BYTES:
        return 1
    if requested is None and work < MIN_WORK:
        return 1
    return k


def _use_threads(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def _train_member(dataset, member, model_cfg, train_cfg, resume, exclude, choose_schedule):
    from .pipeline import train_model
    result = train_model(dataset, member, model_cfg, train_cfg, resume=resume, progress=False,
                         exclude=exclude, choose_schedule=choose_schedule)
    return result.history, result.sampling_probability


def train_side_by_side(jobs: dict[int, dict], processes: int) -> dict[int, tuple[list, object]]:
    """{seed: train_model keyword arguments} -> {seed: (history, sampling_probability)}, `processes` at a
    time in fresh (spawned) processes: forking a process whose OpenMP threads have run can hang the child.
    A failing member's error is raised once the members already running have finished; the rest are not
    started (`--resume` continues them)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // processes)
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_use_threads, initargs=(threads,)) as pool:
        futures = {seed: pool.submit(_train_member, **job) for seed, job in jobs.items()}
        try:
            return {seed: future.result() for seed, future in futures.items()}
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
