"""CycleGAN (Zhu et al. 2017) at the audit's image sizes: unpaired translation between the images holding one
value of an attribute (A) and those holding another (B): light <-> dark skin, red <-> green strokes.

Two generators (A->B, B->A) and two patch discriminators. The generators minimise least-squares adversarial
losses, cycle consistency (A->B->A gives A back) and identity (a B image given to A->B stays itself), weighted
1, 10 and 5 as in the paper; each discriminator learns from a pool of the 50 latest translations, not just the
newest batch (the paper's stabiliser). Adam at 2e-4, betas (0.5, 0.999), the rate decaying linearly to 0 over
the second half of the epochs. Generators: a 7x7 convolution, two stride-2 downsamplings, residual blocks, two
upsamplings, instance norm; 16 base filters and 3 residual blocks by default, sized for a CPU (the paper uses
64 and 9 at 256px).

TRANSLATOR_DIR/
  config.json     kind "translator", version, attribute, values [A, B], image size, architecture, training, history
  translator.pt   both generators' weights
"""
from __future__ import annotations

import itertools
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .checkpoint import atomic_write_bytes, write_json
from .errors import DebiasError, ModelError

KIND = "translator"
WEIGHTS_FILE = "translator.pt"
POOL_SIZE = 50
MAX_EPOCHS = 1000


