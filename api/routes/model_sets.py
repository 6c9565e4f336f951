from __future__ import annotations

from fastapi import APIRouter, status

from ..deps import CurrentOwner, SessionDep, SettingsDep
from ..schemas import ModelSetAccepted, ModelSetCreate, ModelSetOut
from ..services import model_sets as service
from .params import PathId, QueryId
from .shapes import job_out

router = APIRouter(tags=["model sets"])


@router.post("/v1/datasets/{dataset_id}/model-sets", status_code=status.HTTP_202_ACCEPTED,
             response_model=ModelSetAccepted)
def train_model_set(dataset_id: PathId, body: ModelSetCreate, session: SessionDep, settings: SettingsDep,
                    owner: CurrentOwner):
    """Train one model per seed with the same options (a model set): one training job per seed."""
    options = body.model_dump(exclude={"seeds"})
    row, members = service.start(session, settings, owner.id, dataset_id, options, body.seeds)
    return ModelSetAccepted(jobs=[job_out(job) for _, job in members],
                            resource={"model_set_id": row.id, "url": f"/v1/model-sets/{row.id}",
                                      "model_ids": [m.id for m, _ in members]})


@router.get("/v1/model-sets/{model_set_id}", response_model=ModelSetOut)
def get_model_set(model_set_id: PathId, session: SessionDep, owner: CurrentOwner):
    """The set's status (ready when every member is, failed if any member failed) and its members."""
    return service.describe(session, service.get(session, owner.id, model_set_id))


@router.get("/v1/model-sets/{model_set_id}/compare")
def compare_model_sets(model_set_id: PathId, baseline_set: QueryId, dataset: QueryId, session: SessionDep,
                       owner: CurrentOwner) -> dict:
    """This model set against a baseline set on one test set, members paired by seed.

    Pairing: for each seed in both sets, member seed s of this set is paired sample by sample with member
    seed s of the baseline set, each through its latest finished evaluation on `dataset`; the pairs are
    pooled into one paired test (McNemar, paired bootstrap; `paired`, `sentence`). Seeds in only one set are
    left out (with a warning); sets sharing no seed are refused (422). `across_seeds` gives each side's mean
    and sd over seeds of worst-group and overall accuracy and the difference of the means (set - baseline).
    A member without a finished evaluation on `dataset` is a 409 naming the POSTs to make.
    """
    return service.compare(session, owner.id, model_set_id, baseline_set, dataset)
