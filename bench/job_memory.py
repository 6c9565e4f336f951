"""A job's memory: audit.resources' estimate beside the measured peak, side by side.

Each configuration runs in a fresh process (as a job does), on random images
kept in memory: it trains for one epoch (the DB-VAE also scores the dataset to
reweight it, as every epoch does), or runs the inference pass of an
evaluation. The measured figure is that process's peak resident memory
(getrusage ru_maxrss), which includes the loaded libraries, as the estimate does.
The estimate should stay above the measurement, within a factor of about 2.

    python bench/job_memory.py
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile

CONFIGS = [  # (what, method, image_size, latent_dim, batch_size, n_samples)
    ("train", "standard", 32, 16, 32, 200),
    ("train", "dbvae", 64, 100, 256, 200),
    ("train", "dbvae", 128, 256, 512, 100),
    ("train", "dbvae", 64, 100, 32, 2000),
    ("train", "dbvae", 64, 512, 1024, 100),
    ("train", "standard", 128, 100, 256, 100),
    ("train", "dbvae", 256, 100, 64, 100),
    ("evaluate", "dbvae", 128, 100, 512, 600),
    ("evaluate", "dbvae", 256, 100, 512, 520),
    ("evaluate", "standard", 256, 100, 512, 520),
]


def _measure(what: str, method: str, image_size: int, latent_dim: int, batch_size: int, n: int,
             out: mp.Queue) -> None:
    import numpy as np
    import torch

    from audit.dataset import ImageDataset
    from audit.inference import predict
    from audit.models import ModelConfig, build_model
    from audit.training import TrainConfig, train

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
    ds = ImageDataset(images, np.arange(n) % 2)
    cfg = ModelConfig(method=method, image_size=image_size, latent_dim=latent_dim)
    if what == "train":
        with tempfile.TemporaryDirectory() as folder:
            train(ds, cfg, TrainConfig(epochs=1, batch_size=batch_size, device="cpu"), folder, progress=False)
    else:
        predict(build_model(cfg).eval(), ds.images, torch.device("cpu"), batch_size=batch_size)
    out.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux reports KiB


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    from audit.models import ModelConfig
    from audit.resources import estimate_inference_memory, estimate_training_memory

    ctx = mp.get_context("spawn")  # a fresh interpreter per run: nothing carried over between them
    print(f"{'job':<9}{'method':<9}{'px':>5}{'latent':>7}{'batch':>6}{'n':>6}"
          f"{'estimate MB':>13}{'measured MB':>13}{'ratio':>7}")
    for what, method, size, latent, batch, n in CONFIGS:
        cfg = ModelConfig(method=method, image_size=size, latent_dim=latent)
        estimate = (estimate_training_memory(cfg, batch, n) if what == "train"
                    else estimate_inference_memory(cfg, n, batch))
        out = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(what, method, size, latent, batch, n, out))
        proc.start()
        measured = out.get()
        proc.join()
        print(f"{what:<9}{method:<9}{size:>5}{latent:>7}{batch:>6}{n:>6}"
              f"{estimate / 1e6:>13.0f}{measured / 1e6:>13.0f}{estimate / measured:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
