"""The lab's CNN classifier and the DB-VAE built on it (Amini et al. 2019).

Shapes below are for the default 64x64 input; every stride-2 block halves the
side, so the flattened size and the decoder's first feature map follow
`image_size`.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import DebiasError, ModelError

METHODS = ("standard", "dbvae")
DECODERS = ("plain", "adversarial")


@dataclass
class ModelConfig:
    method: str = "dbvae"          # standard | dbvae
    image_size: int = 64
    n_filters: int = 12            # blocks use 1x, 2x, 4x, 6x -> 12/24/48/72
    dense_units: int = 512
    latent_dim: int = 100
    kl_weight: float = 0.0005
    # adversarial: a second decoder, the one pictures are drawn with, learns from the encoder's codes
    # (detached) with an L1 reconstruction loss plus a patch discriminator's judgement of its reconstructions
    # and prior samples of positives against real positives (VAE-GAN, Larsen et al. 2016), that term times
    # adversarial_weight. The classifier, the VAE and its decoder train exactly as with a plain decoder.
    decoder: str = "plain"
    adversarial_weight: float = 0.05

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ModelError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.image_size < 16 or self.image_size % 16:
            raise ModelError(f"image size {self.image_size} must be a multiple of 16 (16, 32, 64, ...)")
        for name in ("n_filters", "dense_units", "latent_dim"):
            if getattr(self, name) < 1:
                raise ModelError(f"{name} must be positive, got {getattr(self, name)}")
        # A weight past 100 drowns the classifier's loss; NaN or inf would poison every step.
        if not (math.isfinite(self.kl_weight) and 0 <= self.kl_weight <= 100):
            raise ModelError(f"kl_weight must be a number from 0 to 100, got {self.kl_weight}")
        if self.decoder not in DECODERS:
            raise ModelError(f"unknown decoder {self.decoder!r}; choose one of {', '.join(DECODERS)}")
        if self.decoder == "adversarial" and self.method != "dbvae":
            raise ModelError("an adversarial decoder needs a decoder: use it with method dbvae")
        if not (math.isfinite(self.adversarial_weight) and 0 < self.adversarial_weight <= 10):
            raise ModelError(f"adversarial_weight must be a number in (0, 10], got {self.adversarial_weight}")

    @property
    def feature_side(self) -> int:
        return self.image_size // 16

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    # Keras 'same' padding with stride 2: pad (k-1)//2 on each side.
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride=2, padding=(kernel - 1) // 2),
                         nn.ReLU(), nn.BatchNorm2d(c_out))


class Encoder(nn.Module):
    """CNN trunk: (B,3,64,64) -> (B, n_outputs)."""

    def __init__(self, cfg: ModelConfig, n_outputs: int):
        super().__init__()
        n = cfg.n_filters
        self.features = nn.Sequential(
            _conv_block(3, n, 5),          # (B,12,32,32)
            _conv_block(n, 2 * n, 5),      # (B,24,16,16)
            _conv_block(2 * n, 4 * n, 3),  # (B,48,8,8)
            _conv_block(4 * n, 6 * n, 3),  # (B,72,4,4)
            nn.Flatten(),                  # (B,1152)
            nn.Linear(6 * n * cfg.feature_side ** 2, cfg.dense_units), nn.ReLU(),
        )
        self.head = nn.Linear(cfg.dense_units, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Decoder(nn.Module):
    """Mirror of the encoder: (B, latent) -> (B,3,64,64) in [0,1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n, side = cfg.n_filters, cfg.feature_side
        self.side, self.channels = side, 6 * n
        self.fc = nn.Linear(cfg.latent_dim, 6 * n * side * side)
        # output_padding=1 makes each stride-2 transpose exactly double the side.
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(6 * n, 4 * n, 3, 2, padding=1, output_padding=1), nn.ReLU(),  # 8x8
            nn.ConvTranspose2d(4 * n, 2 * n, 3, 2, padding=1, output_padding=1), nn.ReLU(),  # 16x16
            nn.ConvTranspose2d(2 * n, n, 5, 2, padding=2, output_padding=1), nn.ReLU(),      # 32x32
            nn.ConvTranspose2d(n, 3, 5, 2, padding=2, output_padding=1),                     # 64x64
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(z)).view(-1, self.channels, self.side, self.side)
        return torch.sigmoid(self.deconv(h))


