from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from ..deps import CurrentOwner, SessionDep, SettingsDep
from ..multipart import UploadError, receive_upload
from ..schemas import DatasetOut
from ..services import datasets as service
from .shapes import dataset_out

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file"], "properties": {
                     "file": {"type": "string", "format": "binary", "description": ".zip, .npz or .h5"},
                     "name": {"type": "string"},
                     "image_size": {"type": "integer", "default": 64},
                     "positive": {"type": "string", "description": "positive class folder (class-folder zips)"}}}}},
                 "required": True}})
async def upload_dataset(request: Request, session: SessionDep, settings: SettingsDep, owner: CurrentOwner):
    """Upload a dataset (streamed to disk, size-limited), validate and decode it; 201 with what was found."""
    dest = service.upload_dir(settings)
    try:
        received = await receive_upload(request, dest, settings.max_upload_bytes)
        service.check_filename(received.filename)
        size_field = received.fields.get("image_size", "").strip()
        if size_field and not size_field.isdigit():
            raise UploadError(f"image_size must be a whole number, got {size_field!r}", 422)
        # Decoding is CPU work: off the event loop.
        row = await run_in_threadpool(service.ingest, session, settings, owner.id, dest, received.filename,
                                      int(size_field) if size_field else None,
                                      received.fields.get("positive") or None, received.fields.get("name"))
    finally:
        dest.unlink(missing_ok=True)
    return dataset_out(row)


@router.get("", response_model=list[DatasetOut])
def list_datasets(session: SessionDep, owner: CurrentOwner):
    return [dataset_out(d) for d in service.list_for(session, owner.id)]


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: int, session: SessionDep, owner: CurrentOwner):
    return dataset_out(service.get(session, owner.id, dataset_id))


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dataset(dataset_id: int, session: SessionDep, settings: SettingsDep, owner: CurrentOwner):
    """Delete the dataset with its files and everything derived from it (models, audits, evaluations)."""
    service.delete_dataset(session, settings, owner.id, dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{dataset_id}/samples/{index}/image", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def sample_image(dataset_id: int, index: int, session: SessionDep, settings: SettingsDep, owner: CurrentOwner):
    png = service.sample_png(settings, session, owner.id, dataset_id, index)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
