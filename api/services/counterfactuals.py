"""Counterfactual tests of a model: start the job, read results and the pairs picture (audit.counterfactual)."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from audit.counterfactual import MIN_IMAGES_PER_VALUE
from audit.errors import DebiasError

from ..settings import Settings
from ..tables import Counterfactual, Dataset, Job
from . import Conflict, NotFound, owned, owned_rows
from . import jobs as job_service
from .limits import check_inference
from .locks import lock_datasets, lock_model_source
from .models import check_fits, require_ready
from .models import get as get_model


def counterfactual_dir(settings: Settings, counterfactual_id: int) -> Path:
    return settings.path("counterfactuals", counterfactual_id)


def start(session: Session, settings: Settings, owner_id: int, model_id: int, body: dict) -> tuple[Counterfactual, Job]:
    model = get_model(session, owner_id, model_id)
    [dataset] = lock_datasets(session, owner_id, [body["dataset_id"]])  # with the model's, until commit (locks)
    model = lock_model_source(session, owner_id, model)
    require_ready(model)
    check_fits(model, dataset)
    check_inference(settings, dataset, model, "testing counterfactuals with")
    attribute, values = body["attribute"], list(body["values"])
    check_values(dataset, attribute, values)
    source = body.get("translator_from")
    if source is not None:
        source = translator_origin(get(session, owner_id, source), attribute, values, dataset)
    options = {"epochs": body["epochs"], "seed": body["seed"], "translator_from": source}
    row = Counterfactual(owner_id=owner_id, model_id=model.id, dataset_id=dataset.id, attribute=attribute,
                         values=values, options=options,
                         translator_from=source, status="pending")
    session.add(row)
    session.flush()
    job = job_service.enqueue(session, owner_id, "counterfactual", {"counterfactual_id": row.id}, dataset.id,
                              settings.max_attempts)
    row.job_id = job.id
    session.commit()
    return row, job


def check_values(dataset: Dataset, attribute: str, values: list[str]) -> None:
    """422 unless the dataset holds at least MIN_IMAGES_PER_VALUE images of each value (as the engine needs)."""
    if attribute not in dataset.attributes:
        raise DebiasError(f"dataset {dataset.id} has no attribute {attribute!r}; its attributes: "
                          f"{', '.join(dataset.attributes) or 'none'}")
    counts = {str(k): v for k, v in dataset.attributes[attribute].items()}
    for value in values:
        if counts.get(value, 0) < MIN_IMAGES_PER_VALUE:
            held = ", ".join(f"{k}: {v}" for k, v in counts.items())
            raise DebiasError(f"dataset {dataset.id} has {counts.get(value, 0)} images of {attribute}={value!r}; a "
                              f"counterfactual test needs at least {MIN_IMAGES_PER_VALUE} of each value "
                              f"(it has {held})")


def translator_origin(source: Counterfactual, attribute: str, values: list[str], dataset: Dataset) -> int:
    """The id of the test that trained the translator `source` used: `source` itself, or the one it reused."""
    if source.status != "ready" or not source.result:
        raise Conflict(f"counterfactual {source.id} is {source.status}, not ready: its translator cannot be reused "
                       f"before its job {source.job_id} succeeds")
    if source.attribute != attribute or set(source.values) != set(values):
        raise DebiasError(f"counterfactual {source.id} translates {source.attribute} "
                          f"{source.values[0]}<->{source.values[1]}, not {attribute} {values[0]}<->{values[1]}")
    if source.result["image_size"] != dataset.image_size:
        raise DebiasError(f"counterfactual {source.id}'s translator works on {source.result['image_size']}px "
                          f"images, dataset {dataset.id} has {dataset.image_size}px")
    if source.result["translator"]["trained"]:
        return source.id
    if source.translator_from is None:  # the test that trained it was deleted with its dataset
        raise Conflict(f"counterfactual {source.id} reused a translator that has since been deleted; reuse "
                       f"another test's or train one (leave translator_from out)")
    return source.translator_from


def translator_dir(settings: Settings, row: Counterfactual) -> Path | None:
    """The translator a test reuses (None: it trains its own, in its own folder)."""
    asked = row.options.get("translator_from")
    if asked is None:
        return None
    if row.translator_from is None:  # the reused test went (with its dataset) after this one was queued
        raise DebiasError(f"counterfactual {asked}, whose translator this test reuses, was deleted; start the test "
                          f"again with another translator_from or none")
    return counterfactual_dir(settings, asked) / "translator"


def get(session: Session, owner_id: int, counterfactual_id: int) -> Counterfactual:
    return owned(session, Counterfactual, owner_id, counterfactual_id, "counterfactual")


def list_for(session: Session, owner_id: int, model_id: int | None = None) -> list[Counterfactual]:
    return owned_rows(session, Counterfactual, owner_id, model_id=model_id)


def pairs_png(settings: Settings, session: Session, owner_id: int, counterfactual_id: int) -> Path:
    row = get(session, owner_id, counterfactual_id)
    if row.status != "ready" or not row.result:
        raise NotFound(f"counterfactual {counterfactual_id} has no pairs picture yet (it is {row.status})")
    path = counterfactual_dir(settings, row.id) / row.result["pairs_png"]
    if not path.is_file():
        raise NotFound(f"counterfactual {counterfactual_id}'s pairs picture is missing")
    return path
