"""The engine's front door: each step of the workflow as one function returning data.

The CLI and the service are thin clients of these functions.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import distributed, figures
from .checkpoint import load_model
from .csvsafe import safe_frame
from .dataset import ImageDataset
from .errors import DebiasError
from .evaluation import evaluate
from .features import TRAVERSAL_STEPS, traversal_change, traversal_note, traversal_values
from .generate import load_subgroup_gaussian, sample_latents, save_subgroup_latents
from .inference import decode, predict
from .models import ModelConfig, check_image_size, pick_device
from .outputs import staged_directory
from .report import CLASS_NAMES, AuditConfig, AuditResult, run_audit
from .reviews import Exclusion, check_resume, expand_flags, mark_config, read_record, write_record
from .schedule_choice import check_choosable, train_choosing_schedule
from .subgroups import grid_members
from .training import ERROR_SET_FILE, SCHEDULE_FILE, TrainConfig, TrainResult, check_distributable, train


def check_new_model_dir(out_dir: str | Path, resume: bool) -> None:
    """Refuse to train into a folder that holds something, unless resuming it."""
    out_dir = Path(out_dir)
    if not resume and out_dir.exists() and any(out_dir.iterdir()):
        raise DebiasError(f"{out_dir} already exists and is not empty; pass --resume to continue it "
                          f"or choose a new --out")


def train_model(dataset: ImageDataset, out_dir: str | Path, model_cfg: ModelConfig, train_cfg: TrainConfig,
                resume: bool = False, progress: bool = True, callback=None,
                exclude: Exclusion | None = None, choose_schedule: bool = False) -> TrainResult:
    """Train on `dataset`, without the samples `exclude` names (review decisions) when given.

    choose_schedule: train both error schedules and keep the one the validation split prefers
    (--error-schedule auto; audit/schedule_choice.py).

    The exclusion is a subset taken here, before training, so the training loop never knows about it;
    the model directory records it (exclusion.json, config.json's `exclusion`).
    """
    out_dir = Path(out_dir)
    ranks = distributed.current()   # one rank of a multi-process run (torchrun), or None
    check_new_model_dir(out_dir, resume)
    if ranks is not None:
        check_distributable(model_cfg, train_cfg, ranks.world, choose_schedule)
    if choose_schedule:
        check_choosable(train_cfg)  # before any slow work
    if resume:
        check_resume(out_dir, exclude)
    if ranks is not None:
        distributed.barrier()   # every rank has checked --out before rank 0 writes to it
    main = ranks is None or ranks.is_main
    n_total = len(dataset)
    if exclude is not None:
        dataset = exclude.apply(dataset)
        if main:
            write_record(out_dir, exclude, n_total)
    if choose_schedule:
        result = train_choosing_schedule(dataset, model_cfg, train_cfg, out_dir, resume=resume, progress=progress,
                                         callback=callback)
    else:
        result = train(dataset, model_cfg, train_cfg, out_dir, resume=resume, progress=progress, callback=callback)
    if exclude is not None and main:  # after training: each epoch rewrites config.json
        mark_config(out_dir, exclude, n_total)
    return result


def audit_dataset(dataset: ImageDataset, model_dir: str | Path, out_dir: str | Path, cfg: AuditConfig,
                  device: str | None = None, with_figures: bool = True, progress: bool = False) -> AuditResult:
    """Audit `dataset` in the latent space of `model_dir`; writes report.json, samples.csv, figures.

    `out_dir` is replaced whole once the audit succeeds: refusing an existing one is the caller's choice
    (the CLI refuses it without --force; the service writes a new folder per audit).
    progress: a progress bar over the forward pass.
    """
    dev = pick_device(device)
    model, _ = load_model(model_dir, dev)
    check_image_size(model.cfg.image_size, dataset.image_size)
    errors, note = load_error_set(model_dir, len(dataset))
    result = run_audit(model, dataset, cfg, dev, errors=errors, progress=progress,
                       error_coherence=load_error_coherence(model_dir) if errors is not None else None)
    if note:
        result.report["subgroup_discovery"]["notes"] = [note]
    with staged_directory(out_dir) as stage:
        gaussians = save_subgroup_latents(stage, result.report["subgroups"], result.mu,
                                          result.samples["subgroup"].to_numpy())
        if with_figures:
            result.report["figures"] = write_figures(stage, model, dataset, result, dev, gaussians)
        safe_frame(result.samples).to_csv(stage / "samples.csv", index=False)
        (stage / "report.json").write_text(json.dumps(result.report, indent=2))
    return result


def load_error_set(model_dir: str | Path, n: int) -> tuple[np.ndarray | None, str | None]:
    """The training's error set (1.0 = an early snapshot misclassified the sample), if it fits this data.

    It was taken on the training data, so it is used only when it has one flag per sample of the
    audited dataset; otherwise it is left out with a note (the audit of other data goes on without it).
    """
    path = Path(model_dir) / ERROR_SET_FILE
    if not path.is_file():
        return None, None
    try:
        flags = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return None, f"{ERROR_SET_FILE} in the model directory is unreadable ({exc}); left out"
    shape = flags.shape
    if shape != (n,) and flags.ndim == 1 and np.issubdtype(flags.dtype, np.number):
        # A model trained without excluded samples (audit.reviews) flagged only the samples it trained on.
        flags = expand_flags(flags, read_record(model_dir), n)
    if flags is None or flags.shape != (n,) or not np.issubdtype(flags.dtype, np.number):
        return None, f"{ERROR_SET_FILE} holds {shape} flags for {n} samples (another dataset?); left out"
    flags = flags.astype(np.float64)
    if not np.isfinite(flags).all() or flags.min() < 0 or flags.max() > 1:
        return None, f"{ERROR_SET_FILE} holds values outside [0, 1]; left out"
    return flags, None


def load_error_coherence(model_dir: str | Path) -> dict | None:
    """The error set's coherence ({class name: share, "pooled": share}) as the training recorded it (a gated
    run does), else None."""
    path = Path(model_dir) / SCHEDULE_FILE
    try:
        recorded = json.loads(path.read_text()).get("coherence") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None          # unreadable: the flags count as before the coherence was recorded
    return recorded if isinstance(recorded, dict) else None


def evaluate_model(model_dir: str | Path, dataset: ImageDataset, group_by: list[str],
                   device: str | None = None) -> dict:
    dev = pick_device(device)
    model, meta = load_model(model_dir, dev)
    metrics = evaluate(model, dataset, group_by, dev)
    metrics["model"] = {"path": str(model_dir), "method": model.cfg.method,
                        "density": meta.get("training", {}).get("density")}
    metrics["dataset"] = dataset.source
    return metrics


def traversal(model, mu: np.ndarray, labels: np.ndarray, subgroup_ids: np.ndarray, feature: dict, device,
              steps: int = TRAVERSAL_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """(decoded images, projections) along a feature's direction, from its class's rest towards its subgroup."""
    cls = next(c for c, name in CLASS_NAMES.items() if name == feature["class"])
    rest = (labels == cls) & (subgroup_ids != feature["subgroup"])
    direction = np.asarray(feature["direction_vector"], dtype=np.float64)
    values = traversal_values(feature, steps)
    z = mu[rest].mean(0) + values[:, None] * direction
    return decode(model, z.astype(np.float32), device), values


GENERATED_PER_SUBGROUP = 8


def generated(model, n: int, device, seed: int = 0, gaussian: tuple[np.ndarray, np.ndarray] | None = None):
    """`n` decoded images: from the prior, or from a subgroup's latent `gaussian` (mean, covariance)."""
    mean, cov = gaussian if gaussian is not None else (None, None)
    return decode(model, sample_latents(n, model.cfg.latent_dim, seed, mean, cov), device)


