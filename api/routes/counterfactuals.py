"""Counterfactual tests: would a model's decisions change if only one attribute of the images changed?"""
from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import FileResponse

from ..deps import CurrentOwner, SessionDep, SettingsDep
from ..schemas import Accepted, CounterfactualCreate, CounterfactualOut
from ..services import counterfactuals as service
from .params import OptionalQueryId, PathId
from .shapes import counterfactual_out, job_out

router = APIRouter(tags=["counterfactuals"])


@router.post("/v1/models/{model_id}/counterfactuals", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
def start_counterfactual(model_id: PathId, body: CounterfactualCreate, session: SessionDep, settings: SettingsDep,
                         owner: CurrentOwner):
    """Translate the dataset's images of values[0] to values[1] and back with a CycleGAN (trained on them, or
    reused from `translator_from`) and count the model's decisions that flip, per direction and class, with 95%
    intervals. The translation is checked by an attribute probe; a failed check marks the result unreliable."""
    row, job = service.start(session, settings, owner.id, model_id, body.model_dump())
    return Accepted(job=job_out(job), resource={"counterfactual_id": row.id, "url": f"/v1/counterfactuals/{row.id}"})


@router.get("/v1/counterfactuals", response_model=list[CounterfactualOut])
def list_counterfactuals(session: SessionDep, owner: CurrentOwner, model_id: OptionalQueryId = None):
    return [counterfactual_out(c) for c in service.list_for(session, owner.id, model_id)]


@router.get("/v1/counterfactuals/{counterfactual_id}", response_model=CounterfactualOut)
def get_counterfactual(counterfactual_id: PathId, session: SessionDep, owner: CurrentOwner):
    """Status, and when ready counterfactual.json: flip rates and mean probability changes with intervals per
    direction and class, the probe's and the cycle's checks, warnings, the pairs picture's URL."""
    return counterfactual_out(service.get(session, owner.id, counterfactual_id))


@router.get("/v1/counterfactuals/{counterfactual_id}/pairs.png", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}}})
def get_pairs(counterfactual_id: PathId, session: SessionDep, settings: SettingsDep, owner: CurrentOwner):
    """Originals over their translations, the largest changes in predicted probability first."""
    return FileResponse(service.pairs_png(settings, session, owner.id, counterfactual_id), media_type="image/png")
