"""Serialize work created on a dataset with the dataset's deletion: both lock its row first.

Without it a delete and a create that interleave both succeed: the delete
finds no job yet, the create finds the dataset still there, and the job is
left with its model or dataset gone. With it one of them waits for the other,
then sees its result: the delete finds the new job (409), or the create finds
no dataset (404).

PostgreSQL: SELECT ... FOR UPDATE (the delete) conflicts with FOR SHARE (the
creators, which do not need to exclude each other). SQLite has no row locks:
an UPDATE that touches the rows, issued first, takes the database's single
write lock (waiting its turn) before anything is read.
"""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..tables import Dataset, TrainedModel
from . import NotFound, owned


def lock_datasets(session: Session, owner_id: int, dataset_ids: list[int], exclusive: bool = False) -> list[Dataset]:
    """`owner_id`'s datasets, locked until the transaction ends (NotFound if one is gone)."""
    ids = sorted(set(dataset_ids))  # one order everywhere: no deadlock between two creators
    for dataset_id in ids:
        owned(session, Dataset, owner_id, dataset_id, "dataset")  # NotFound (and the id checks) before locking
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(Dataset).where(Dataset.id.in_(ids)).values(id=Dataset.id)
                        .execution_options(synchronize_session=False))
    else:
        session.execute(select(Dataset.id).where(Dataset.id.in_(ids)).order_by(Dataset.id)
                        .with_for_update(read=not exclusive))
    # Read again under the lock: a delete that committed meanwhile has removed the row.
    rows = {r.id: r for r in session.scalars(select(Dataset).where(Dataset.id.in_(ids))
                                             .execution_options(populate_existing=True))}
    for dataset_id in dataset_ids:
        if dataset_id not in rows:
            raise NotFound(f"dataset {dataset_id} not found")
    return [rows[i] for i in dataset_ids]


def lock_model_source(session: Session, owner_id: int, model: TrainedModel) -> TrainedModel:
    """Lock the dataset `model` was trained on, so neither goes while a job on the model is created."""
    try:
        lock_datasets(session, owner_id, [model.dataset_id])
    except NotFound:
        raise NotFound(f"model {model.id} not found") from None
    fresh = session.scalar(select(TrainedModel).where(TrainedModel.id == model.id)
                           .execution_options(populate_existing=True))
    if fresh is None:
        raise NotFound(f"model {model.id} not found")
    return fresh
