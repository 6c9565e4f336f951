"""Trained models and evaluations: start training / evaluation jobs, read results (compare: comparison.py)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.errors import DebiasError

from ..settings import Settings
from ..tables import Dataset, Evaluation, Job, TrainedModel
from . import Conflict, owned, owned_rows
from . import jobs as job_service
from . import reviews as review_service
from .limits import check_inference, check_training
from .locks import lock_datasets, lock_model_source


def new_model_row(owner_id: int, dataset: Dataset, options: dict,
                  model_set_id: int | None = None) -> TrainedModel:
    return TrainedModel(owner_id=owner_id, dataset_id=dataset.id, method=options["method"],
                        density=options["density"] if options["method"] == "dbvae" else None,
                        image_size=dataset.image_size, options=options, history=[], status="pending",
                        model_set_id=model_set_id)


def start_training(session: Session, settings: Settings, owner_id: int, dataset_id: int,
                   options: dict, model_set_id: int | None = None, commit: bool = True) -> tuple[TrainedModel, Job]:
    """A model row and its training job. `commit=False` leaves the commit to the caller (a model set
    commits all its members at once)."""
    [dataset] = lock_datasets(session, owner_id, [dataset_id])  # until commit: a delete waits (see locks)
    options, payload = dict(options), {}
    if options.get("exclude_from_audit") is None:
        options.pop("exclude_from_audit", None)
    else:
        # The decisions as they are now: later reviews (or a retry of the job) do not change what it leaves out.
        payload["exclude"] = review_service.exclusion_for(session, owner_id, options["exclude_from_audit"], dataset)
        options["excluded_samples"] = len(payload["exclude"])
    model = new_model_row(owner_id, dataset, options, model_set_id)
    check_training(settings, dataset, model)  # 422 before anything is stored
    session.add(model)
    session.flush()
    job = job_service.enqueue(session, owner_id, "train", {"model_id": model.id, **payload}, dataset.id,
                              settings.max_attempts)
    model.job_id = job.id
    if commit:
        session.commit()
    return model, job


def get(session: Session, owner_id: int, model_id: int) -> TrainedModel:
    return owned(session, TrainedModel, owner_id, model_id, "model")


def list_for(session: Session, owner_id: int, dataset_id: int | None = None) -> list[TrainedModel]:
    return owned_rows(session, TrainedModel, owner_id, dataset_id=dataset_id)


def require_ready(model: TrainedModel) -> None:
    if model.status != "ready":
        raise Conflict(f"model {model.id} is {model.status}, not ready; wait for its training job "
                       f"{model.job_id} to succeed")


def check_fits(model: TrainedModel, dataset: Dataset) -> None:
    if model.image_size != dataset.image_size:
        raise DebiasError(f"model {model.id} expects {model.image_size}px images but dataset {dataset.id} was "
                          f"uploaded at {dataset.image_size}px; upload it again with image_size={model.image_size}")


def start_evaluation(session: Session, settings: Settings, owner_id: int, model_id: int, dataset_id: int,
                     group_by: list[str]) -> tuple[Evaluation, Job]:

    model = get(session, owner_id, model_id)
    [dataset] = lock_datasets(session, owner_id, [dataset_id])  # both datasets, until commit (see locks)
    model = lock_model_source(session, owner_id, model)
    require_ready(model)
    check_fits(model, dataset)
    check_inference(settings, dataset, model, "evaluating")
    unknown = [g for g in group_by if g not in dataset.attributes]
    if unknown:
        raise DebiasError(f"unknown attribute(s) {', '.join(unknown)} for group_by; dataset {dataset.id} has: "
                          f"{', '.join(dataset.attributes) or 'none'}")
    ev = Evaluation(owner_id=owner_id, model_id=model.id, dataset_id=dataset.id, group_by=group_by, status="pending")
    session.add(ev)
    session.flush()
    job = job_service.enqueue(session, owner_id, "evaluate", {"evaluation_id": ev.id}, dataset.id,
                              settings.max_attempts)
    ev.job_id = job.id
    session.commit()
    return ev, job


def get_evaluation(session: Session, owner_id: int, evaluation_id: int) -> Evaluation:
    return owned(session, Evaluation, owner_id, evaluation_id, "evaluation")


def list_evaluations(session: Session, owner_id: int, model_id: int | None = None) -> list[Evaluation]:
    return owned_rows(session, Evaluation, owner_id, model_id=model_id)


def latest_evaluation(session: Session, model_id: int, dataset_id: int,
                      ready_only: bool = True) -> Evaluation | None:
    q = select(Evaluation).where(Evaluation.model_id == model_id, Evaluation.dataset_id == dataset_id)
    if ready_only:
        q = q.where(Evaluation.status == "ready")
    return session.scalar(q.order_by(Evaluation.id.desc()).limit(1))
