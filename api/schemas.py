"""Pydantic request and response bodies (kept apart from the ORM tables)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Density = Literal["histogram", "histogram-product", "gmm", "kde"]
Reweight = Literal["both", "positive"]


class ORM(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    detail: str


class JobOut(ORM):
    id: int
    kind: str
    status: str
    progress: float
    message: str
    attempts: int
    max_attempts: int
    worker_id: str | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str = ""


class DatasetOut(ORM):
    id: int
    name: str
    file_format: str
    image_size: int
    n_samples: int
    counts: dict[str, int]
    attributes: dict[str, dict[str, int]]
    problems: list[str]
    upload_bytes: int
    created_at: datetime


class TrainOptions(BaseModel):
    """How to train; the defaults are the 6.S191 lab's (Adam 5e-4, batch 32, latent 100)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(6, ge=1, le=500)
    batch_size: int = Field(32, ge=2, le=4096)
    lr: float = Field(5e-4, gt=0, le=1)
    seed: int = 0
    latent_dim: int = Field(100, ge=1, le=1024)
    kl_weight: float = Field(0.0005, ge=0)
    reweight: Reweight = "both"
    strength: float = Field(1.0, ge=0)
    min_effective_fraction: float = Field(0.25, ge=0, le=1)


class ModelCreate(TrainOptions):
    method: Literal["standard", "dbvae"] = "dbvae"
    density: Density = "histogram"


class ModelOut(ORM):
    id: int
    dataset_id: int
    job_id: int | None
    status: str
    method: str
    density: str | None
    image_size: int
    options: dict
    history: list[dict]
    created_at: datetime


class AuditCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_id: int | None = Field(None, description="a ready dbvae model; leave out to train one first")
    density: Density = "histogram"
    anomaly_threshold: float = Field(3.5, gt=0, description="robust z-score above which a sample is flagged")
    anomaly_on: Literal["both", "density", "reconstruction"] = "both"
    reweight: Reweight = "both"
    strength: float = Field(1.0, ge=0)
    min_effective_fraction: float = Field(0.25, ge=0, le=1)
    top_features: int = Field(5, ge=1, le=50)
    training: TrainOptions = Field(default_factory=TrainOptions,
                                   description="used only when model_id is left out")


class AuditOut(ORM):
    id: int
    dataset_id: int
    model_id: int
    job_id: int | None
    status: str
    options: dict
    n_samples: int | None
    n_anomalies: int | None
    created_at: datetime
    report: dict | None = None


class ScoreOut(BaseModel):
    index: int
    label: int
    log_density: float
    sampling_weight: float
    anomaly_score: float
    is_anomaly: bool
    reconstruction_error: float | None
    predicted_probability: float | None
    attributes: dict
    image_url: str


class ScorePage(BaseModel):
    items: list[ScoreOut]
    next_cursor: str | None
    prev_cursor: str | None = None
    limit: int


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: int
    group_by: list[str] = Field(default_factory=list)


class EvaluationOut(ORM):
    id: int
    model_id: int
    dataset_id: int
    job_id: int | None
    status: str
    group_by: list[str]
    metrics: dict | None
    created_at: datetime


class Accepted(BaseModel):
    """202: the work runs as a job; poll job.url."""

    job: JobOut
    resource: dict
