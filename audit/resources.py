"""How much memory a job will need, from its options and data, before it runs.

Pure arithmetic over the architecture in models.py (no tensors are made), so a
service can refuse a job that would exhaust its machine. The figures are an
upper-ish bound of the process's peak resident memory on the CPU: checked by
bench/job_memory.py, which runs the real thing beside the estimate.

peak = overhead (torch, numpy, sklearn, matplotlib loaded)
     + 6 x parameters x 4 B   (weights, gradients, Adam's two moments; a resumed
                               run briefly holds the checkpoint's copy too)
     + the dataset: uint8 images mapped from the cache, and a resident copy when
       training (n x side^2 x 3 B each), per-sample latents and scores
     + max(one training step, one inference batch):
         training: batch x 4 B x (activations kept for backward x 1.5 for the
                   gradients flowing back through them, + the batch's float copy)
         inference: 512-image batches x 4 B x (input + 4 x the largest layer output)
"""
from __future__ import annotations

from .models import ModelConfig

OVERHEAD_BYTES = 1 << 30         # measured: 0.85-0.9 GB resident for the smallest job (bench/job_memory.py)
INFERENCE_BATCH = 512            # inference.predict's batch size
RESIDENT_LIMIT = 2 << 30         # training.ImageSource keeps smaller datasets resident
GRADIENT_FACTOR = 1.5            # backward: gradients of the layers in flight beside the kept activations
PARAMETER_COPIES = 6             # weights, gradients, 2 Adam moments, + a checkpoint's copy on resume
FLOAT = 4


def _convs(cfg: ModelConfig) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int, int, int]]]:
    """(c_in, c_out, kernel, output side) of the encoder's and the decoder's conv layers."""
    n, s = cfg.n_filters, cfg.image_size
    encoder = [(3, n, 5, s // 2), (n, 2 * n, 5, s // 4), (2 * n, 4 * n, 3, s // 8), (4 * n, 6 * n, 3, s // 16)]
    decoder = [(6 * n, 4 * n, 3, s // 8), (4 * n, 2 * n, 3, s // 4), (2 * n, n, 5, s // 2), (n, 3, 5, s)]
    return encoder, decoder


def _flat(cfg: ModelConfig) -> int:
    return 6 * cfg.n_filters * cfg.feature_side ** 2     # the encoder's flattened features


def parameter_count(cfg: ModelConfig) -> int:
    encoder, decoder = _convs(cfg)
    out = 1 + 2 * cfg.latent_dim if cfg.method == "dbvae" else 1
    count = sum(i * o * k * k + o + 2 * o for i, o, k, _ in encoder)        # conv + batch norm
    count += _flat(cfg) * cfg.dense_units + cfg.dense_units + cfg.dense_units * out + out
    if cfg.method == "dbvae":
        count += cfg.latent_dim * _flat(cfg) + _flat(cfg)
        count += sum(i * o * k * k + o for i, o, k, _ in decoder)
    return count


def training_activations(cfg: ModelConfig) -> int:
    """Floats one sample keeps for backward during a training step."""
    encoder, decoder = _convs(cfg)
    pixels = 3 * cfg.image_size ** 2
    # Autograd keeps each encoder block's ReLU output (batch norm's input) and batch norm's output (the
    # next conv's input); a conv's own output is freed once ReLU has read it.
    total = pixels + sum(2 * o * side ** 2 for _, o, _, side in encoder) + 2 * cfg.dense_units
    if cfg.method == "dbvae":
        # Decoder: each ReLU's output (the next layer's input); then the sigmoid's output and the
        # loss's |recon - x| input.
        total += 4 * cfg.latent_dim + 2 * _flat(cfg) + sum(o * side ** 2 for _, o, _, side in decoder)
        total += 2 * pixels
    return total


def inference_activations(cfg: ModelConfig) -> int:
    """Floats one sample holds at the peak of a no-grad forward pass: its input, plus a layer's input,
    output and the convolution's working buffers (or, for a DB-VAE's reconstruction error, the
    reconstruction, recon - x and its absolute value); 4 x the largest fits the measurements."""
    encoder, decoder = _convs(cfg)
    pixels = 3 * cfg.image_size ** 2
    largest = max(o * side ** 2 for _, o, _, side in encoder + (decoder if cfg.method == "dbvae" else []))
    return pixels + 4 * max(largest, pixels if cfg.method == "dbvae" else 0)


def _data_bytes(cfg: ModelConfig, n_samples: int, resident_copy: bool) -> int:
    images = n_samples * 3 * cfg.image_size ** 2
    copy = images if resident_copy and images <= RESIDENT_LIMIT else 0
    latents = n_samples * cfg.latent_dim * FLOAT * 8 if cfg.method == "dbvae" else 0  # mu, logvar, densities
    return images + copy + latents


def estimate_inference_memory(cfg: ModelConfig, n_samples: int, batch_size: int = INFERENCE_BATCH) -> int:
    """Peak bytes of a forward pass over the whole dataset (evaluate, audit), in `batch_size` batches."""
    batch = min(batch_size, max(n_samples, 1))
    return (OVERHEAD_BYTES + parameter_count(cfg) * FLOAT + _data_bytes(cfg, n_samples, resident_copy=False)
            + batch * FLOAT * inference_activations(cfg))


def _training_parts(cfg: ModelConfig, n_samples: int) -> tuple[int, int, int]:
    """(fixed bytes, bytes per image of a batch, bytes of the per-epoch inference pass)."""
    fixed = OVERHEAD_BYTES + PARAMETER_COPIES * parameter_count(cfg) * FLOAT
    fixed += _data_bytes(cfg, n_samples, resident_copy=True)
    # Per image: its activations and their gradients, plus its float copy (and its uint8 gather).
    per_image = int(FLOAT * (GRADIENT_FACTOR * training_activations(cfg) + 3 * cfg.image_size ** 2))
    # The DB-VAE scores the whole dataset each epoch to reweight it: an inference pass.
    inference = (min(INFERENCE_BATCH, max(n_samples, 1)) * FLOAT * inference_activations(cfg)
                 if cfg.method == "dbvae" else 0)
    return fixed, per_image, inference


def estimate_training_memory(cfg: ModelConfig, batch_size: int, n_samples: int) -> int:
    """Peak bytes of training `cfg` with `batch_size` on `n_samples` images.

    A batch always holds `batch_size` images: small classes are drawn with
    replacement, so a batch larger than the dataset still costs its full size.
    """
    fixed, per_image, inference = _training_parts(cfg, n_samples)
    return fixed + max(batch_size * per_image, inference)


def largest_batch_within(cfg: ModelConfig, n_samples: int, limit: int) -> int:
    """The largest training batch size whose estimate stays within `limit` (0: none does)."""
    fixed, per_image, inference = _training_parts(cfg, n_samples)
    if fixed + inference > limit:
        return 0
    return (limit - fixed) // per_image
