"""Multi-process training (DistributedDataParallel) against one process: the same `debias train`, side by side.

Each round trains the same DB-VAE on the same synthetic data once in one process and once with --nproc N
(gloo on the CPU, NCCL with one GPU per rank), and prints the wall time of the whole command, the training
steps' throughput (the history's samples_per_second, the whole batch's) and the largest weight difference
between the two models (the processes draw the same batches: see audit/distributed.py). For scale, the same
difference between one process on all cores and one process on one thread: another summation order, which
Adam's normalised steps carry from rounding to learning-rate-sized changes and training then amplifies.

On one machine's CPU cores N processes share the cores one process already uses, so they are not faster:
the figure is the engine's overhead (gradient all-reduce, synced batch norm). On GPUs, one per rank, it is the
way to scale.

    python bench/ddp_throughput.py                   # 2 processes, 6,000 images at 32px, 2 epochs
    python bench/ddp_throughput.py --nproc 2 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from audit.synth import make_synthetic, save_npz


def train(data: Path, out: Path, nproc: int, args, threads: int | None = None) -> tuple[float, float]:
    """(wall seconds of the command, mean samples/s of its training steps)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "audit.cli", "train", str(data), "--out", str(out), "--image-size",
           str(args.image_size), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--no-progress", "--nproc", str(nproc)]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    history = json.loads((out / "history.json").read_text())
    return wall, sum(r["samples_per_second"] for r in history) / len(history)


def max_difference(a: Path, b: Path) -> float:
    wa = torch.load(a / "model.pt", weights_only=True)["model"]
    wb = torch.load(b / "model.pt", weights_only=True)["model"]
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa if "num_batches" not in k)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--n", type=int, default=6000, help="training images (half faces)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2, help="interleaved runs of each")
    args = p.parse_args()
    print(f"{args.n} images at {args.image_size}px, {args.epochs} epochs, batch {args.batch_size}, "
          f"{os.cpu_count()} CPU cores, CUDA {'yes' if torch.cuda.is_available() else 'no'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="debias-ddp-") as tmp:
        data = Path(tmp) / "data.npz"
        save_npz(make_synthetic(args.n // 2, args.n - args.n // 2, args.image_size, seed=0), data)
        rows = {1: [], args.nproc: []}
        for r in range(args.rounds):
            for nproc in (1, args.nproc):
                out = Path(tmp) / f"r{r}-n{nproc}"
                rows[nproc].append(train(data, out, nproc, args))
                wall, rate = rows[nproc][-1]
                print(f"round {r} {nproc} process{'es' if nproc > 1 else ''}: {wall:6.1f} s wall, "
                      f"{rate:7.0f} samples/s in the steps", flush=True)
            train(data, Path(tmp) / f"r{r}-t1", 1, args, threads=1)
            one = Path(tmp) / f"r{r}-n1"
            print(f"round {r} largest weight difference from 1 process: {args.nproc} processes "
                  f"{max_difference(one, Path(tmp) / f'r{r}-n{args.nproc}'):.2e}; 1 process on 1 thread "
                  f"{max_difference(one, Path(tmp) / f'r{r}-t1'):.2e}", flush=True)
    best = {n: (min(w for w, _ in v), max(s for _, s in v)) for n, v in rows.items()}
    one, many = best[1], best[args.nproc]
    print(f"\nbest of {args.rounds}: 1 process {one[0]:.1f} s, {one[1]:.0f} samples/s; {args.nproc} processes "
          f"{many[0]:.1f} s, {many[1]:.0f} samples/s; throughput ratio {many[1] / one[1]:.2f}, "
          f"wall ratio {many[0] / one[0]:.2f}")


if __name__ == "__main__":
    main()
