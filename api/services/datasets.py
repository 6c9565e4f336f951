"""Datasets: ingest an uploaded file through the engine's loaders, store rows, serve images."""
from __future__ import annotations

import io
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from audit.dataset import ImageDataset
from audit.errors import DatasetError
from audit.loaders import load_dataset

from ..settings import Settings
from ..tables import (
    Audit,
    AuditReview,
    AuditScore,
    Counterfactual,
    Dataset,
    Evaluation,
    Job,
    ModelSet,
    Sample,
    TrainedModel,
)
from . import Conflict, NotFound, owned, owned_rows
from .bulk import bulk_insert


class UnsupportedFormat(DatasetError):
    """The upload's file name says it is not a dataset format we read (HTTP 415)."""
from .leftovers import remove_result
from .locks import lock_datasets

FORMATS = {".zip": "zip", ".npz": "npz", ".h5": "h5", ".hdf5": "h5"}
MAX_VALUES_LISTED = 50  # value counts kept per attribute in the dataset row


def upload_dir(settings: Settings) -> Path:
    path = settings.path("uploads")
    path.mkdir(parents=True, exist_ok=True)
    return path / uuid.uuid4().hex


def dataset_dir(settings: Settings, dataset_id: int) -> Path:
    return settings.path("datasets", dataset_id)


def check_filename(filename: str | None) -> str:
    """The upload's format from its file name, or DatasetError naming what is accepted."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in FORMATS:
        raise UnsupportedFormat(f"{filename or 'the upload'} is not a dataset file: send a .zip (folder of images with "
                           f"manifest.csv or class sub-folders), .npz or .h5")
    return suffix


MAX_TEXT = 255  # name, positive and file name: the columns' width


def check_text(value: str, what: str) -> str:
    """A short, printable text field; refused (never trimmed or altered) when it is not."""
    if len(value) > MAX_TEXT:
        raise DatasetError(f"{what} is {len(value)} characters long; keep it to {MAX_TEXT}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise DatasetError(f"{what} {value[:60]!r} contains a control character (NUL, newline, ...); remove it")
    return value


@dataclass(frozen=True)
class UploadForm:
    """An upload's text fields, checked: what `ingest` needs besides the file."""

    filename: str
    image_size: int | None
    positive: str | None
    name: str | None

    @classmethod
    def parse(cls, filename: str | None, fields: dict[str, str]) -> UploadForm:
        filename = check_text(filename or "", "the file name")
        check_filename(filename)
        size = fields.get("image_size", "").strip()
        # ASCII digits only: str.isdigit() also accepts '²' and '①', which int() then rejects.
        if size and not re.fullmatch(r"[0-9]{1,4}", size):
            raise DatasetError(f"image_size must be a whole number such as 64, got {size[:20]!r}")
        positive, name = fields.get("positive") or None, fields.get("name") or None
        return cls(filename, int(size) if size else None,
                   check_text(positive, "positive") if positive else None,
                   check_text(name, "name") if name else None)


def load(settings: Settings, ds_row: Dataset, display: str | None = None) -> ImageDataset:
    """The stored dataset, memory-mapped from its decoded cache.

    The engine names the file by its path; messages and problems name it as the client knows it
    (`display`, else the dataset's name): a server path is nobody's business.
    """
    folder = dataset_dir(settings, ds_row.id)
    source = next(folder.glob("upload.*"), None)
    if source is None:
        raise DatasetError(f"the files of dataset {ds_row.id} are missing; upload it again")
    shown = display or ds_row.name
    try:
        ds = load_dataset(source, image_size=ds_row.image_size, positive=ds_row.positive,
                          cache_dir=folder / "cache", max_pixels=settings.max_image_pixels,
                          max_zip_entries=settings.max_zip_entries, max_zip_bytes=settings.max_zip_bytes,
                          max_samples=settings.max_samples, max_decoded_bytes=settings.max_decoded_bytes,
                          max_expansion=settings.max_expansion)
    except DatasetError as exc:
        raise DatasetError(str(exc).replace(str(source), shown)) from None
    ds.source, ds.problems = shown, [p.replace(str(source), shown) for p in ds.problems]
    return ds


