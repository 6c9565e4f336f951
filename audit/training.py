"""Training loop for the standard classifier and the DB-VAE with debiased sampling."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .checkpoint import latest_checkpoint, load_training_state, model_from_state, save_epoch
from .coherence import coherent_error_set, errors_at
from .dataset import ImageDataset
from .density import ESTIMATORS
from .errors import DebiasError, ModelError
from .holdout import MAX_VAL_FRACTION, VAL_FRACTION, validation_metrics, validation_split
from .imagecache import RowReader
from .inference import predict, to_tensor
from .mixing import GroupMixer
from .models import ModelConfig, build_model, check_image_size, pick_device
from .sampling import (
    CLASS_NAMES,
    REWEIGHT,
    check_weighting,
    class_balanced_sampling_probability,
    effective_sample_fraction,
    error_upweighted,
    per_class_log_density,
)
from .steps import ProgressCallback, merge_records, run_epoch

MAX_SEED = 2**32 - 1  # numpy's seed range
ERROR_STEPS = 150      # the default: see TrainConfig.error_steps
ERROR_SCHEDULES = ("constant", "geometric", "gated")
# cosine: epoch e of E trains at lr * (1 + cos(pi * (e - 1) / E)) / 2, from lr down to ~lr/15 in the last of
# 6 epochs; constant: lr throughout (the 6.S191 lab).
LR_SCHEDULES = ("cosine", "constant")
# Past this the error set already takes all but ~1e-9 of its class's draws; the cap keeps long runs finite.
MAX_SCHEDULED_UPWEIGHT = 1e12


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 32
    lr: float = 5e-4
    seed: int = 0
    density: str = "histogram"      # see audit.density.ESTIMATORS
    density_params: dict = field(default_factory=dict)
    reweight: str = "both"          # both classes (per-class densities) | positive (the lab)
    strength: float = 1.0           # weights proportional to density**-strength
    min_effective_fraction: float = 0.25  # temper the strength so >= this share of a class stays effective
    # JTT's error set: after `error_epoch` epochs the samples the model gets wrong are drawn
    # (1 + error_upweight) times as often as the others of their class from then on; the epochs before
    # it sample uniformly (an ERM warm-up, as in JTT). 0 turns it off.
    error_upweight: float = 0.0
    error_epoch: int = 1
    # With N > 0 the error set is taken after N steps of epoch `error_epoch` when the epoch is longer: on
    # 20,000 digits a whole epoch (625 steps) let the model memorise the rare samples first (the error set's
    # AUC for them 0.72-0.87); after 150 steps it is 0.93-1.00 (README "Debiasing on real images").
    error_steps: int = ERROR_STEPS
    # constant: the error set is drawn (1 + error_upweight) times as often in every epoch that uses it.
    # geometric: (1 + error_upweight) ** k times as often in the k-th such epoch (51x, 2601x, ... at 50): the
    # first epoch after the snapshot still sees the whole class, the last ones train almost only on the error
    # set. On Colored MNIST it lifts the worst group past 0.8; on the planted faces, whose error set is not the
    # minority, it lost to ERM and blurred discovery: not the default (README "Debiasing on real images").
    error_schedule: str = "constant"
    # Share of each batch mixed with a same-class partner from the other side of the error set
    # (LISA's selective augmentation over inferred groups; audit/mixing.py). Needs error_upweight > 0.
    mix_groups: float = 0.0
    # Share of each class held out of training (stratified, drawn from the seed) and measured after every
    # epoch: the history's val_* figures. The error set and the audit still cover every sample.
    val_fraction: float = VAL_FRACTION
    device: str | None = None
    # The learning rate decays over the epochs (LR_SCHEDULES): on Colored MNIST at 1% the geometric schedule's
    # last epochs, almost only on the error set, left one seed in three on a plateau at a constant rate
    # (worst group 0.618); decayed, 0.846 (README "Debiasing on real images").
    lr_schedule: str = "cosine"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise DebiasError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise DebiasError("batch_size must be >= 2 to hold both classes")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise DebiasError(f"learning rate must be a number in (0, 1], got {self.lr}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise DebiasError(f"seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")
        if self.density not in ESTIMATORS:
            raise DebiasError(f"unknown density estimator {self.density!r}; choose one of {', '.join(ESTIMATORS)}")
        if self.reweight not in REWEIGHT:
            raise DebiasError(f"unknown reweight {self.reweight!r}; choose one of {', '.join(REWEIGHT)}")
        check_weighting(self.strength, self.min_effective_fraction)
        if not (math.isfinite(self.error_upweight) and 0 <= self.error_upweight <= 1000):
            raise DebiasError(f"error_upweight must be a number from 0 to 1000, got {self.error_upweight}")
        if not (math.isfinite(self.mix_groups) and 0 <= self.mix_groups <= 1):
            raise DebiasError(f"mix_groups must be a share from 0 to 1, got {self.mix_groups}")
        if self.mix_groups and not self.error_upweight:
            raise DebiasError("mix_groups mixes across the error set: set error_upweight > 0 too")
        if not (math.isfinite(self.val_fraction) and 0 <= self.val_fraction <= MAX_VAL_FRACTION):
            raise DebiasError(f"val_fraction must be a share from 0 to {MAX_VAL_FRACTION}, got {self.val_fraction}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise DebiasError(f"unknown learning-rate schedule {self.lr_schedule!r}; choose one of "
                              f"{', '.join(LR_SCHEDULES)}")
        if self.error_schedule not in ERROR_SCHEDULES:
            raise DebiasError(f"unknown error schedule {self.error_schedule!r}; choose one of "
                              f"{', '.join(ERROR_SCHEDULES)}")
        if isinstance(self.error_steps, bool) or not isinstance(self.error_steps, int) or self.error_steps < 0:
            raise DebiasError(f"error_steps must be a whole number >= 0 (0: at the end of error_epoch), "
                              f"got {self.error_steps!r}")
        if self.error_upweight and not 1 <= self.error_epoch < self.epochs:
            raise DebiasError(f"error_epoch must be from 1 to epochs - 1 = {self.epochs - 1}, got {self.error_epoch}: "
                              f"the error set is taken after it and used in the epochs that follow")


# The error-aware DB-VAE (the default of --method dbvae): JTT's error set, upweighted, times the density.
# Chosen on bench/debias_bench.py (Colored MNIST, 20,000 images, 3 seeds; README "Debiasing on real images").
# Mixing across the error set (--mix-groups) lost there: 0.49 vs 0.59 worst-group (DB-VAE, seed 0), 0.68 / 0.63
# vs 0.78 / 0.78 (JTT, seeds 0-1, when its upweight still compounded: the geometric schedule). The gated
# schedule is the default: geometric where the error set is coherent (Colored MNIST), constant where it is
# scattered (the planted faces, where geometric lost). The lab's algorithm is --density histogram
# --reweight positive --min-ess 0 --error-upweight 0 --lr-schedule constant.
ERROR_AWARE_DEFAULTS = {"error_upweight": 50.0, "mix_groups": 0.0, "error_schedule": "gated"}


def default_error_options(method: str, epochs: int, error_upweight: float | None = None,
                          mix_groups: float | None = None, error_epoch: int = 1,
                          error_schedule: str | None = None) -> dict:
    """error_upweight, mix_groups and error_schedule as given, the error-aware defaults where left out.

    A run with no epoch after `error_epoch` has no use for an error set: its defaults are off. The
    schedule's default is gated for the DB-VAE; the standard classifier (JTT) has no latent space to gate
    on and keeps JTT's constant multiplier.
    """
    on = method == "dbvae" and epochs > error_epoch
    upweight = error_upweight if error_upweight is not None else (ERROR_AWARE_DEFAULTS["error_upweight"] if on else 0.0)
    mix = mix_groups if mix_groups is not None else (ERROR_AWARE_DEFAULTS["mix_groups"] if on and upweight else 0.0)
    if error_schedule is not None:
        schedule = error_schedule
    else:
        schedule = ERROR_AWARE_DEFAULTS["error_schedule"] if method == "dbvae" else "constant"
    return {"error_upweight": float(upweight), "mix_groups": float(mix), "error_schedule": schedule}


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict]
    sampling_probability: np.ndarray | None   # of the last epoch, for dbvae


class ImageSource:
    """Batches of images as float tensors; small datasets live on the device once."""

    def __init__(self, images: np.ndarray, device: torch.device, max_resident_bytes: int = 2 << 30):
        self.images, self.device = images, device
        self.resident = None
        if images.nbytes <= max_resident_bytes:
            # A copy: torch wants writable memory and the cache is a read-only memmap.
            self.resident = torch.from_numpy(np.array(images)).to(device)
        self.rows = RowReader(images) if self.resident is None else None

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        if self.resident is not None:
            return self.resident[torch.from_numpy(idx).to(self.device)].permute(0, 3, 1, 2).float().div_(255.0)
        order = np.argsort(idx)  # sorted reads are sequential on a memory-mapped cache
        x = to_tensor(self.rows.take(idx[order]), self.device)
        return x[torch.from_numpy(np.argsort(order)).to(self.device)]


def epoch_batches(labels: np.ndarray, prob: np.ndarray | None, batch_size: int, steps: int,
                  rng: np.random.Generator, pool: np.ndarray | None = None) -> np.ndarray:
    """(steps, batch_size) indices, half positives and half negatives per batch, from `pool` (a mask) if given.

    With `prob` (debiased) each class is drawn with replacement by its share of
    prob; without it each class is walked in shuffled order, repeating as needed.
    """
    halves = {1: batch_size // 2, 0: batch_size - batch_size // 2}
    columns = []
    for cls, per_batch in halves.items():
        members = np.flatnonzero((labels == cls) if pool is None else (labels == cls) & pool)
        need = steps * per_batch
        if prob is not None:
            p = prob[members] / prob[members].sum()
            drawn = rng.choice(members, size=need, replace=True, p=p)
        else:
            reps = math.ceil(need / len(members))
            drawn = np.concatenate([rng.permutation(members) for _ in range(reps)])[:need]
        columns.append(drawn.reshape(steps, per_batch))
    batches = np.concatenate(columns, axis=1)
    return rng.permuted(batches, axis=1)


def debiasing_probability(model, source_images: np.ndarray, labels: np.ndarray, cfg: TrainConfig,
                          device: torch.device, pool: np.ndarray | None = None,
                          ranks: distributed.Ranks | None = None
                          ) -> tuple[np.ndarray, dict[int, float], dict[str, np.ndarray]]:
    """(sampling probability, strength used per class, {"logit", "mu"} of this pass) from the current model.

    The densities are fitted on `pool` (the training samples; all if None) and the probability is 0 outside
    it; the logits cover every sample (the error set is taken on all of them).
    """
    out = latent_pass(model, source_images, device, ranks)
    pool = np.ones(len(labels), dtype=bool) if pool is None else pool
    log_density = per_class_log_density(out["mu"][pool], labels[pool], cfg.density, cfg.density_params)
    prob = np.zeros(len(labels))
    prob[pool], used = class_balanced_sampling_probability(log_density, labels[pool], cfg.reweight, cfg.strength,
                                                           cfg.min_effective_fraction)
    return prob, used, out


def latent_pass(model, images: np.ndarray, device: torch.device,
                ranks: distributed.Ranks | None = None) -> dict[str, np.ndarray]:
    """Logits (and latent means) of every image; with ranks, each computes its chunk and all gather."""
    if ranks is None:
        return predict(model, images, device, want_recon_error=False)
    part = predict(model, images, device, want_recon_error=False, indices=ranks.chunk(len(images)))
    return ranks.gather(part, len(images))


def uniform_probability(labels: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Class-balanced and uniform inside each class over `pool`; 0 outside it."""
    prob = np.zeros(len(labels))
    prob[pool] = class_balanced_sampling_probability(np.zeros(int(pool.sum())), labels[pool], "both", 0.0)[0]
    return prob


