"""Batched forward passes over a whole dataset (no gradients, eval mode)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .imagecache import MappedPages, RowReader


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (B,H,W,3) -> float (B,3,H,W) in [0,1] on `device`."""
    # np.array copies: batches of a read-only memmap are not writable, which torch warns about.
    x = torch.from_numpy(np.array(images)).to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


@torch.inference_mode()
def predict(model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 512,
            want_recon_error: bool = True, progress: bool = False,
            indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Logits for every image (or for images[indices], in that order); for a DB-VAE also latent mean and
    L1 error.

    Reconstruction error is decoded from the latent mean, so it is deterministic.
    progress: a progress bar over the batches (the CLI's audit; never in a service job's log).
    """
    if indices is not None:
        # Sorted reads are sequential on a memory-mapped cache; only one batch is in memory at a time.
        order = np.argsort(indices, kind="stable")
        out = predict(model, _Rows(images, np.asarray(indices)[order]), device, batch_size, want_recon_error,
                      progress)
        inverse = np.argsort(order, kind="stable")
        return {k: v[inverse] for k, v in out.items()}
    was_training = model.training
    model.eval()
    # Each output filled in place: batches kept and then concatenated would hold every value twice.
    out: dict[str, np.ndarray] = {}
    pages = MappedPages(images)   # scattered rows (_Rows) are read without mapping: nothing to let go of
    try:
        for start in tqdm(range(0, len(images), batch_size), desc="encoding", unit="batch", leave=False,
                          disable=not progress):
            x = to_tensor(images[start:start + batch_size], device)
            pages.read(len(x))
            if hasattr(model, "encode"):
                logit, mu, _ = model.encode(x)   # the log-variance is no one's: 400 MB kept for nothing at 1M
                batch = {"logit": logit, "mu": mu}
                if want_recon_error:
                    batch["recon_error"] = (model.decoder(mu) - x).abs().flatten(1).mean(1)
            else:
                batch = model(x)
            for k, v in batch.items():
                v = v.float().cpu().numpy()
                if k not in out:
                    out[k] = np.empty((len(images), *v.shape[1:]), dtype=v.dtype)
                out[k][start:start + len(v)] = v
    finally:
        model.train(was_training)
    return out


class _Rows:
    """images[indices] read a slice at a time, without copying the whole selection."""

    def __init__(self, images: np.ndarray, indices: np.ndarray):
        self.images, self.indices, self.reader = images, indices, RowReader(images)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.reader.take(self.indices[rows])


@torch.inference_mode()
def decode(model: nn.Module, z: np.ndarray, device: torch.device) -> np.ndarray:
    """Latent vectors (B, latent) -> uint8 images (B,H,W,3)."""
    was_training = model.training
    model.eval()
    try:
        x = model.drawing_decoder(torch.as_tensor(z, dtype=torch.float32, device=device))
    finally:
        model.train(was_training)
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