def generate_grid(model_dir: str | Path, out_png: str | Path, n: int = 64, seed: int = 0, subgroup: int | None = None,
                  audit_dir: str | Path | None = None, device: str | None = None) -> Path:
    """`debias generate`: a PNG grid of new images from a DB-VAE, from the prior or from an audit's subgroup."""
    from .generate import check_count, check_seed
    check_count(n)
    check_seed(seed)
    if (subgroup is None) != (audit_dir is None):
        raise DebiasError("--subgroup and --audit go together: the subgroup's region is stored in the audit folder")
    if Path(out_png).suffix.lower() != ".png":
        raise DebiasError(f"output must be a .png file, got {str(out_png)!r}")
    report = {}
    if audit_dir is not None:
        path = Path(audit_dir) / "report.json"
        if not path.is_file():
            raise DebiasError(f"{audit_dir} holds no report.json; pass a folder written by `debias audit`")
        report = json.loads(path.read_text())
    dev = pick_device(device)
    model, _ = load_model(model_dir, dev)
    if not hasattr(model, "decoder"):
        raise DebiasError(f"{model_dir} is a {model.cfg.method} model: only a DB-VAE has a decoder to generate with")
    gaussian = load_subgroup_gaussian(Path(audit_dir), subgroup, report) if subgroup is not None else None
    images = generated(model, n, dev, seed, gaussian)
    where = f"subgroup {subgroup}'s latent region" if subgroup is not None else "the prior N(0, I)"
    return figures.image_grid(images, out_png, ncols=min(8, n), title=f"GENERATED, not real: decoded from {where}")


