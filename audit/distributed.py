"""Training one model in several processes with torch.distributed (DistributedDataParallel).

Started by torchrun (`torchrun --nproc-per-node N -m audit.cli train ...`, or `debias train --nproc N`,
which launches it): the environment it sets (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT) turns a
training run into one rank of N. Every rank holds the whole dataset and draws the same batches from the same
per-epoch sampling probability (same seed); each trains on its share of every batch, and DDP averages the
gradients. What keeps N processes equal to one on the same seed:

- each rank's share holds equal numbers of positives and of negatives, so the mean of the ranks' losses is
  the batch's mean loss;
- batch norm takes its statistics over the whole batch (SyncedBatchNorm: sums all-reduced, differentiable);
- the VAE's sampling noise is drawn for the whole batch on every rank, each keeping its rows.

The per-epoch latent pass is split across ranks and gathered; only rank 0 writes files or shows progress.
Backends: NCCL on CUDA, gloo on the CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import DebiasError


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, batch: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Positions in `batch` (one global batch's indices) that this rank trains on: every world-th
        positive and every world-th negative, so each rank's share is balanced like the batch."""
        positions = []
        for cls in (1, 0):
            members = np.flatnonzero(labels[batch] == cls)
            positions.append(members[self.rank::self.world])
        return np.sort(np.concatenate(positions))

    def gather(self, arrays: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """Every rank's rows of `chunk(n)` (same keys on every rank) -> the arrays over all n rows."""
        import torch.distributed as dist

        out = {}
        size = -(-n // self.world)
        for key in sorted(arrays):
            local = torch.from_numpy(np.ascontiguousarray(arrays[key]))
            padded = torch.zeros((size, *local.shape[1:]), dtype=local.dtype)   # CPU tensors: gloo
            padded[:len(local)] = local
            parts = [torch.empty_like(padded) for _ in range(self.world)]
            dist.all_gather(parts, padded)
            out[key] = torch.cat(parts)[:n].numpy()
        return out

    def chunk(self, n: int) -> np.ndarray:
        """The rows of an n-row pass this rank computes (contiguous, equal sizes but the last)."""
        size = -(-n // self.world)
        return np.arange(self.rank * size, min(n, (self.rank + 1) * size))


def current() -> Ranks | None:
    """The process group torchrun set up for this process (initialised here on first use), or None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        import atexit

        # With GPUs, each tensor's device picks the backend: NCCL for the training's GPU tensors, gloo for CPU
        # ones (the gathered latent pass, a --device cpu run on a GPU machine).
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
        # Left to the interpreter's exit, gloo's threads abort the process ("terminate called ...").
        atexit.register(_leave_group)
    return Ranks(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def _leave_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def device_for(ranks: Ranks, requested: str | None) -> torch.device:
    """As models.pick_device chooses (--device, DEBIAS_DEVICE, else CUDA when present), with one GPU per rank:
    the one at LOCAL_RANK."""
    from .models import pick_device

    device = pick_device(requested)
    if device.type != "cuda":
        return device
    torch.cuda.set_device(ranks.local_rank)   # NCCL's collectives run on the current device
    return torch.device("cuda", ranks.local_rank)


def check_batch(batch_size: int, world: int) -> None:
    for half, name in ((batch_size // 2, "positives"), (batch_size - batch_size // 2, "negatives")):
        if half < world:
            raise DebiasError(f"batch_size {batch_size} holds {half} {name}, fewer than the {world} processes: "
                              f"each needs at least one; raise batch_size or lower --nproc")


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


class _SummedOverRanks(torch.autograd.Function):
    """The sum of a tensor over all ranks; its gradient, the sum of the ranks' gradients (every rank's loss
    depends on every rank's input through it)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = grad.clone()
        dist.all_reduce(total)
        return total


class SyncedBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole batch across ranks.

    torch's SyncBatchNorm runs on GPUs only; this one all-reduces the per-channel sums (differentiably, so
    the gradient is the whole batch's too) on any backend, gloo included.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        channels, dtype = x.shape[1], x.dtype
        x = x.float()   # statistics in fp32 under bf16 autocast, as torch's batch norm keeps them
        count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
        stats = _SummedOverRanks.apply(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels:2 * channels] / total - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * total / (total - 1).clamp_min(1.0), alpha=m)
        shape = (1, channels, 1, 1)
        scale = torch.rsqrt(var + self.eps) * self.weight
        return ((x - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)).to(dtype)


def synced_batch_norms(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d of `module` for a SyncedBatchNorm sharing its parameters and statistics."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = SyncedBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats).to(child.weight.device)
            synced.load_state_dict(child.state_dict())
            setattr(module, name, synced)
        else:
            synced_batch_norms(child)
    return module


RANK_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _rank_env(nproc: int, port: int, rank: int) -> dict[str, str]:
    """What torchrun --standalone sets for one rank on this machine."""
    return {"WORLD_SIZE": str(nproc), "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _threads_per_rank(nproc: int) -> int:
    """The machine's cores split between the ranks: N processes with all cores each would fight over them."""
    return max(1, (os.cpu_count() or 1) // nproc)


def _start_helpers(cmd: list[str], nproc: int, port: int, first: int):
    import subprocess

    procs = []
    for rank in range(first, nproc):
        env = {**os.environ, **_rank_env(nproc, port, rank)}
        env.setdefault("OMP_NUM_THREADS", str(_threads_per_rank(nproc)))
        procs.append(subprocess.Popen(cmd, env=env))
    return procs


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        p.wait()


def launch(argv: list[str], nproc: int) -> int:
    """Run `python -m audit.cli ARGV` as `nproc` ranks on this machine (what torchrun --standalone does), the
    cores split between them; the first failing rank's exit code, after stopping the others."""
    import sys
    import time

    procs = _start_helpers([sys.executable, "-m", "audit.cli", *argv], nproc, _free_port(), first=0)
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = next((c for c in codes if c not in (None, 0)), None)
            if failed is not None:
                _stop(procs)   # the others would wait for it in their next collective
                return failed
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(procs)
        raise


def train_as_rank_zero(helper_cmd: list[str], nproc: int, train_fn):
    """`train_fn()` in this process as rank 0 of `nproc`, `helper_cmd` started as ranks 1 .. nproc-1 (each
    must train the same way); returns what train_fn returns. For a process that cannot be relaunched, such as
    a service job: its progress callback and results stay here."""
    port = _free_port()
    helpers = _start_helpers(helper_cmd, nproc, port, first=1)
    saved = {k: os.environ.get(k) for k in RANK_VARIABLES}
    threads = torch.get_num_threads()
    os.environ.update(_rank_env(nproc, port, 0))
    torch.set_num_threads(_threads_per_rank(nproc))
    try:
        result = train_fn()
    except BaseException:
        _stop(helpers)
        raise
    finally:
        _leave_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        torch.set_num_threads(threads)
    failed = [(rank, code) for rank, code in enumerate((p.wait() for p in helpers), 1) if code]
    if failed:
        raise RuntimeError(f"training process {failed[0][0]} of {nproc} exited with code {failed[0][1]}")
    return result


def rank_from_env() -> int:
    """This process's rank as torchrun (or launch) set it; 0 in a single-process run."""
    return int(os.environ.get("RANK", "0"))