ERROR_SET_FILE = "error_set.npy"
SCHEDULE_FILE = "error_set.json"   # the schedule a gated run chose, and why


def _error_set(model, images: np.ndarray, labels: np.ndarray, logits: np.ndarray | None,
               device: torch.device, ranks: distributed.Ranks | None = None) -> np.ndarray:
    """1.0 where the model (as it is now) misclassifies the sample, else 0.0."""
    if logits is None:
        logits = latent_pass(model, images, device, ranks)["logit"]
    return errors_at(logits, labels)


def _take_error_set(model, dataset: ImageDataset, labels: np.ndarray, pool: np.ndarray, latent: dict | None,
                    cfg: TrainConfig, device: torch.device, out_dir: Path,
                    ranks: distributed.Ranks | None = None) -> tuple[np.ndarray, dict]:
    """The error set and the schedule it is upweighted with (gated: decided here, from its coherence)."""
    if cfg.error_schedule == "gated":
        errors, decision = coherent_error_set(latent["mu"], latent["logit"], labels, pool)
    else:
        errors = _error_set(model, dataset.images, labels, None if latent is None else latent["logit"], device,
                            ranks)
        decision = {"schedule": cfg.error_schedule}
    if ranks is None or ranks.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)  # inside the first epoch no checkpoint has made it yet
        np.save(out_dir / ERROR_SET_FILE, errors)
        (out_dir / SCHEDULE_FILE).write_text(json.dumps(decision, indent=2))
    return errors, decision


