"""Model sets: one model per training seed (audit.modelset), trained and compared as one.

A set is a row in `model_sets`; its members are ordinary models (`models.model_set_id`), each
trained by its own job through models.start_training, so limits, locks and validation are those of
a single model. The set's status follows its members'. Compare pairs two sets' members by seed,
each member through its latest finished evaluation on one test set (audit.comparison).
"""
from __future__ import annotations

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.comparison import paired_comparison
from audit.errors import DebiasError
from audit.modelset import mean_sd

from ..settings import Settings
from ..tables import Evaluation, Job, ModelSet, TrainedModel
from . import Conflict, owned
from . import datasets as dataset_service
from .comparison import predictions
from .locks import lock_datasets
from .models import latest_evaluation, start_training


def start(session: Session, settings: Settings, owner_id: int, dataset_id: int, options: dict,
          seeds: list[int]) -> tuple[ModelSet, list[tuple[TrainedModel, Job]]]:
    """The set and one training job per seed, committed together (nothing is stored if one is refused)."""
    lock_datasets(session, owner_id, [dataset_id])  # NotFound before anything is stored
    row = ModelSet(owner_id=owner_id, dataset_id=dataset_id, method=options["method"], seeds=list(seeds))
    session.add(row)
    session.flush()
    try:
        members = [start_training(session, settings, owner_id, dataset_id, {**options, "seed": seed},
                                  model_set_id=row.id, commit=False) for seed in seeds]
    except BaseException:
        session.rollback()
        raise
    session.commit()
    return row, members


def get(session: Session, owner_id: int, set_id: int) -> ModelSet:
    return owned(session, ModelSet, owner_id, set_id, "model set")


def members(session: Session, row: ModelSet) -> list[TrainedModel]:
    """The set's models in seed order (the order they were created)."""
    return list(session.scalars(select(TrainedModel).where(TrainedModel.model_set_id == row.id)
                                .order_by(TrainedModel.id)))


def status_of(models: list[TrainedModel]) -> str:
    """failed if any member failed, cancelled if any was cancelled, ready when all are, else pending."""
    statuses = {m.status for m in models}
    for s in ("failed", "cancelled"):
        if s in statuses:
            return s
    return "ready" if models and statuses == {"ready"} else "pending"


def describe(session: Session, row: ModelSet) -> dict:
    ms = members(session, row)
    first = ms[0] if ms else None
    return {"id": row.id, "dataset_id": row.dataset_id, "method": row.method,
            "density": first.density if first else None, "seeds": list(row.seeds), "status": status_of(ms),
            "options": {k: v for k, v in (first.options if first else {}).items() if k != "seed"},
            "members": [{"model_id": m.id, "seed": m.options.get("seed"), "status": m.status, "job_id": m.job_id,
                         "url": f"/v1/models/{m.id}"} for m in ms],
            "created_at": row.created_at}


def set_name(row: ModelSet) -> str:
    return f"model set {row.id} ({row.method})"


def _side(session: Session, row: ModelSet, seeds: list[int], dataset_id: int,
          missing: list[str]) -> list[tuple[int, TrainedModel, Evaluation | None]]:
    """(seed, member, its latest finished evaluation on the dataset or None) for each of `seeds`."""
    by_seed = {m.options.get("seed"): m for m in members(session, row)}
    not_ready = [m for m in by_seed.values() if m.status != "ready"]
    if not_ready:
        raise Conflict(f"{set_name(row)} is {status_of(list(by_seed.values()))}: member(s) "
                       + ", ".join(f"model {m.id} (seed {m.options.get('seed')}, {m.status})" for m in not_ready)
                       + " not ready; wait for their training jobs")
    out = []
    for seed in seeds:
        m = by_seed.get(seed)
        if m is None:
            raise Conflict(f"{set_name(row)} has no member of seed {seed} any more; train the set again")
        ev = latest_evaluation(session, m.id, dataset_id)
        if ev is None:
            missing.append(f"POST /v1/models/{m.id}/evaluations {{\"dataset_id\": {dataset_id}}} "
                           f"(model {m.id}, seed {seed} of {set_name(row)})")
        out.append((seed, m, ev))
    return out


