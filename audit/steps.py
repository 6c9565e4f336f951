"""One epoch of optimisation steps over given batches, in one process or as one rank of several."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .distributed import Ranks
from .mixing import GroupMixer
from .models import ModelConfig, adversarial_losses, adversarial_rows, dbvae_loss

# callback(epoch, step, steps_per_epoch, metrics); raising from it stops training.
ProgressCallback = Callable[[int, int, int, dict], None]
# The callback's loss is read from the device this often: a .item() every step would stall a GPU every batch.
LOSS_EVERY = 20


def mixed_precision(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPUs that support it (same exponent range as fp32: no loss scaling); fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def run_epoch(model, optimizer, source, y_all: torch.Tensor, batches: np.ndarray,
              model_cfg: ModelConfig, epoch: int, epochs: int, progress: bool,
              callback: ProgressCallback | None, mixer: GroupMixer | None = None,
              rng: np.random.Generator | None = None, done_steps: int = 0, epoch_steps: int | None = None,
              net: torch.nn.Module | None = None, ranks: Ranks | None = None,
              labels: np.ndarray | None = None) -> dict:
    """One pass over `batches`; the callback counts steps in the whole epoch (`done_steps` of `epoch_steps`
    already run when an epoch is split around the error set).

    With `ranks`, `net` is the DDP wrapper of `model` and this process trains on its share of each batch
    (audit/distributed.py); the record is the whole batch's, the same on every rank.
    """
    net = model if net is None else net
    model.train()
    device = y_all.device
    autocast_dtype = mixed_precision(device)
    loss_seen = float("nan")
    # Sums stay on the device: a .item() per step would stall a GPU every batch.
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}  # steps that reported each part (the picture decoder's: every PICTURE_EVERY-th)
    correct = torch.zeros((), dtype=torch.long, device=y_all.device)
    seen = 0
    started = time.perf_counter()
    main = ranks is None or ranks.is_main
    bar = tqdm(batches, desc=f"epoch {epoch}/{epochs} ({model_cfg.method})", leave=False,
               disable=not (progress and main), unit="batch")
    for step, idx in enumerate(bar, 1):
        kwargs, scale = {}, 1.0
        if ranks is not None:
            mine = ranks.share(idx, labels)
            if model_cfg.method == "dbvae":
                # The whole batch's noise, as one process draws it; this rank keeps its rows.
                noise = torch.randn(len(idx), model_cfg.latent_dim, device=y_all.device)
                kwargs["eps"] = noise[torch.from_numpy(mine).to(y_all.device)]
            # DDP averages the ranks' gradients: weight each by its share so the result is the batch mean's.
            scale = len(mine) * ranks.world / len(idx)
            idx = idx[mine]
        x = source.batch(idx)
        y = y_all[torch.from_numpy(idx).to(y_all.device)]
        if mixer is not None:
            rows, partners = mixer.partners(idx, rng)
            if len(rows):
                x = mixer.mix(x, rows, source.batch(partners), rng)
        fake_rows = adversarial_rows(model, y, step)
        if fake_rows is not None:
            kwargs["fake_rows"] = fake_rows
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            out = net(x, **kwargs)
            parts = dbvae_loss(out, x, y, model_cfg.kl_weight)
            adversarial = None if fake_rows is None else adversarial_losses(model, out, x, fake_rows)
        optimizer.zero_grad(set_to_none=True)
        if adversarial is None:
            (parts["loss"] * scale if scale != 1.0 else parts["loss"]).backward()
            optimizer.step()
        else:
            parts = adversarial_step(model, optimizer, parts, *adversarial, model_cfg.adversarial_weight)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0) + v.detach()
            counts[k] = counts.get(k, 0) + 1
        correct += ((out["logit"] > 0).long() == y).sum()
        seen += len(idx)
        if callback is not None and main:
            if step % LOSS_EVERY == 1 or step == len(batches):
                loss_seen = parts["loss"].item()
            callback(epoch, done_steps + step, epoch_steps or len(batches), {"loss": loss_seen})
    n = len(batches)
    if ranks is not None:
        sums, correct, seen = _whole_batch_figures(sums, correct, seen, ranks)
    means = {k: v.item() / counts[k] for k, v in sums.items()}
    record = {"epoch": epoch, **means, "accuracy": correct.item() / seen, "batches": n}
    elapsed = time.perf_counter() - started  # after .item(): the device has finished the epoch
    return {**record, "seconds": elapsed, "samples_per_second": seen / elapsed}


def _whole_batch_figures(sums: dict, correct: torch.Tensor, seen: int, ranks: Ranks):
    """Every rank's running sums -> the whole batches' (means of the ranks' means; counts added)."""
    import torch.distributed as dist

    keys = sorted(sums)
    packed = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64, device=correct.device) for k in keys]
                         + [correct.double(), torch.tensor(float(seen), dtype=torch.float64, device=correct.device)])
    dist.all_reduce(packed)
    means = {k: packed[i] / ranks.world for i, k in enumerate(keys)}
    return means, packed[-2].long(), int(packed[-1].item())


def adversarial_step(model, optimizer, parts: dict, picture_l1: torch.Tensor, g_loss: torch.Tensor,
                     d_loss: torch.Tensor, weight: float) -> dict:
    """One optimizer step: the model learns from its loss, the picture decoder from its reconstruction and
    adversarial terms, the discriminator from its own loss only.

    The discriminator's gradient is taken first, with respect to it alone (its loss shares the fakes' logits
    with the picture decoder's); the other backward then stops at the other parameters, so no discriminator
    weight gradient is computed for nothing. The sets of parameters are disjoint (the picture decoder reads
    detached codes) and Adam updates each on its own, so one step equals a step of each, at less cost
    (bench/decoder_cost.py), and the rest of the model takes the plain model's step.
    """
    disc_params = list(model.discriminator.parameters())
    disc_grads = torch.autograd.grad(d_loss, disc_params, retain_graph=True)
    own = {id(p) for p in disc_params}
    (parts["loss"] + picture_l1 + weight * g_loss).backward(inputs=[p for p in model.parameters()
                                                                    if p.requires_grad and id(p) not in own])
    for p, grad in zip(disc_params, disc_grads):
        p.grad = grad
    optimizer.step()
    return {**parts, "picture_recon": picture_l1.detach(), "adv_decoder": g_loss.detach(),
            "adv_discriminator": d_loss.detach()}


def merge_records(first: dict, second: dict) -> dict:
    """One epoch's record from its two parts (before and after the error set): means weighted by batches."""
    a, b = first["batches"], second["batches"]
    merged = {k: (first[k] * a + second[k] * b) / (a + b) for k in first
              if k not in ("epoch", "batches", "seconds", "samples_per_second") and k in second}
    seconds = first["seconds"] + second["seconds"]
    seen = first["samples_per_second"] * first["seconds"] + second["samples_per_second"] * second["seconds"]
    return {"epoch": first["epoch"], **merged, "batches": a + b, "seconds": seconds,
            "samples_per_second": seen / seconds if seconds else 0.0}