def ingest(session: Session, settings: Settings, owner_id: int, upload: Path, form: UploadForm) -> Dataset:
    """Validate and decode `upload`, then store it; on any error nothing is kept (files or rows)."""
    filename = form.filename
    suffix = check_filename(filename)
    image_size = settings.default_image_size if form.image_size is None else form.image_size
    if image_size < 16 or image_size % 16 or image_size > 512:
        raise DatasetError(f"image_size must be a multiple of 16 between 16 and 512, got {image_size}")
    row = Dataset(owner_id=owner_id, name=form.name or filename, file_format=FORMATS[suffix],
                  image_size=image_size, positive=form.positive, n_samples=0, n_positive=0, n_negative=0,
                  attributes={}, problems=[], upload_bytes=upload.stat().st_size)
    session.add(row)
    session.flush()  # the id names the folder
    folder = dataset_dir(settings, row.id)
    try:
        folder.mkdir(parents=True)
        upload.rename(folder / f"upload{suffix}")
        ds = load(settings, row, display=filename)
        counts = ds.class_counts()
        row.n_samples, row.n_positive, row.n_negative = len(ds), counts[1], counts[0]
        row.attributes = _attribute_counts(ds)
        row.problems = list(ds.problems)
        bulk_insert(session, Sample.__table__, ("dataset_id", "index", "label", "attributes"),
                    ((row.id, i, label, rec) for i, (label, rec) in
                     enumerate(zip(ds.labels.tolist(), attribute_records(ds)))))
        session.commit()
    except BaseException:
        session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        upload.unlink(missing_ok=True)
    return row


def attribute_records(ds: ImageDataset) -> list[dict]:
    """One {attribute: value as str} per sample (null when missing): filters compare strings on every backend."""
    if not len(ds.attributes.columns):
        return [{} for _ in range(len(ds))]
    columns = {}
    for col in ds.attributes.columns:
        # Missing values (NaN, None, NA) become JSON null: never the text "nan", never a bare NaN, which
        # is not JSON (SQLite refuses it as "malformed JSON").
        values = ds.attributes[col].astype(str).to_numpy(dtype=object)
        values[ds.attributes[col].isna().to_numpy()] = None
        columns[str(col)] = values.tolist()
    names = list(columns)
    return [dict(zip(names, row)) for row in zip(*columns.values())]


def _attribute_counts(ds: ImageDataset) -> dict[str, dict[str, int]]:
    out = {}
    for col in ds.attributes.columns:
        counts = ds.attributes[col].dropna().astype(str).value_counts()  # missing is not a value
        out[str(col)] = {str(k): int(v) for k, v in counts.head(MAX_VALUES_LISTED).items()}
    return out


def get(session: Session, owner_id: int, dataset_id: int) -> Dataset:
    return owned(session, Dataset, owner_id, dataset_id, "dataset")


def list_for(session: Session, owner_id: int) -> list[Dataset]:
    return owned_rows(session, Dataset, owner_id)


def rename(session: Session, owner_id: int, dataset_id: int, name: str) -> Dataset:
    row = get(session, owner_id, dataset_id)
    if not name.strip():  # refused, not trimmed: like every text field (check_text)
        raise DatasetError("the dataset name is blank: give it at least one visible character")
    row.name = check_text(name, "the dataset name")
    session.commit()
    return row