@dataclass
class TranslatorConfig:
    attribute: str
    values: tuple[str, str]          # (A, B)
    image_size: int = 32
    n_filters: int = 16
    n_blocks: int = 3
    epochs: int = 8
    batch_size: int = 16
    lr: float = 2e-4
    cycle_weight: float = 10.0
    identity_weight: float = 5.0
    seed: int = 0
    history: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.values = tuple(str(v) for v in self.values)
        if len(self.values) != 2 or self.values[0] == self.values[1]:
            raise DebiasError(f"a translator needs two different attribute values, got {list(self.values)}")
        if self.image_size < 16 or self.image_size % 4:
            raise DebiasError(f"a translator's image size must be a multiple of 4 from 16, got {self.image_size}")
        for name in ("n_filters", "n_blocks", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DebiasError(f"{name} must be a positive whole number, got {value!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or not 1 <= self.epochs <= MAX_EPOCHS:
            raise DebiasError(f"epochs must be a whole number from 1 to {MAX_EPOCHS}, got {self.epochs!r}")
        for name in ("lr", "cycle_weight", "identity_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "lr" and value == 0):
                raise DebiasError(f"{name} must be a finite number {'above' if name == 'lr' else 'from'} 0, "
                                  f"got {value}")


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c, affine=True),
                                  nn.ReLU(inplace=True), nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3),
                                  nn.InstanceNorm2d(c, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _norm_relu(c: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(c, affine=True), nn.ReLU(inplace=True)]


class Generator(nn.Module):
    """(B,3,S,S) in [-1,1] -> (B,3,S,S) in [-1,1]."""

    def __init__(self, n_filters: int, n_blocks: int):
        super().__init__()
        n = n_filters
        self.net = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(3, n, 7), *_norm_relu(n),
            nn.Conv2d(n, 2 * n, 3, 2, 1), *_norm_relu(2 * n),
            nn.Conv2d(2 * n, 4 * n, 3, 2, 1), *_norm_relu(4 * n),
            *[_Residual(4 * n) for _ in range(n_blocks)],
            nn.ConvTranspose2d(4 * n, 2 * n, 3, 2, 1, output_padding=1), *_norm_relu(2 * n),
            nn.ConvTranspose2d(2 * n, n, 3, 2, 1, output_padding=1), *_norm_relu(n),
            nn.ReflectionPad2d(3), nn.Conv2d(n, 3, 7), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Discriminator(nn.Module):
    """(B,3,S,S) -> one least-squares score per overlapping patch (PatchGAN, fewer layers for small images)."""

    def __init__(self, n_filters: int):
        super().__init__()
        n = 2 * n_filters
        self.net = nn.Sequential(
            nn.Conv2d(3, n, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(n, 2 * n, 4, 2, 1), nn.InstanceNorm2d(2 * n, affine=True), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * n, 4 * n, 4, 1, 1), nn.InstanceNorm2d(4 * n, affine=True), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * n, 1, 4, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _ImagePool:
    """The discriminator sees a translation from this pool half the time instead of the newest one."""

    def __init__(self, rng: np.random.Generator, size: int = POOL_SIZE):
        self.rng, self.size, self.images = rng, size, []

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        out = []
        for image in batch.detach():
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.rng.random() < 0.5:
                j = int(self.rng.integers(self.size))
                out.append(self.images[j])
                self.images[j] = image
            else:
                out.append(image)
        return torch.stack(out)


class Translator:
    """Both generators of a trained CycleGAN; translate() works on uint8 images (N,H,W,3)."""

    def __init__(self, cfg: TranslatorConfig, a_to_b: Generator, b_to_a: Generator, device: torch.device):
        self.cfg, self.device = cfg, device
        self.generators = {"a_to_b": a_to_b.to(device).eval(), "b_to_a": b_to_a.to(device).eval()}

    @torch.inference_mode()
    def translate(self, images: np.ndarray, direction: str, batch_size: int = 256) -> np.ndarray:
        """direction: "a_to_b" or "b_to_a"."""
        generator = self.generators[direction]
        out = np.empty((len(images), *images.shape[1:]), dtype=np.uint8)
        for start in range(0, len(images), batch_size):
            x = _to_signed(images[start:start + batch_size], self.device)
            out[start:start + len(x)] = _to_uint8(generator(x))
        return out

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights = {name: g.state_dict() for name, g in self.generators.items()}
        atomic_write_bytes(folder / WEIGHTS_FILE, lambda f: torch.save(weights, f))
        # config.json last: a folder with it is a whole translator.
        write_json(folder / "config.json", {"kind": KIND, "version": __version__, **asdict(self.cfg)})
        return folder


def _to_signed(images: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.array(images)).to(device)
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def train_translator(images_a: np.ndarray, images_b: np.ndarray, cfg: TranslatorConfig, device: torch.device,
                     callback: Callable[[int, int, int, dict], None] | None = None) -> Translator:
    """Train both directions on unpaired uint8 images of value A and of value B; returns the translator with
    the per-epoch history in cfg.history. callback(epoch, step, steps, losses) after every step."""
    if min(len(images_a), len(images_b)) < 2:
        raise DebiasError(f"a translator needs at least 2 images of each value, got {len(images_a)} of "
                          f"{cfg.values[0]!r} and {len(images_b)} of {cfg.values[1]!r}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    a_to_b, b_to_a = (Generator(cfg.n_filters, cfg.n_blocks).to(device) for _ in range(2))
    judge_a, judge_b = (Discriminator(cfg.n_filters).to(device) for _ in range(2))
    opt_g = torch.optim.Adam(itertools.chain(a_to_b.parameters(), b_to_a.parameters()), cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(itertools.chain(judge_a.parameters(), judge_b.parameters()), cfg.lr,
                             betas=(0.5, 0.999))
    batch = min(cfg.batch_size, len(images_a), len(images_b))
    steps = math.ceil(max(len(images_a), len(images_b)) / batch)
    total = steps * cfg.epochs
    decay_from = total // 2

    def rate(step: int) -> float:  # constant, then linearly to 0 over the second half
        return 1.0 if step < decay_from else max(0.0, (total - step) / (total - decay_from))

    schedules = [torch.optim.lr_scheduler.LambdaLR(o, rate) for o in (opt_g, opt_d)]
    pool_a, pool_b = _ImagePool(rng), _ImagePool(rng)
    cfg.history = []
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        order_a, order_b = (_epoch_order(len(images), steps * batch, rng) for images in (images_a, images_b))
        sums = dict.fromkeys(("adversarial", "cycle", "identity", "discriminator"), 0.0)
        for step in range(steps):
            a = _to_signed(images_a[np.sort(order_a[step * batch:(step + 1) * batch])], device)
            b = _to_signed(images_b[np.sort(order_b[step * batch:(step + 1) * batch])], device)
            losses = _step(a, b, a_to_b, b_to_a, judge_a, judge_b, opt_g, opt_d, pool_a, pool_b, cfg)
            for s in schedules:
                s.step()
            for k in sums:
                sums[k] += losses[k]
            if callback is not None:
                callback(epoch, step + 1, steps, losses)
        seconds = time.perf_counter() - started
        cfg.history.append({"epoch": epoch, **{k: round(v / steps, 5) for k, v in sums.items()},
                            "seconds": round(seconds, 3), "pairs_per_second": round(steps * batch / seconds, 1)})
    return Translator(cfg, a_to_b, b_to_a, device)


def _epoch_order(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` indices into n images: each image once per pass, the smaller value's images repeated."""
    passes = -(-length // n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:length]


def _step(a, b, a_to_b, b_to_a, judge_a, judge_b, opt_g, opt_d, pool_a, pool_b, cfg: TranslatorConfig) -> dict:
    for judge in (judge_a, judge_b):
        judge.requires_grad_(False)
    fake_b, fake_a = a_to_b(a), b_to_a(b)
    adversarial = _least_squares(judge_b(fake_b), 1.0) + _least_squares(judge_a(fake_a), 1.0)
    cycle = F.l1_loss(b_to_a(fake_b), a) + F.l1_loss(a_to_b(fake_a), b)
    identity = (F.l1_loss(a_to_b(b), b) + F.l1_loss(b_to_a(a), a)) if cfg.identity_weight else torch.zeros(())
    opt_g.zero_grad(set_to_none=True)
    (adversarial + cfg.cycle_weight * cycle + cfg.identity_weight * identity).backward()
    opt_g.step()
    for judge in (judge_a, judge_b):
        judge.requires_grad_(True)
    discriminator = 0.5 * (_least_squares(judge_b(b), 1.0) + _least_squares(judge_b(pool_b.query(fake_b)), 0.0)
                           + _least_squares(judge_a(a), 1.0) + _least_squares(judge_a(pool_a.query(fake_a)), 0.0))
    opt_d.zero_grad(set_to_none=True)
    discriminator.backward()
    opt_d.step()
    return {"adversarial": adversarial.item(), "cycle": cycle.item(), "identity": float(identity.detach()),
            "discriminator": discriminator.item()}


def _least_squares(scores: torch.Tensor, target: float) -> torch.Tensor:
    return ((scores - target) ** 2).mean()


def is_translator(folder: str | Path) -> bool:
    path = Path(folder) / "config.json"
    try:
        return path.is_file() and json.loads(path.read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def load_translator(folder: str | Path, device: torch.device | None = None) -> Translator:
    folder = Path(folder)
    config, weights = folder / "config.json", folder / WEIGHTS_FILE
    if not folder.is_dir():
        raise ModelError(f"no such translator directory: {folder}")
    if not is_translator(folder) or not weights.is_file():
        raise ModelError(f"{folder} is not a translator (no config.json of kind {KIND!r} with {WEIGHTS_FILE}); "
                         f"pass the translator folder a `debias counterfactual` run wrote (OUT/translator)")
    stored = json.loads(config.read_text())
    stored.pop("kind")
    version = stored.pop("version", None)
    try:
        cfg = TranslatorConfig(**stored)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        generators = {}
        for name in ("a_to_b", "b_to_a"):
            generators[name] = Generator(cfg.n_filters, cfg.n_blocks)
            generators[name].load_state_dict(state[name])
    except Exception as exc:  # a foreign config, or torch's many error types for a foreign or truncated file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{folder} holds an unreadable translator ({first}); train a new one") from exc
    if version != __version__:
        warnings.warn(f"{folder} was written by debias {version}, this is {__version__}; results may differ",
                      stacklevel=2)
    return Translator(cfg, generators["a_to_b"], generators["b_to_a"], device or torch.device("cpu"))
