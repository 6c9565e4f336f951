from __future__ import annotations

from fastapi import APIRouter, status

from ..deps import CurrentOwner, SessionDep, SettingsDep
from ..schemas import Accepted, EvaluationCreate, EvaluationOut, ModelCreate, ModelOut
from ..services import comparison
from ..services import models as service
from .params import OptionalQueryId, PathId, QueryId
from .shapes import job_out, model_out

router = APIRouter(tags=["models"])


@router.post("/v1/datasets/{dataset_id}/models", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
def train_model(dataset_id: PathId, body: ModelCreate, session: SessionDep, settings: SettingsDep,
                owner: CurrentOwner):
    """Train a standard classifier or a DB-VAE with debiased sampling on the dataset."""
    model, job = service.start_training(session, settings, owner.id, dataset_id, body.model_dump())
    return Accepted(job=job_out(job), resource={"model_id": model.id, "url": f"/v1/models/{model.id}"})


@router.get("/v1/models", response_model=list[ModelOut])
def list_models(session: SessionDep, owner: CurrentOwner, dataset_id: OptionalQueryId = None):
    return [model_out(m) for m in service.list_for(session, owner.id, dataset_id)]


@router.get("/v1/models/{model_id}", response_model=ModelOut)
def get_model(model_id: PathId, session: SessionDep, owner: CurrentOwner):
    """The model's options, status and per-epoch training history."""
    return model_out(service.get(session, owner.id, model_id))


@router.post("/v1/models/{model_id}/evaluations", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
def evaluate_model(model_id: PathId, body: EvaluationCreate, session: SessionDep, settings: SettingsDep,
                   owner: CurrentOwner):
    """Accuracy per group (label x group_by attributes) of the model on a dataset."""
    ev, job = service.start_evaluation(session, settings, owner.id, model_id, body.dataset_id, body.group_by)
    return Accepted(job=job_out(job), resource={"evaluation_id": ev.id, "url": f"/v1/evaluations/{ev.id}"})


@router.get("/v1/evaluations", response_model=list[EvaluationOut])
def list_evaluations(session: SessionDep, owner: CurrentOwner, model_id: OptionalQueryId = None):
    return [EvaluationOut.model_validate(e) for e in service.list_evaluations(session, owner.id, model_id)]


@router.get("/v1/evaluations/{evaluation_id}", response_model=EvaluationOut)
def get_evaluation(evaluation_id: PathId, session: SessionDep, owner: CurrentOwner):
    return EvaluationOut.model_validate(service.get_evaluation(session, owner.id, evaluation_id))


@router.get("/v1/models/{model_id}/compare")
def compare_models(model_id: PathId, baseline: QueryId, session: SessionDep, owner: CurrentOwner,
                   dataset: OptionalQueryId = None, evaluation: OptionalQueryId = None,
                   baseline_evaluation: OptionalQueryId = None) -> dict:
    """This model against a baseline, paired sample by sample on one test set.

    Per group both accuracies, FNR and FPR with 95% Wilson intervals, the difference (model - baseline) with a
    paired bootstrap interval and McNemar's exact p; the change in worst-group accuracy with its interval; and
    `sentence`, the verdict in plain words. The evaluations are the latest of each model on `dataset`, or
    `evaluation` and `baseline_evaluation`; evaluations of different datasets are refused (422), evaluations
    stored without per-sample predictions (made before they were kept) too (409: evaluate again).
    """
    return comparison.compare(session, owner.id, model_id, baseline, dataset, evaluation, baseline_evaluation)
