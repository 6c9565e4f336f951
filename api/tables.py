"""ORM tables (SQLAlchemy 2.0 `Mapped`); the Pydantic schemas live apart in schemas.py.

Alembic migrations in migrations/ are the only way these tables are created.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, ForeignKeyConstraint, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
# Status of what a job produces (audit, model, evaluation): mirrors its job.
RESOURCE_STATUSES = ("pending", "ready", "failed", "cancelled")


class Owner(Base):
    __tablename__ = "owners"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)   # public part, for lookup
    key_hash: Mapped[str] = mapped_column(String(64))              # sha256 of the whole key
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    file_format: Mapped[str] = mapped_column(String(16))
    image_size: Mapped[int] = mapped_column(Integer)
    positive: Mapped[str | None] = mapped_column(String(255))
    n_samples: Mapped[int] = mapped_column(Integer)
    n_positive: Mapped[int] = mapped_column(Integer)
    n_negative: Mapped[int] = mapped_column(Integer)
    attributes: Mapped[dict] = mapped_column(JSON)      # name -> {value: count}
    problems: Mapped[list] = mapped_column(JSON)
    upload_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Sample(Base):
    __tablename__ = "samples"
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[int] = mapped_column(Integer)
    attributes: Mapped[dict] = mapped_column(JSON)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))                 # audit | train | evaluate | counterfactual
    status: Mapped[str] = mapped_column(String(16), default="queued")
    payload: Mapped[dict] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker_id: Mapped[str | None] = mapped_column(String(100))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    error: Mapped[str | None] = mapped_column(Text)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ModelSet(Base):
    """One model per training seed, trained with the same options (audit.modelset); members point here."""

    __tablename__ = "model_sets"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    seeds: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrainedModel(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    method: Mapped[str] = mapped_column(String(16))
    density: Mapped[str | None] = mapped_column(String(32))
    image_size: Mapped[int] = mapped_column(Integer)
    options: Mapped[dict] = mapped_column(JSON)
    history: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The model set it was trained for, one member per seed (migration 0004); null for a lone model.
    model_set_id: Mapped[int | None] = mapped_column(ForeignKey("model_sets.id", ondelete="SET NULL"), index=True)


class Audit(Base):
    __tablename__ = "audits"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    options: Mapped[dict] = mapped_column(JSON)
    report: Mapped[dict | None] = mapped_column(JSON)
    n_samples: Mapped[int | None] = mapped_column(Integer)
    n_anomalies: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditScore(Base):
    """One row per sample of an audit; attributes copied in so filters need no join.

    Lists are ordered (score DESC, sample_index DESC): one direction, so plain
    indexes serve them scanned backwards, keyset pagination included.
    """

    __tablename__ = "audit_scores"
    __table_args__ = (
        Index("ix_audit_scores_by_anomaly", "audit_id", "anomaly_score", "sample_index"),
        Index("ix_audit_scores_by_label_anomaly", "audit_id", "label", "anomaly_score", "sample_index"),
        Index("ix_audit_scores_by_weight", "audit_id", "sampling_weight", "sample_index"),
        Index("ix_audit_scores_by_under_representation", "audit_id", "under_representation", "sample_index"),
    )
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), primary_key=True)
    sample_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[int] = mapped_column(Integer)
    log_density: Mapped[float] = mapped_column(Float)
    sampling_weight: Mapped[float] = mapped_column(Float)
    anomaly_score: Mapped[float] = mapped_column(Float)
    is_anomaly: Mapped[bool] = mapped_column(Boolean)
    reconstruction_error: Mapped[float | None] = mapped_column(Float)
    predicted_probability: Mapped[float | None] = mapped_column(Float)
    attributes: Mapped[dict] = mapped_column(JSON)
    # Null for audits stored before discovery existed (migration 0002).
    subgroup: Mapped[int | None] = mapped_column(Integer)
    under_representation: Mapped[float | None] = mapped_column(Float)


class AuditReview(Base):
    """An auditor's decision on one sample of an audit (audit.reviews.DECISIONS), the latest one only.

    Who and when: the owner whose key made it, by id and by name as it was then (migration 0005).
    """

    __tablename__ = "audit_reviews"
    __table_args__ = (
        # A decision is about a sample the audit scored: it goes with the score (and so with the audit).
        ForeignKeyConstraint(["audit_id", "sample_index"], ["audit_scores.audit_id", "audit_scores.sample_index"],
                             ondelete="CASCADE"),
        Index("ix_audit_reviews_by_decision", "audit_id", "decision", "sample_index"),
    )
    audit_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id", ondelete="SET NULL"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Evaluation(Base):
    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    group_by: Mapped[list] = mapped_column(JSON)
    metrics: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EvaluationPrediction(Base):
    """One row per sample of an evaluation: what a paired comparison (McNemar) needs.

    Written in bulk with the evaluation; evaluations stored before migration 0003 have none.
    `group_key` is the engine's compact JSON of the sample's group (label x group_by).
    """

    __tablename__ = "evaluation_predictions"
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"), primary_key=True)
    sample_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[int] = mapped_column(Integer)
    prediction: Mapped[int] = mapped_column(Integer)
    probability: Mapped[float | None] = mapped_column(Float)
    group_key: Mapped[str] = mapped_column(Text)


class Counterfactual(Base):
    """A counterfactual test of a model (audit.counterfactual): its dataset's images of one attribute value
    translated to another and back, the decisions that flip (migration 0006).

    `translator_from`: the earlier test whose translator this one reuses (null: it trains its own).
    """

    __tablename__ = "counterfactuals"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attribute: Mapped[str] = mapped_column(String(255))
    values: Mapped[list] = mapped_column(JSON)
    options: Mapped[dict] = mapped_column(JSON)
    translator_from: Mapped[int | None] = mapped_column(ForeignKey("counterfactuals.id", ondelete="SET NULL"))
    result: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
