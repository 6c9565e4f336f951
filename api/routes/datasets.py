from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from ..deps import CurrentOwner, SessionDep, SettingsDep
from ..multipart import receive_upload
from ..schemas import DatasetOut, DatasetUpdate
from ..services import datasets as service
from .params import PathId, SampleIndex
from .shapes import dataset_out

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
UPLOAD_FIELDS = frozenset({"name", "image_size", "positive"})


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file"], "properties": {
                     "file": {"type": "string", "format": "binary", "description": ".zip, .npz or .h5"},
                     "name": {"type": "string", "maxLength": 255},
                     "image_size": {"type": "integer", "default": 64, "minimum": 16, "maximum": 512,
                                    "multipleOf": 16},
                     "positive": {"type": "string", "maxLength": 255,
                                  "description": "positive class folder (class-folder zips)"}},
                     "additionalProperties": False}}},
                 "required": True}})
async def upload_dataset(request: Request, session: SessionDep, settings: SettingsDep, owner: CurrentOwner):
    """Upload a dataset (streamed to disk, size-limited), validate and decode it; 201 with what was found."""
    dest = service.upload_dir(settings)
    try:
        received = await receive_upload(request, dest, settings.max_upload_bytes, fields=UPLOAD_FIELDS,
                                        max_field_bytes=settings.max_form_field_bytes,
                                        max_parts=settings.max_form_parts)
        form = service.UploadForm.parse(received.filename, received.fields)
        # Decoding is CPU work: off the event loop.
        row = await run_in_threadpool(service.ingest, session, settings, owner.id, dest, form)
    finally:
        dest.unlink(missing_ok=True)
    return dataset_out(row)


@router.get("", response_model=list[DatasetOut])
def list_datasets(session: SessionDep, owner: CurrentOwner):
    return [dataset_out(d) for d in service.list_for(session, owner.id)]


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: PathId, session: SessionDep, owner: CurrentOwner):
    return dataset_out(service.get(session, owner.id, dataset_id))


@router.patch("/{dataset_id}", response_model=DatasetOut)
def rename_dataset(dataset_id: PathId, body: DatasetUpdate, session: SessionDep, owner: CurrentOwner):
    """Rename the dataset; nothing else about it changes."""
    return dataset_out(service.rename(session, owner.id, dataset_id, body.name))


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dataset(dataset_id: PathId, session: SessionDep, settings: SettingsDep, owner: CurrentOwner):
    """Delete the dataset with its files and everything derived from it (models, audits, evaluations)."""
    service.delete_dataset(session, settings, owner.id, dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{dataset_id}/samples/{index}/image", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def sample_image(dataset_id: PathId, index: SampleIndex, session: SessionDep, settings: SettingsDep, owner: CurrentOwner):
    png = service.sample_png(settings, session, owner.id, dataset_id, index)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
