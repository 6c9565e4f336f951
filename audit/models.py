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
    # adversarial: a patch discriminator judges the decoder's reconstructions and prior samples of positives
    # against real positives (VAE-GAN, Larsen et al. 2016); its term, times adversarial_weight, is added to the
    # decoder's loss only. The classifier's and the VAE's losses are unchanged.
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
            self.discriminator = PatchDiscriminator(cfg)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.encoder(x)                  # (B, 1 + 2*latent)
        d = self.cfg.latent_dim
        return out[:, 0], out[:, 1:1 + d], out[:, 1 + d:]

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None,
                fake_rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """eps: the sampling noise, drawn here when None (a rank of a multi-process run passes its rows).

        fake_rows (adversarial decoder, `adversarial_rows`): these rows' codes, detached, and as many prior
        draws are decoded too, as out["fake"], in the same decoder call as the reconstructions: one larger
        call costs less than two on a CPU. The decoder has no batch norm, so sharing the call changes nothing.
        """
        logit, mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, eps) if self.training else mu
        out = {"logit": logit, "mu": mu, "logvar": logvar, "z": z}
        if fake_rows is None:
            return {**out, "recon": self.decoder(z)}
        prior = torch.randn(len(fake_rows), self.cfg.latent_dim, device=z.device, dtype=z.dtype)
        decoded = self.decoder(torch.cat([z, z[fake_rows].detach(), prior]))
        return {**out, "recon": decoded[:len(x)], "fake": decoded[len(x):]}


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


# Positives (and as many prior decodings) the discriminator judges per step: its cost, not the batch's,
# bounds what the adversarial decoder adds to an epoch (bench/decoder_bench.py).
ADVERSARIAL_BATCH = 4


def adversarial_rows(model: nn.Module, y: torch.Tensor) -> torch.Tensor | None:
    """The batch's rows whose reconstructions the discriminator judges (its first positives), or None when
    the model has no discriminator or the batch no positive."""
    if not hasattr(model, "discriminator"):
        return None
    positives = torch.nonzero(y == 1).squeeze(1)[:ADVERSARIAL_BATCH]
    return positives if len(positives) else None


def adversarial_losses(model: nn.Module, out: dict[str, torch.Tensor], x: torch.Tensor,
                       rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the decoder's adversarial loss, the discriminator's loss) from a forward pass given `fake_rows=rows`.

    Fakes (out["fake"]) are those rows' reconstructions, decoded again from detached latent codes, and as
    many decodings of prior samples: the adversarial term reaches the decoder only, never the encoder, so the
    latent space the audit reads is shaped by the classifier's and the VAE's losses alone (measured: letting
    it through dropped discovery of the planted dark faces from AUC 0.835 to 0.724). The decoder's loss asks
    the discriminator to call the fakes real; the discriminator's loss, on the same logits, must reach the
    discriminator only: `adversarial_step` takes its gradient with respect to the discriminator alone.
    One discriminator pass judges fakes and real positives together (it has no batch norm).
    """
    fake = out["fake"]
    judged = model.discriminator(torch.cat([fake, x[rows]]))
    on_fake, on_real = judged[:len(fake)], judged[len(fake):]
    g_loss = F.binary_cross_entropy_with_logits(on_fake, torch.ones_like(on_fake))
    d_loss = (F.binary_cross_entropy_with_logits(on_real, torch.ones_like(on_real))
              + F.binary_cross_entropy_with_logits(on_fake, torch.zeros_like(on_fake))) / 2
    return g_loss, d_loss


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