def _pooled(session: Session, side: list[tuple[int, TrainedModel, Evaluation]]) -> dict:
    """The members' evaluations as one model set's evaluation for audit.comparison: predictions stacked per seed."""
    first = side[0][2].metrics
    frames = [predictions(session, ev).assign(seed=seed) for seed, _, ev in side]
    return {"group_by": first["group_by"], "dataset_fingerprint": first.get("dataset_fingerprint"),
            "model_set": {"seeds": [seed for seed, _, _ in side]},
            "predictions": pd.concat(frames, ignore_index=True)}


def _across(side: list[tuple[int, TrainedModel, Evaluation]]) -> dict:
    return {"seeds": [seed for seed, _, _ in side],
            "worst_group_accuracy": mean_sd([ev.metrics["worst_group_accuracy"] for _, _, ev in side]),
            "overall_accuracy": mean_sd([ev.metrics["overall"]["accuracy"] for _, _, ev in side])}


def compare(session: Session, owner_id: int, set_id: int, baseline_id: int, dataset_id: int) -> dict:
    """Set `set_id` against set `baseline_id` (differences are set - baseline) on test set `dataset_id`."""
    row, base = get(session, owner_id, set_id), get(session, owner_id, baseline_id)
    dataset_service.get(session, owner_id, dataset_id)
    seeds = [s for s in row.seeds if s in base.seeds]
    if not seeds:
        raise DebiasError(f"{set_name(row)} (seeds {row.seeds}) and {set_name(base)} (seeds {base.seeds}) share "
                          f"no seed, so no member can be paired; train the baseline set with the same seeds")
    missing: list[str] = []
    mine = _side(session, row, seeds, dataset_id, missing)
    theirs = _side(session, base, seeds, dataset_id, missing)
    if missing:
        raise Conflict(f"{len(missing)} member(s) have no finished evaluation on dataset {dataset_id}; make them, "
                       f"wait for their jobs, then compare again: " + "; ".join(missing))
    group_bys = {tuple(ev.metrics["group_by"]) for _, _, ev in mine + theirs}
    if len(group_bys) > 1:
        raise Conflict(f"the members' latest evaluations on dataset {dataset_id} group by different attributes "
                       f"({', '.join(str(list(g)) for g in sorted(group_bys))}); evaluate every member with the "
                       f"same group_by")
    paired = paired_comparison(_pooled(session, theirs), _pooled(session, mine),
                               names=(set_name(base), set_name(row)))
    a, b = _across(theirs), _across(mine)
    left_out = sorted(set(row.seeds) ^ set(base.seeds))
    warnings = ([f"seed(s) {', '.join(map(str, left_out))} are in only one set and were left out of the pairing"]
                if left_out else [])
    warnings += [f"{set_name(r)} was trained on dataset {dataset_id}, the test set: accuracy on the images a "
                 f"model learned from overstates how it does on new ones; compare on a held-out test set"
                 for r in (row, base) if r.dataset_id == dataset_id]

    def summary(r: ModelSet, side: list) -> dict:
        return {"model_set_id": r.id, "method": r.method, "name": set_name(r), "dataset_id": r.dataset_id,
                "members": [{"seed": seed, "model_id": m.id, "evaluation_id": ev.id,
                             "worst_group_accuracy": ev.metrics["worst_group_accuracy"],
                             "overall_accuracy": ev.metrics["overall"]["accuracy"]} for seed, m, ev in side]}

    return {"dataset_id": dataset_id, "group_by": list(next(iter(group_bys))), "seeds": seeds,
            "pairing": f"member seed s of {set_name(row)} is paired with member seed s of {set_name(base)}, "
                       f"sample by sample ({len(seeds)} pairs); the pairs are pooled into one paired test",
            "model_set": summary(row, mine), "baseline_set": summary(base, theirs),
            "across_seeds": {"model_set": b, "baseline_set": a,
                             "difference_of_means": {
                                 k: b[k]["mean"] - a[k]["mean"] for k in ("worst_group_accuracy", "overall_accuracy")},
                             "sd": "sample standard deviation over seeds (n - 1); null with one seed"},
            "sentence": paired["sentence"], "significant": paired["significant"],
            "warnings": warnings + paired["warnings"], "paired": paired}
