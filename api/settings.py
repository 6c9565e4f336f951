"""Service settings: environment variables with the DEBIAS_ prefix (pydantic-settings)."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEBIAS_", env_file=".env", extra="ignore")

    data_dir: Path = Path("debias-data")
    # Empty: the embedded default, a SQLite file inside data_dir.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    embedded_worker: bool = True          # `debias serve` runs a job worker in-process
    create_local_key: bool = True         # first start with no owner: create one and print its key

    # Limits on untrusted input (README, "Limits"): each is checked before the bytes are read.
    max_upload_bytes: int = Field(2 << 30, ge=1)      # the uploaded file, as sent
    max_zip_entries: int = Field(200_000, ge=1)
    max_zip_bytes: int = Field(4 << 30, ge=1)         # a zip's entries, unpacked
    max_image_pixels: int = Field(4096 * 4096, ge=1)  # one image file (width x height)
    max_samples: int = Field(200_000, ge=2)           # images in one dataset
    max_decoded_bytes: int = Field(4 << 30, ge=1)     # declared array bytes of an .npz/.h5, and the decoded images
    max_expansion: float = Field(200.0, gt=1)         # declared bytes / stored bytes of one array or zip entry
    max_form_field_bytes: int = Field(4096, ge=64)    # each non-file part of an upload
    max_form_parts: int = Field(16, ge=2)             # parts in one upload
    max_job_memory: int = Field(8 << 30, ge=1 << 20)  # estimated peak memory of one job, in bytes
    default_image_size: int = 64

    heartbeat_seconds: float = 5.0
    stale_after_seconds: float = 60.0     # a running job whose heartbeat is older is requeued
    max_attempts: int = 3
    poll_seconds: float = 1.0
    device: str | None = None             # cpu, cuda, ...; None: cuda when present
    # Processes one training job trains in (DistributedDataParallel: gloo on the CPU, NCCL with a GPU each);
    # options it cannot serve (adversarial decoder, mix_groups, auto schedule) train in one.
    train_processes: int = Field(1, ge=1, le=64)

    page_limit_max: int = Field(500, ge=1)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'debias.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def path(self, *parts: str | int) -> Path:
        return self.data_dir.joinpath(*map(str, parts))