def delete_dataset(session: Session, settings: Settings, owner_id: int, dataset_id: int) -> None:
    """Remove the dataset, everything derived from it (models, audits, scores, evaluations) and its files."""

    # Locked first: a model or audit being created on it meanwhile either comes first (its job makes
    # this a 409) or waits and then finds no dataset (404); never both succeed.
    [row] = lock_datasets(session, owner_id, [dataset_id], exclusive=True)
    model_ids = list(session.scalars(select(TrainedModel.id).where(TrainedModel.dataset_id == dataset_id)))
    busy = list(session.scalars(select(Job.id).where(
        Job.status.in_(("queued", "running")),
        (Job.dataset_id == dataset_id) | Job.id.in_(
            select(Evaluation.job_id).where(Evaluation.model_id.in_(model_ids))) | Job.id.in_(
            select(Audit.job_id).where(Audit.model_id.in_(model_ids))) | Job.id.in_(
            select(Counterfactual.job_id).where(Counterfactual.model_id.in_(model_ids))))))
    if busy:
        raise Conflict(f"dataset {dataset_id} is in use by job(s) {', '.join(map(str, busy))}; "
                       f"cancel them or wait for them to finish")
    audit_ids = list(session.scalars(select(Audit.id).where(
        (Audit.dataset_id == dataset_id) | Audit.model_id.in_(model_ids))))
    # Explicit deletes: SQLite only cascades with its foreign-key pragma, and this says what goes.
    session.execute(delete(AuditReview).where(AuditReview.audit_id.in_(audit_ids)))
    session.execute(delete(AuditScore).where(AuditScore.audit_id.in_(audit_ids)))
    session.execute(delete(Audit).where(Audit.id.in_(audit_ids)))
    session.execute(delete(Evaluation).where((Evaluation.dataset_id == dataset_id)
                                             | Evaluation.model_id.in_(model_ids)))
    counterfactual_ids = list(session.scalars(select(Counterfactual.id).where(
        (Counterfactual.dataset_id == dataset_id) | Counterfactual.model_id.in_(model_ids))))
    # Tests elsewhere that reused a translator of these keep their results; translator_from goes null.
    session.execute(update(Counterfactual).where(Counterfactual.translator_from.in_(counterfactual_ids))
                    .values(translator_from=None))
    session.execute(delete(Counterfactual).where(Counterfactual.id.in_(counterfactual_ids)))
    session.execute(delete(TrainedModel).where(TrainedModel.id.in_(model_ids)))
    session.execute(delete(ModelSet).where(ModelSet.dataset_id == dataset_id))
    session.execute(delete(Sample).where(Sample.dataset_id == dataset_id))
    session.delete(row)
    session.commit()
    shutil.rmtree(dataset_dir(settings, dataset_id), ignore_errors=True)
    # With the staging folders a killed job may have left beside them.
    for path in [*(settings.path("models", m) for m in model_ids), *(settings.path("audits", a) for a in audit_ids),
                 *(settings.path("counterfactuals", c) for c in counterfactual_ids)]:
        remove_result(path)


# Memory-mapped images of recently viewed datasets: a page of thumbnails would otherwise reload
# (and re-validate) the whole dataset once per image. Keyed by creation time too, because SQLite
# may give a deleted dataset's id to the next upload.
_IMAGES: dict[tuple[str, int, str], np.ndarray] = {}
_IMAGES_KEPT = 16


def images(settings: Settings, row: Dataset) -> np.ndarray:
    key = (str(settings.data_dir.resolve()), row.id, row.created_at.isoformat())
    found = _IMAGES.get(key)
    if found is None:
        found = load(settings, row).images
        if len(_IMAGES) >= _IMAGES_KEPT:
            _IMAGES.pop(next(iter(_IMAGES)))
        _IMAGES[key] = found
    return found


def sample_png(settings: Settings, session: Session, owner_id: int, dataset_id: int, index: int) -> bytes:
    row = get(session, owner_id, dataset_id)
    if not 0 <= index < row.n_samples:
        raise NotFound(f"dataset {dataset_id} has no sample {index} (it has {row.n_samples})")
    buf = io.BytesIO()
    Image.fromarray(np.asarray(images(settings, row)[index])).save(buf, format="PNG")
    return buf.getvalue()