class PatchDiscriminator(nn.Module):
    """(B,3,S,S) -> (B, S/8, S/8) logits, one per overlapping patch: real positive image (1) or decoded (0).

    Judging patches, not whole images, penalises blur everywhere at a small cost (PatchGAN, Isola et al.
    2017). No batch norm: real and decoded images go through it in separate batches.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n = max(4, cfg.n_filters // 2)  # half the encoder's width: judging texture needs less than classifying
        self.net = nn.Sequential(
            nn.Conv2d(3, n, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(n, 2 * n, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * n, 4 * n, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * n, 1, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class StandardClassifier(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logit": self.encoder(x).squeeze(1)}


class DBVAE(nn.Module):
    """Encoder emits 1 logit + latent mean + log-variance; decoder rebuilds images."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg, 1 + 2 * cfg.latent_dim)
        self.decoder = Decoder(cfg)
        if cfg.decoder == "adversarial":
            self.picture_decoder = Decoder(cfg)
            self.discriminator = PatchDiscriminator(cfg)
            # Its prior draws come from their own stream: the VAE's sampling noise stays the plain model's.
            self.seed_prior_noise(0)

    def seed_prior_noise(self, seed: int) -> None:
        """Restart the picture decoder's prior draws (training reseeds them every epoch, as the main stream)."""
        self._prior_seed, self._prior_noise = seed, None

    def _prior_draws(self, n: int, like: torch.Tensor) -> torch.Tensor:
        # A generator on the batch's device: drawing on the CPU and copying would stall a GPU every step.
        if self._prior_noise is None or self._prior_noise.device != like.device:
            self._prior_noise = torch.Generator(device=like.device).manual_seed(self._prior_seed)
        return torch.randn(n, self.cfg.latent_dim, generator=self._prior_noise, device=like.device,
                           dtype=like.dtype)

    @property
    def drawing_decoder(self) -> nn.Module:
        """The decoder that pictures (traversals, samples, reconstructions to look at) are drawn with."""
        return getattr(self, "picture_decoder", self.decoder)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.encoder(x)                  # (B, 1 + 2*latent)
        d = self.cfg.latent_dim
        return out[:, 0], out[:, 1:1 + d], out[:, 1 + d:]

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None,
                fake_rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """eps: the sampling noise, drawn here when None (a rank of a multi-process run passes its rows).

        fake_rows (adversarial decoder, `adversarial_rows`): the picture decoder rebuilds these rows from
        their codes, detached, as out["picture_recon"], and decodes ADVERSARIAL_BATCH prior draws, in one call;
        out["fake"] is what the discriminator judges: the first ADVERSARIAL_BATCH rebuilt rows and the draws.
        """
        logit, mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, eps) if self.training else mu
        out = {"logit": logit, "mu": mu, "logvar": logvar, "z": z, "recon": self.decoder(z)}
        if fake_rows is None:
            return out
        judged = min(len(fake_rows), ADVERSARIAL_BATCH)
        prior = self._prior_draws(judged, z)
        drawn = self.picture_decoder(torch.cat([z[fake_rows].detach(), prior]))
        rebuilt = drawn[:len(fake_rows)]
        return {**out, "picture_recon": rebuilt, "fake": torch.cat([rebuilt[:judged], drawn[len(fake_rows):]])}


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    # z = mu + sigma * eps with sigma = exp(0.5 * logvar).
    return mu + torch.exp(0.5 * logvar) * (torch.randn_like(mu) if eps is None else eps)


def build_model(cfg: ModelConfig) -> nn.Module:
    return DBVAE(cfg) if cfg.method == "dbvae" else StandardClassifier(cfg)