def train(dataset: ImageDataset, model_cfg: ModelConfig, cfg: TrainConfig, out_dir: str | Path,
          resume: bool = False, progress: bool = True,
          callback: ProgressCallback | None = None) -> TrainResult:
    """Train `model_cfg.method` on `dataset`, checkpointing every epoch into `out_dir`.

    Started by torchrun, this process is one rank of a multi-process run (audit/distributed.py): it trains on
    its share of every batch, and only rank 0 writes to `out_dir` or reports progress.
    """
    out_dir = Path(out_dir)
    check_image_size(model_cfg.image_size, dataset.image_size)
    if cfg.error_schedule == "gated" and cfg.error_upweight and model_cfg.method != "dbvae":
        raise DebiasError("the gated error schedule decides from the DB-VAE's latent space: use --method dbvae, "
                          "or --error-schedule constant or geometric")
    ranks = distributed.current()
    if ranks is not None:
        check_distributable(model_cfg, cfg, ranks.world)
    device = pick_device(cfg.device) if ranks is None else distributed.device_for(ranks, cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg)
    if ranks is not None:
        distributed.synced_batch_norms(model)
    # Batches arrive channels-last (NHWC images permuted): weights in the same layout spare the convolutions a
    # conversion each way, on GPUs and on the CPU (bench/train_throughput.py).
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg.lr)
    history: list[dict] = []
    start_epoch = 0
    if resume:
        start_epoch, history = _restore(out_dir, model, optimizer, model_cfg, device)
    net = None
    if ranks is not None:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        progress = progress and ranks.is_main
        callback = callback if ranks.is_main else None
    labels = np.asarray(dataset.labels)
    # What every epoch's steps need besides their batches (steps.run_epoch).
    stepping = dict(net=net, ranks=ranks, labels=labels)
    held_out = validation_split(labels, cfg.val_fraction, cfg.seed)
    pool = ~held_out
    source = ImageSource(dataset.images, device)
    y_all = torch.from_numpy(labels).to(device)
    steps = math.ceil(int(pool.sum()) / cfg.batch_size)
    prob, strength_used = None, {}
    errors, decision = (_load_error_set(out_dir, len(labels), cfg.error_schedule) if resume and cfg.error_upweight
                        else (None, None))
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        # Seeding per epoch makes a resumed run identical to an uninterrupted one.
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        if hasattr(model, "picture_decoder"):
            model.seed_prior_noise(cfg.seed * 100_003 + epoch)
        for group in optimizer.param_groups:   # from the epoch alone: a resumed run gets the same rate
            group["lr"] = epoch_lr(cfg, epoch)
        latent, density_prob = None, None
        # Warm up as plain ERM: debiased sampling would fit the rare samples before the snapshot, and
        # they would be missing from the error set (measured: its AUC for Colored MNIST's conflicting
        # samples falls from 0.96 to 0.65). No density pass is needed until then.
        warming_up = cfg.error_upweight and epoch <= cfg.error_epoch
        if model_cfg.method == "dbvae" and not warming_up:
            prob, strength_used, latent = debiasing_probability(model, dataset.images, labels, cfg, device, pool,
                                                                ranks)
            density_prob = prob
        split = cfg.error_upweight and errors is None and epoch == cfg.error_epoch and 0 < cfg.error_steps < steps
        if split:
            # The warm-up ends inside this epoch: its first error_steps steps sample uniformly, the rest
            # from the error-aware probability taken in between.
            first = run_epoch(model, optimizer, source, y_all, epoch_batches(labels, None, cfg.batch_size,
                              cfg.error_steps, rng, pool), model_cfg, epoch, cfg.epochs, progress, callback, None, rng,
                              epoch_steps=steps, **stepping)
            if model_cfg.method == "dbvae":
                prob, strength_used, latent = debiasing_probability(model, dataset.images, labels, cfg, device,
                                                                    pool, ranks)
                density_prob = prob
        if cfg.error_upweight and errors is None and (split or epoch == cfg.error_epoch + 1):
            # Taken once, early: later the model memorises its rare samples and their errors vanish.
            errors, decision = _take_error_set(model, dataset, labels, pool, latent, cfg, device, out_dir, ranks)
        if errors is not None:
            # The base is the density's (recomputed above) or uniform, never last epoch's upweighted
            # probability: upweighting that again would compound the multiplier every epoch.
            base = density_prob if density_prob is not None else uniform_probability(labels, pool)
            upweight = scheduled_upweight(cfg, epoch, steps, decision["schedule"])
            prob = error_upweighted(base, labels, errors, upweight)
        batches = epoch_batches(labels, prob, cfg.batch_size, steps - cfg.error_steps if split else steps, rng,
                                pool)
        mixer = GroupMixer(labels, errors, cfg.mix_groups) if errors is not None and cfg.mix_groups else None
        record = run_epoch(model, optimizer, source, y_all, batches, model_cfg, epoch, cfg.epochs,
                           progress, callback, mixer, rng, done_steps=cfg.error_steps if split else 0,
                           epoch_steps=steps, **stepping)
        if split:
            record = merge_records(first, record)
        if held_out.any():
            record.update(validation_metrics(model, dataset.images, labels, held_out, errors, device))
        _check_finite(record, epoch, cfg, model_cfg)
        if errors is not None:
            record["error_set"] = {CLASS_NAMES[int(c)]: int(errors[labels == c].sum()) for c in np.unique(labels)}
            record["error_upweight"] = upweight
            record["error_schedule"] = decision["schedule"]
        if prob is not None:
            drawn = prob[pool]
            record["max_sampling_weight_ratio"] = float(drawn.max() / drawn.min())
            record["strength_used"] = {CLASS_NAMES[c]: v for c, v in strength_used.items()}
            record["effective_sample_fraction"] = {
                CLASS_NAMES[c]: effective_sample_fraction(prob[(labels == c) & pool]) for c in strength_used}
        history.append(record)
        if ranks is None or ranks.is_main:
            save_epoch(out_dir, model, optimizer, epoch, {**asdict(cfg), "world_size": ranks.world if ranks else 1},
                       history)
    if ranks is not None:
        distributed.barrier()  # the last checkpoint is on disk before any rank returns
    model.eval()
    return TrainResult(model=model, history=history, sampling_probability=prob)


def epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch `epoch` (1-based) under cfg.lr_schedule."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / cfg.epochs))


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam, fused into one kernel per step: on a CPU the default loops over the parameters and, at 32px,
    spent 16% of a step in 30 small updates (bench/train_throughput.py)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def one_process_only(model_cfg: ModelConfig, cfg: TrainConfig, choose_schedule: bool = False) -> str | None:
    """Why this run cannot be split across processes (a one-line refusal), or None when it can."""
    if model_cfg.decoder == "adversarial":
        return ("the adversarial decoder trains in one process only (its discriminator's gradient is taken "
                "outside DDP's averaged backward); drop --nproc or use --decoder plain")
    if cfg.mix_groups:
        return "mix_groups trains in one process only; drop --nproc or --mix-groups"
    if choose_schedule:
        return "--error-schedule auto trains in one process only; drop --nproc or choose a schedule"
    return None


def check_distributable(model_cfg: ModelConfig, cfg: TrainConfig, world: int, choose_schedule: bool = False) -> None:
    """What a multi-process run cannot do, refused before any work."""
    distributed.check_batch(cfg.batch_size, world)
    reason = one_process_only(model_cfg, cfg, choose_schedule)
    if reason:
        raise DebiasError(reason)


def scheduled_upweight(cfg: TrainConfig, epoch: int, steps_per_epoch: int, schedule: str | None = None) -> float:
    """The error set's upweight in `epoch` (one that uses the set) under `schedule` (cfg.error_schedule if
    None; a gated run passes the schedule it chose)."""
    schedule = schedule or cfg.error_schedule
    if schedule == "gated":
        raise ValueError("a gated run upweights with the schedule it chose when it took the error set")
    if schedule == "constant":
        return cfg.error_upweight
    # The k-th epoch that uses the set: a split error_epoch uses it in its second part already.
    k = epoch - cfg.error_epoch + (1 if 0 < cfg.error_steps < steps_per_epoch else 0)
    # In logs: (1 + upweight) ** k overflows a float long before 200 epochs.
    if k * math.log1p(cfg.error_upweight) >= math.log1p(MAX_SCHEDULED_UPWEIGHT):
        return MAX_SCHEDULED_UPWEIGHT
    return (1.0 + cfg.error_upweight) ** k - 1.0