def write_figures(folder: Path, model, dataset: ImageDataset, result: AuditResult, device,
                  gaussians: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, str]:
    """All audit figures as PNGs in `folder`; returns {figure name: file name}. `gaussians`: the positive
    subgroups' latent Gaussians (generate.save_subgroup_latents), whose decodings are drawn beside them."""
    samples, report, labels = result.samples, result.report, np.asarray(dataset.labels)
    weight = samples["sampling_weight"].to_numpy()
    written = {}
    for cls, name in CLASS_NAMES.items():
        members = np.flatnonzero(labels == cls)
        path = figures.sampling_extremes(np.asarray(dataset.images[members]), weight[members],
                                         folder / f"sampling_extremes_{name}.png",
                                         title=f"{name} samples by sampling probability")
        written[f"sampling_extremes_{name}"] = path.name
    for sg in report["subgroups"]:
        central, others = grid_members(result.mu, samples["subgroup"].to_numpy(), sg["id"])
        sg["grid"] = figures.subgroup_grid(
            np.asarray(dataset.images[central]), np.asarray(dataset.images[others]),
            folder / f"subgroup_{sg['id']}.png",
            title=f"subgroup {sg['id']} ({sg['class']}, {sg['n']} samples, {sg['share']:.1%} of the class)").name
        if gaussians and sg["id"] in gaussians:
            sg["generated_grid"] = figures.image_grid(
                generated(model, GENERATED_PER_SUBGROUP, device, gaussian=gaussians[sg["id"]]),
                folder / f"subgroup_{sg['id']}_generated.png", ncols=GENERATED_PER_SUBGROUP,
                title=f"GENERATED, not real: decoded from subgroup {sg['id']}'s latent region").name
    features = report["under_represented_features"]
    # The decoder rebuilds positives only: traversals of negatives' features would show nothing real.
    shown = [f for f in features if f["class"] == "positive"]
    subgroup_ids = samples["subgroup"].to_numpy()
    if shown:
        strips, names, values = [], [], []
        for f in shown:
            images, vals = traversal(model, result.mu, labels, subgroup_ids, f, device)
            strips.append(images), values.append(vals)
            names.append(f"{f['name']} (feature {f['feature']})")
            f["traversal_change"] = traversal_change(images)
            f["traversal_note"] = traversal_note(f["traversal_change"])
            # Each strip on its own too, for pages that show it beside the feature's histogram.
            f["traversal_strip"] = figures.image_strip(images, folder / f"traversal_feature_{f['feature']}.png").name
        written["traversals"] = figures.traversal_strips(
            strips, names, values, folder / "traversals.png",
            title="Positives: decoded from the rest of the class (left) towards each top subgroup (right)").name
    if features:
        hist = [{**f["histogram"], "dimension": f["feature"], "name": f"feature {f['feature']}: {f['name']}",
                 "rank": f"{f['rank']}, {f['class']}", "rare_range": f.get("rare_range")} for f in features]
        written["latent_histograms"] = figures.latent_histograms(
            hist, folder / "latent_histograms.png", title="Projections on the top features (rare range shaded)").name
    rng = np.random.default_rng(0)
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), min(6, int((labels == c).sum())),
                                              replace=False) for c in (1, 0)]))
    images = np.asarray(dataset.images[pick])
    recon = decode(model, predict(model, images, device, want_recon_error=False)["mu"], device)
    written["reconstructions"] = figures.reconstructions(
        images, recon, folder / "reconstructions.png",
        errors=samples["reconstruction_error"].to_numpy()[pick], title="Input (top) vs reconstruction").name
    return written


def device_summary(device: str | None = None) -> str:
    dev = pick_device(device)
    return f"{dev.type}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")


__all__ = ["train_model", "audit_dataset", "evaluate_model", "write_figures", "device_summary", "load_error_set"]
