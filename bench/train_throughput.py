"""DB-VAE training throughput: `debias train` vs a bare PyTorch loop, side by side, and their share of the
machine's peak.

Both train the same DBVAE (batch 32, Adam 5e-4) on the same uint8 images for
the same number of steps, whole runs interleaved so that machine noise hits
both alike, at each --image-sizes (32 and 64 px by default).  The bare loop is the
6.S191 lab's algorithm in as few lines as possible: each epoch it encodes the
data, computes the lab's histogram weights and draws balanced batches, then
steps.  The project's loop adds per-class densities, checkpoints, history,
tqdm (off here) and callbacks.

The peak is measured here, not taken from a data sheet: the best fp32 2048 x 2048
matrix product per second on this device with torch's threads.  A training
image's work is counted with torch.utils.flop_counter.FlopCounterMode
(forward and backward of one step's encoder, decoder and loss, per image); the
share of the peak is that work times the samples per second, over the peak.
Printed for the training steps alone (the history's seconds) and for whole
runs (latent passes, densities and checkpoints included).  Also printed: the
time spent producing batches (in RAM and from a memory-mapped cache) as a
share of a training step.

    python bench/train_throughput.py
    python bench/train_throughput.py --device cuda      # the same on a GPU
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from audit.dataset import ImageDataset
from audit.models import DBVAE, ModelConfig, dbvae_loss, pick_device
from audit.training import ImageSource, TrainConfig, epoch_batches, train


def lab_weights(mu: np.ndarray, bins: int = 10, alpha: float = 0.001) -> np.ndarray:
    p = np.zeros(len(mu))
    for i in range(mu.shape[1]):
        density, edges = np.histogram(mu[:, i], density=True, bins=bins)
        edges[0], edges[-1] = -np.inf, np.inf
        smoothed = density + alpha
        smoothed /= smoothed.sum()
        inv = 1.0 / smoothed[np.digitize(mu[:, i], edges) - 1]
        p = np.maximum(p, inv / inv.sum())
    return p / p.sum()


def bare_epoch(model, opt, images: torch.Tensor, labels: torch.Tensor, batch: int, steps: int,
               rng: np.random.Generator, kl_weight: float) -> None:
    """The lab's epoch, minimal: refresh weights from the encoder, draw balanced batches, step."""
    with torch.no_grad():
        model.eval()
        mu = torch.cat([model.encode(images[s:s + 512].permute(0, 3, 1, 2).float() / 255)[1]
                        for s in range(0, len(images), 512)]).cpu().numpy()
        model.train()
    y_np = labels.cpu().numpy()
    pos, neg = np.flatnonzero(y_np == 1), np.flatnonzero(y_np == 0)
    p = lab_weights(mu[pos])
    for _ in range(steps):
        idx = np.concatenate([rng.choice(pos, batch // 2, p=p), rng.choice(neg, batch - batch // 2)])
        idx_t = torch.from_numpy(idx).to(images.device)
        x = images[idx_t].permute(0, 3, 1, 2).float() / 255
        y = labels[idx_t].float()
        logit, mu_b, logvar = model.encode(x)
        z = mu_b + torch.exp(0.5 * logvar) * torch.randn_like(mu_b)
        recon = model.decoder(z)
        vae = (recon - x).abs().flatten(1).mean(1) + kl_weight * 0.5 * (logvar.exp() + mu_b ** 2 - 1 - logvar).sum(1)
        loss = (F.binary_cross_entropy_with_logits(logit, y, reduction="none") + y * vae).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if images.is_cuda:
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 20) -> float:
    """The best fp32 n x n matrix products per second on `device`, in GFLOP/s (2 n^3 flops each)."""
    torch.backends.cuda.matmul.allow_tf32 = False     # fp32 means fp32: TF32 would inflate the peak on a GPU
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def flops_per_image(cfg: ModelConfig, batch: int, device: torch.device) -> float:
    """Forward + backward FLOPs of one training step of the DB-VAE, per image (matmuls and convolutions)."""
    model = DBVAE(cfg).to(device)
    x = torch.rand(batch, 3, cfg.image_size, cfg.image_size, device=device)
    y = torch.arange(batch, device=device) % 2
    counter = FlopCounterMode(display=False)
    with counter:
        dbvae_loss(model(x), x, y, cfg.kl_weight)["loss"].backward()
    return counter.get_total_flops() / batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def batch_share(images: np.ndarray, labels: np.ndarray, device, batch: int, steps: int, resident: bool) -> float:
    source = ImageSource(images, device, max_resident_bytes=(1 << 40) if resident else 0)
    idx = epoch_batches(labels, None, batch, steps, np.random.default_rng(0))
    t = time.perf_counter()
    for b in idx:
        source.batch(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2048, help="training images")
    p.add_argument("--image-sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="epochs per run")
    p.add_argument("--rounds", type=int, default=3, help="interleaved runs of each loop")
    p.add_argument("--device")
    args = p.parse_args()
    device = pick_device(args.device)
    peak = matmul_peak(device)
    print(f"device {device}, {torch.get_num_threads()} threads: measured fp32 matmul peak {peak:.0f} GFLOP/s "
          f"(best 2048 x 2048 product)", flush=True)
    rows = []
    for size in args.image_sizes:
        rows.append(measure(args, size, device, peak))
    print("\nshare of the measured peak (training work x samples/s / peak):")
    for size, flops, steps_rate, whole_rate, bare_rate in rows:
        def share(rate: float) -> str:
            return f"{100 * flops * rate / 1e9 / peak:5.1f}%"
        print(f"  {size:3d}px ({flops / 1e9:.4f} GFLOP an image): steps {share(steps_rate)} ({steps_rate:7.1f}/s), "
              f"whole run {share(whole_rate)} ({whole_rate:7.1f}/s); bare loop whole run {share(bare_rate)} "
              f"({bare_rate:7.1f}/s)")


def measure(args, image_size: int, device: torch.device, peak: float) -> tuple:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, image_size, image_size, 3), dtype=np.uint8)
    labels = np.repeat([1, 0], args.n // 2)
    steps = -(-args.n // args.batch_size)
    cfg = ModelConfig(image_size=image_size)
    flops = flops_per_image(cfg, args.batch_size, device)
    print(f"\n{args.n} images {image_size}px, batch {args.batch_size}, {steps} steps/epoch, {args.epochs} epochs a "
          f"run, {flops / 1e9:.4f} GFLOP a training image", flush=True)

    images_t = torch.from_numpy(images).to(device)
    labels_t = torch.from_numpy(labels).to(device)
    ds = ImageDataset(images=images, labels=labels)

    def run_bare() -> None:
        torch.manual_seed(0)
        model = DBVAE(cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=5e-4)
        for _ in range(args.epochs):
            bare_epoch(model, opt, images_t, labels_t, args.batch_size, steps, rng, cfg.kl_weight)

    def run_project(out: Path, epochs: int):
        # val_fraction 0: the bare loop trains on every image, so must the project for a like-for-like ratio.
        return train(ds, cfg, TrainConfig(epochs=epochs, batch_size=args.batch_size, device=str(device),
                                          val_fraction=0.0),
                     out, progress=False)

    project, bare, project_steps = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up of both (allocator, thread pools, first-call costs), not timed.
        run_project(Path(tmp) / "warm", 1)
        saved_epochs, args.epochs = args.epochs, 1
        run_bare()
        args.epochs = saved_epochs
        for r in range(args.rounds):  # whole runs, interleaved so machine noise hits both alike
            t = time.perf_counter()
            result = run_project(Path(tmp) / f"m{r}", args.epochs)
            project.append(time.perf_counter() - t)
            project_steps.append(sum(h["seconds"] for h in result.history))
            t = time.perf_counter()
            run_bare()
            bare.append(time.perf_counter() - t)
            print(f"  run {r + 1}: debias {project[-1]:.2f}s (of which steps {project_steps[-1]:.2f}s), "
                  f"bare {bare[-1]:.2f}s", flush=True)
    proj, base, proj_steps = statistics.median(project), statistics.median(bare), statistics.median(project_steps)
    samples = args.epochs * steps * args.batch_size
    print(f"debias train (whole run: density refresh, checkpoints included): {samples / proj:8.1f} samples/s")
    print(f"bare PyTorch loop (whole run: lab weight refresh included):      {samples / base:8.1f} samples/s")
    print(f"ratio debias / bare throughput: {base / proj:.3f}  (debias takes {100 * (proj / base - 1):+.1f}% time)")
    step_time = proj_steps / (args.epochs * steps)
    for resident in (True, False):
        share = batch_share(images, labels, device, args.batch_size, steps, resident) / steps / step_time
        where = "device-resident tensor" if resident else "memory-mapped array"
        print(f"batch production from a {where}: {100 * share:.1f}% of a training step")
    return image_size, flops, samples / proj_steps, samples / proj, samples / base


if __name__ == "__main__":
    main()