def dbvae_loss(out: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               kl_weight: float) -> dict[str, torch.Tensor]:
    """BCE + 1[y=1] * (L1 reconstruction + kl_weight * KL), indicator per sample.

    Returns the batch means of the total and each part (parts for the history).
    """
    y = y.float()
    bce = F.binary_cross_entropy_with_logits(out["logit"], y, reduction="none")     # (B,)
    if "mu" not in out:
        return {"loss": bce.mean(), "bce": bce.mean()}
    recon = (out["recon"] - x).abs().flatten(1).mean(1)                               # (B,)
    mu, logvar = out["mu"], out["logvar"]
    kl = 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(1)                       # (B,)
    vae = recon + kl_weight * kl
    total = bce + y * vae
    n_pos = y.sum().clamp(min=1.0)
    # Parts averaged over positives only: that is the population they apply to.
    return {"loss": total.mean(), "bce": bce.mean(),
            "recon": (y * recon).sum() / n_pos, "kl": (y * kl).sum() / n_pos}


# Positives the picture decoder rebuilds on a step it takes, and how many of them (and prior decodings) the
# discriminator judges; it and the discriminator step on every PICTURE_EVERY-th batch. Their cost, not the
# batch's, bounds what the adversarial decoder adds to an epoch (bench/decoder_cost.py).
PICTURE_BATCH = 16
ADVERSARIAL_BATCH = 4
PICTURE_EVERY = 2


def adversarial_rows(model: nn.Module, y: torch.Tensor, step: int = 0) -> torch.Tensor | None:
    """The batch's rows the picture decoder rebuilds (its first positives; the discriminator judges the first
    of them), or None when the model has no discriminator, the batch no positive, or `step` (counted from 1
    in an epoch) is not one the picture decoder takes."""
    if not hasattr(model, "discriminator") or step % PICTURE_EVERY:
        return None
    positives = torch.nonzero(y == 1).squeeze(1)[:PICTURE_BATCH]
    return positives if len(positives) else None


def adversarial_losses(model: nn.Module, out: dict[str, torch.Tensor], x: torch.Tensor,
                       rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the picture decoder's L1 reconstruction loss, its adversarial loss, the discriminator's loss) from a
    forward pass given `fake_rows=rows`.

    The picture decoder learns from detached codes and nothing of it feeds the rest of the model, so the
    latent space the audit reads and the classifier are the plain model's. Measured: when the adversarial
    term reached the encoder, discovery of the planted dark faces fell from AUC 0.835 to 0.724; when it
    reached the one decoder the VAE also trains, from 0.918 to 0.879 over 5 seeds (the decoder's change
    moved the encoder through the reconstruction loss). The adversarial loss asks the discriminator to call
    the fakes real; the discriminator's loss, on the same logits, must reach the discriminator only:
    `adversarial_step` takes its gradient with respect to the discriminator alone. One discriminator pass
    judges fakes and real positives together (it has no batch norm).
    """
    fake = out["fake"]
    real = x[rows[:len(fake) // 2]]  # as many real positives as fakes of each kind
    picture_l1 = (out["picture_recon"] - x[rows]).abs().mean()
    judged = model.discriminator(torch.cat([fake, real]))
    on_fake, on_real = judged[:len(fake)], judged[len(fake):]
    g_loss = F.binary_cross_entropy_with_logits(on_fake, torch.ones_like(on_fake))
    d_loss = (F.binary_cross_entropy_with_logits(on_real, torch.ones_like(on_real))
              + F.binary_cross_entropy_with_logits(on_fake, torch.zeros_like(on_fake))) / 2
    return picture_l1, g_loss, d_loss


def check_image_size(model_image_size: int, data_image_size: int) -> None:
    if model_image_size != data_image_size:
        raise ModelError(f"the model expects {model_image_size}px images but the data was loaded at "
                         f"{data_image_size}px; load it with --image-size {model_image_size}")


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` (--device), else DEBIAS_DEVICE, else CUDA when present, else the CPU."""
    requested = requested or os.environ.get("DEBIAS_DEVICE") or None
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise DebiasError(f"unknown device {requested!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DebiasError(f"device {requested!r} asked for, but this machine has no CUDA GPU torch can use; "
                          f"use cpu")
    return device
