"""Why a model set's members train side by side on a CPU (audit/memberpool.py), measured.

1. Training steps per second of one model on every core's threads, on 1 thread, and of k 1-thread
   processes stepping at once (k = the cores): small convolutions split poorly across threads, so the k
   processes together may step far more samples per second than one process on k threads.
2. A whole model set (`train_set`, 2 seeds, synthetic faces) trained one member after another and side by
   side, wall time each, in one run (default: the demo's size; DEBIAS_MEMBER_PROCESSES forces each way).

    python bench/member_processes.py
    python bench/member_processes.py --image-sizes 64 --set-images 3000 --set-epochs 2   # under MIN_WORK
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS_SCRIPT = """
import sys, time, torch
from audit.models import ModelConfig, build_model, dbvae_loss
from audit.training import make_optimizer
torch.set_num_threads(int(sys.argv[3]))
size, method = int(sys.argv[1]), sys.argv[2]
torch.manual_seed(0)
model = build_model(ModelConfig(method=method, image_size=size)).to(memory_format=torch.channels_last)
model.train()
opt = make_optimizer(model, 5e-4)
x = torch.rand(32, 3, size, size).contiguous(memory_format=torch.channels_last)
y = torch.tensor([0, 1] * 16)
def step():
    parts = dbvae_loss(model(x), x, y, 0.005)
    opt.zero_grad(set_to_none=True); parts["loss"].backward(); opt.step()
for _ in range(5): step()
best = float("inf")
for _ in range(int(sys.argv[4])):
    t = time.perf_counter()
    for _ in range(20): step()
    best = min(best, (time.perf_counter() - t) / 20)
print(32 / best)
"""


def steps_per_second(size: int, method: str, threads: int, processes: int, rounds: int) -> list[float]:
    """Samples/s of each of `processes` processes stepping at once on `threads` threads (best of rounds)."""
    cmd = [sys.executable, "-c", STEPS_SCRIPT, str(size), method, str(threads), str(rounds)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(processes)]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def whole_set(n_images: int, size: int, epochs: int, method: str) -> dict[str, float]:
    from audit.models import ModelConfig
    from audit.modelset import train_set
    from audit.synth import make_synthetic
    from audit.training import TrainConfig, default_error_options

    data = make_synthetic(n_images // 2, n_images // 2, size, seed=0)
    model_cfg = ModelConfig(method=method, image_size=size)
    train_cfg = TrainConfig(epochs=epochs, device="cpu", **default_error_options(method, epochs))
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, processes in (("one after another", "1"), ("side by side", "")):
            os.environ["DEBIAS_MEMBER_PROCESSES"] = processes or str(os.cpu_count() or 1)
            started = time.perf_counter()
            train_set(data, Path(tmp) / label.replace(" ", "-"), model_cfg, train_cfg, [0, 1], progress=False)
            seconds[label] = time.perf_counter() - started
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--methods", nargs="+", default=["dbvae", "standard"])
    p.add_argument("--rounds", type=int, default=5, help="timed rounds of 20 steps; the best is kept")
    p.add_argument("--set-images", type=int, default=6000, help="the demo's")
    p.add_argument("--set-size", type=int, default=64)
    p.add_argument("--set-epochs", type=int, default=6)
    args = p.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} cores; batch 32; samples/s of training steps, best of {args.rounds} rounds of 20 steps")
    for size in args.image_sizes:
        for method in args.methods:
            every = steps_per_second(size, method, cores, 1, args.rounds)[0]
            one = steps_per_second(size, method, 1, 1, args.rounds)[0]
            together = steps_per_second(size, method, 1, cores, args.rounds)
            print(f"{size:3d}px {method:8s}: 1 process on {cores} threads {every:7.0f}/s; on 1 thread {one:7.0f}/s; "
                  f"{cores} 1-thread processes at once {sum(together):7.0f}/s "
                  f"({' + '.join(f'{v:.0f}' for v in together)}): {sum(together) / every:.2f}x")
    for method in args.methods:
        s = whole_set(args.set_images, args.set_size, args.set_epochs, method)
        a, b = s["one after another"], s["side by side"]
        print(f"model set of 2 seeds, {method}, {args.set_images} images at {args.set_size}px, {args.set_epochs} "
              f"epochs: one after another {a:.1f} s, side by side {b:.1f} s ({a / b:.2f}x)")


if __name__ == "__main__":
    main()
