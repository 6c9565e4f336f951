"""Refuse, at creation, a job whose estimated peak memory is above settings.max_job_memory.

The estimate (audit.resources) comes from the job's options and its dataset's
size, so a request for batch_size=4096 on 512px images is answered with a 422
naming what to lower, instead of a worker that grows until the kernel kills it.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from audit.errors import DebiasError
from audit.models import ModelConfig
from audit.resources import estimate_inference_memory, estimate_training_memory, largest_batch_within

from ..settings import Settings
from ..tables import Dataset, Evaluation, Job, TrainedModel

LIMIT_SETTING = "DEBIAS_MAX_JOB_MEMORY"


def gib(n: int) -> str:
    return f"{n / 2 ** 30:.1f} GiB"


def _config(model: TrainedModel) -> ModelConfig:
    return ModelConfig(method=model.method, image_size=model.image_size, latent_dim=model.options["latent_dim"])


def _over(estimate: int, limit: int, what: str, fix: str) -> DebiasError:
    return DebiasError(f"{what} would need about {gib(estimate)} of memory at its peak, over this server's limit "
                       f"of {gib(limit)} per job ({LIMIT_SETTING}); {fix}, or ask the operator to raise "
                       f"{LIMIT_SETTING}")


def check_training(settings: Settings, dataset: Dataset, model: TrainedModel, auditing: bool = False) -> None:
    """DebiasError (422) if training `model` on `dataset` (then auditing it) is estimated above the limit."""
    cfg, batch, n = _config(model), model.options["batch_size"], dataset.n_samples
    estimate = estimate_training_memory(cfg, batch, n)
    if auditing:
        estimate = max(estimate, estimate_inference_memory(cfg, n))
    # DEBIAS_TRAIN_PROCESSES: each process holds the dataset and a model; the job's share is theirs together.
    processes = settings.train_processes
    limit = settings.max_job_memory // processes
    if estimate <= limit:
        return
    fits = largest_batch_within(cfg, n, limit)
    lower = f"lower batch_size (to {fits} or less)" if fits >= 2 else "lower batch_size"
    where = f" in each of {processes} processes (DEBIAS_TRAIN_PROCESSES)" if processes > 1 else ""
    raise _over(estimate * processes, settings.max_job_memory,
                f"training on dataset {dataset.id} ({n} images of {dataset.image_size}px) with "
                f"batch_size={batch} and latent_dim={cfg.latent_dim}{where}",
                f"{lower} or latent_dim, or upload the dataset again with a smaller image_size")


def check_inference(settings: Settings, dataset: Dataset, model: TrainedModel, what: str) -> None:
    """DebiasError (422) if running `model` over `dataset` (evaluate, audit) is estimated above the limit."""
    estimate = estimate_inference_memory(_config(model), dataset.n_samples)
    if estimate > settings.max_job_memory:
        raise _over(estimate, settings.max_job_memory,
                    f"{what} model {model.id} (latent_dim={model.options['latent_dim']}) on dataset {dataset.id} "
                    f"({dataset.n_samples} images of {dataset.image_size}px)",
                    "upload the dataset again with a smaller image_size or fewer images, or use a model trained "
                    "with a smaller latent_dim")


def options_in_use(session: Session, job: Job) -> str:
    """What to lower after the job ran out of memory, with the values it used."""
    payload = job.payload
    if job.kind == "counterfactual":  # a translator of fixed size and the model's forward passes
        return "upload the dataset again with a smaller image_size or fewer images of the two values"
    model_id = payload.get("model_id")
    if model_id is None and "evaluation_id" in payload:
        ev = session.get(Evaluation, payload["evaluation_id"])
        model_id = ev.model_id if ev is not None else None
    model = session.get(TrainedModel, model_id) if model_id is not None else None
    if model is None:
        return "lower batch_size or latent_dim, or upload the dataset again with a smaller image_size"
    image = f"upload the dataset again with a smaller image_size (now {model.image_size})"
    if job.kind == "evaluate" or (job.kind == "audit" and not payload.get("train_model")):
        return image
    return (f"lower batch_size (now {model.options['batch_size']}) or latent_dim (now "
            f"{model.options['latent_dim']}), or {image}")
