"""What the adversarial decoder adds to a DB-VAE training step, timed side by side.

One process builds a plain and an adversarial DB-VAE (and one per `--variants` setting of the picture
decoder) and trains them on the same batches in short alternating blocks of steps, so that the machine's
drift (on a shared 2-core VM its speed moves by tens of percent within minutes) burdens every model alike.
Printed: each variant's seconds per step (median over blocks) and its ratio to the plain model's, with the
range of the per-block ratios. The issue's bound: an epoch at most 1.4x a plain one (an epoch is its steps
plus the per-epoch latent pass, which both share, so the steps' ratio bounds the epoch's).
`--variants ROWS:EVERY` sets how many positives the picture decoder rebuilds on a step it takes and on
every how many-th step it takes one (audit.models.PICTURE_BATCH and PICTURE_EVERY).

    cd bench && python decoder_cost.py                         # planted faces at 64px
    cd bench && python decoder_cost.py --data mnist --variants 8:1 16:2
"""
from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
import torch
from decoder_bench import datasets

import audit.models as models
from audit.models import ModelConfig, build_model
from audit.steps import run_epoch
from audit.training import ImageSource, epoch_batches, make_optimizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=["faces", "mnist"], default="faces")
    p.add_argument("--n", type=int, default=2000, help="training images")
    p.add_argument("--blocks", type=int, default=12, help="blocks of steps per model")
    p.add_argument("--steps", type=int, default=20, help="steps per block (even: the picture decoder's share)")
    p.add_argument("--variants", nargs="+", default=[f"{models.PICTURE_BATCH}:{models.PICTURE_EVERY}"],
                   help="ROWS:EVERY of the picture decoder (default: the defaults)")
    args = p.parse_args()
    torch.manual_seed(0)
    # decoder_bench's data (its test split is built too and left unused)
    train, _test, _group_by, size = datasets(args.data, 0, SimpleNamespace(n_train=args.n, faces=args.n // 2))
    labels = np.asarray(train.labels)
    source = ImageSource(train.images, torch.device("cpu"))
    y_all = torch.from_numpy(labels)
    variants = ["plain"] + [f"adversarial-{v}" for v in args.variants]
    trained = {}
    for variant in variants:
        cfg = ModelConfig(method="dbvae", image_size=size, decoder=variant.partition("-")[0])
        model = build_model(cfg).to(memory_format=torch.channels_last)
        trained[variant] = (cfg, model, make_optimizer(model, 1e-3))
    rng = np.random.default_rng(0)
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for block in range(args.blocks + 1):
        batches = epoch_batches(labels, None, 32, args.steps, rng)
        for variant in (variants if block % 2 == 0 else variants[::-1]):
            spec = variant.partition("-")[2]
            if spec:
                models.PICTURE_BATCH, models.PICTURE_EVERY = (int(x) for x in spec.split(":"))
            cfg, model, optimizer = trained[variant]
            started = time.perf_counter()
            run_epoch(model, optimizer, source, y_all, batches, cfg, 1, 1, False, None, rng=rng)
            if block:  # the first block warms up (allocator, kernels' first calls)
                seconds[variant].append((time.perf_counter() - started) / args.steps)
    print(f"{args.data}: {len(train)} images at {size}px, batch 32, {args.blocks} alternating blocks of "
          f"{args.steps} steps per model")
    plain = np.array(seconds["plain"])
    print(f"{'plain':18} {1000 * np.median(plain):7.1f} ms/step")
    for variant in variants[1:]:
        mine = np.array(seconds[variant])
        ratios = mine / plain
        print(f"{variant:18} {1000 * np.median(mine):7.1f} ms/step  {np.median(mine) / np.median(plain):.2f}x plain "
              f"(blocks {ratios.min():.2f}-{ratios.max():.2f}x, median {np.median(ratios):.2f}x)")


if __name__ == "__main__":
    main()