def _load_error_set(out_dir: Path, n: int, schedule: str) -> tuple[np.ndarray | None, dict | None]:
    """The error set a resumed run took, and the schedule it upweights with (`schedule` unless gated)."""
    path = out_dir / ERROR_SET_FILE
    if not path.is_file():
        return None, None  # the run stopped before taking it: it is taken when its epoch comes
    errors = np.load(path)
    if errors.shape != (n,):
        raise ModelError(f"{path} holds {errors.shape} error flags for {n} samples; resume on the same data")
    if schedule != "gated":
        return errors, {"schedule": schedule}
    decision_path = out_dir / SCHEDULE_FILE
    # A run from before the gated schedule wrote no decision: it upweighted constantly, the default then.
    decision = json.loads(decision_path.read_text()) if decision_path.is_file() else {"schedule": "constant"}
    return errors, decision


def _check_finite(record: dict, epoch: int, cfg: TrainConfig, model_cfg: ModelConfig) -> None:
    """Stop a diverged run before it checkpoints: a model with NaN weights is worth nothing."""
    bad = {k: v for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        parts = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise ModelError(f"training diverged in epoch {epoch}: {parts}; lower lr (now {cfg.lr:g}) or "
                         f"kl_weight (now {model_cfg.kl_weight:g}) and train again")


def _restore(out_dir: Path, model, optimizer, model_cfg: ModelConfig,
             device: torch.device) -> tuple[int, list[dict]]:
    path = latest_checkpoint(out_dir)
    if path is None:
        raise ModelError(f"--resume given but {out_dir} holds no checkpoint; drop --resume to start fresh")
    state = load_training_state(path)
    saved = model_from_state(state, path)  # its config with today's defaults for options it predates
    if saved.cfg.to_dict() != model_cfg.to_dict():
        raise ModelError(f"{path} was trained with {state['model_config']}, not {model_cfg.to_dict()}; "
                         f"resume with the same options or use a new --out")
    model.load_state_dict(saved.state_dict())
    optimizer.load_state_dict(state["optimizer"])
    for s in optimizer.state.values():
        for k, v in s.items():
            if torch.is_tensor(v):
                s[k] = v.to(device)
    return int(state["epoch"]), list(state["history"])
