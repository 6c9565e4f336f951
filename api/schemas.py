"""Pydantic request and response bodies (kept apart from the ORM tables)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from .services import MAX_ID
from .textrules import VISIBLE_TEXT


def _json_integer(value: object) -> object:
    # JSON Schema's integer: 1 and 1.0 are, "1" and true are not (pydantic's lax mode would take both).
    if isinstance(value, (str, bool)):
        raise ValueError("must be a JSON integer, not a string or boolean")
    return value


# JSON ids: integers inside the database's range (1.5 and 2^31 are refused; 1.0 is JSON's 1).
BodyId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_json_integer)]
MAX_SEED = 2**32 - 1  # numpy's and torch's seed range


# A short text naming an attribute: no NUL (PostgreSQL cannot store it), bounded length; as a pattern,
# so that the OpenAPI document says so too.
AttributeName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]

Density = Literal["histogram", "histogram-product", "gmm", "kde"]
Reweight = Literal["both", "positive"]
ErrorSchedule = Literal["constant", "geometric", "gated", "auto"]  # audit.training.ERROR_SCHEDULES, and auto
VAL_FRACTION, MAX_VAL_FRACTION = 0.1, 0.5  # audit.holdout's
# An auditor's decision on a sample (audit.reviews.DECISIONS); a filter on review state adds any and none.
Decision = Literal["reviewed", "keep", "exclude"]
ReviewState = Literal["reviewed", "keep", "exclude", "any", "none"]


class ORM(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RequestBody(BaseModel):
    """A request body: unknown fields, NaN and infinities are refused (422), never guessed at."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DatasetUpdate(RequestBody):
    # In the schema as well as in the service's check: a client generating requests from the schema must
    # not be able to build one that is refused (no control characters, at least one visible character).
    name: str = Field(min_length=1, max_length=255, pattern=VISIBLE_TEXT,
                      description="the dataset's new name: printable, at least one visible character")


class ErrorOut(BaseModel):
    """Every error the API returns (4xx and 5xx): one sentence naming the problem and the fix."""

    detail: str = Field(description="what was wrong and how to fix it")


class JobOut(ORM):
    id: int
    kind: str
    status: str
    progress: float = Field(description="percent done, 0 to 100")
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
    queue_position: int | None = Field(None, description="while queued: 1 when it is the next job a worker takes")


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


class TrainOptions(RequestBody):
    """How to train; the defaults are the 6.S191 lab's (Adam 5e-4, batch 32, latent 100)."""

    epochs: int = Field(6, ge=1, le=500)
    batch_size: int = Field(32, ge=2, le=4096)
    lr: float = Field(5e-4, gt=0, le=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    latent_dim: int = Field(100, ge=1, le=1024)
    kl_weight: float = Field(0.0005, ge=0, le=100)
    decoder: Literal["plain", "adversarial"] = Field("plain", description="adversarial: a second decoder, "
                                                     "trained against a patch discriminator, draws the audit's "
                                                     "pictures and generated images sharp; the rest of the model "
                                                     "trains as with plain")
    adversarial_weight: float = Field(0.05, gt=0, le=10, description="weight of the adversarial term in the "
                                      "picture decoder's loss (decoder adversarial)")
    reweight: Reweight = "both"
    strength: float = Field(1.0, ge=0, le=100)
    min_effective_fraction: float = Field(0.25, ge=0, le=1)
    error_upweight: float | None = Field(None, ge=0, le=1000, description="JTT's error set: after error_epoch "
                                         "epochs, draw misclassified samples (1 + this) times as often; 0 is off; "
                                         "left out: 50 for dbvae (2 epochs or more), 0 for standard")
    error_epoch: int = Field(1, ge=1, le=499, description="epochs before the error set is taken")
    error_steps: int | None = Field(None, ge=0, le=10**7, description="take the error set after this many steps "
                                    "of epoch error_epoch when it is longer; 0: at its end; left out: 150")
    error_schedule: ErrorSchedule | None = Field(None, description="constant: the error set drawn (1 + "
                                                 "error_upweight) times as often in every later epoch; geometric: "
                                                 "(1 + error_upweight)^k times in the k-th; gated (dbvae only): "
                                                 "geometric when the error set is a coherent subgroup of the "
                                                 "latent space, else constant; auto: constant and geometric "
                                                 "trained (~1.8x the time), the one with the better held-out "
                                                 "worst inferred group kept (needs val_fraction > 0); left out: "
                                                 "gated for dbvae, constant for standard")
    val_fraction: float = Field(VAL_FRACTION, ge=0, le=MAX_VAL_FRACTION,
                                description="share of each class held out of training (stratified, drawn from "
                                            "the seed) and measured after every epoch: val_* in the history")
    mix_groups: float | None = Field(None, ge=0, le=1, description="share of each batch mixed with a same-class "
                                     "sample from the other side of the error set (needs error_upweight > 0); "
                                     "left out: 0 (it lost on the Colored MNIST benchmark)")

    @model_validator(mode="after")
    def _error_epoch_before_the_end(self):
        if self.mix_groups and self.error_upweight == 0:
            raise ValueError("mix_groups mixes across the error set: set error_upweight > 0 too")
        if self.error_schedule == "auto" and (self.error_upweight == 0 or self.val_fraction == 0):
            raise ValueError("error_schedule auto chooses how the error set is upweighted on the held-out samples: "
                             "it needs error_upweight > 0 (or left out, for dbvae) and val_fraction > 0")
        if self.error_upweight and self.error_epoch >= self.epochs:
            raise ValueError(f"error_epoch ({self.error_epoch}) must be less than epochs ({self.epochs}): the "
                             f"error set is taken after it and used in the epochs that follow")
        return self


class ModelCreate(TrainOptions):
    method: Literal["standard", "dbvae"] = "dbvae"
    density: Density = "histogram"
    exclude_from_audit: BodyId | None = Field(None, description="an audit of this dataset: the samples its "
                                              "reviews mark exclude (as they are now) are left out of training")

    @model_validator(mode="after")
    def _adversarial_needs_a_decoder(self):
        if self.decoder == "adversarial" and self.method == "standard":
            raise ValueError("an adversarial decoder needs a decoder: use it with method dbvae")
        return self

    @model_validator(mode="after")
    def _gated_needs_a_latent_space(self):
        if self.error_schedule == "gated" and self.method == "standard" and self.error_upweight:
            raise ValueError("error_schedule gated decides from the DB-VAE's latent space: use it with method "
                             "dbvae, or constant or geometric with standard")
        return self

    @model_validator(mode="after")
    def _auto_needs_an_error_set(self):
        if self.error_schedule == "auto" and self.method == "standard" and not self.error_upweight:
            raise ValueError("error_schedule auto chooses how the error set is upweighted: a standard model has "
                             "none unless error_upweight > 0")
        return self


MAX_SET_SEEDS = 10
SetSeed = Annotated[int, Field(ge=0, le=2**31 - 1), BeforeValidator(_json_integer)]


class ModelSetCreate(ModelCreate):
    """The options of ModelCreate for every member, and one member per seed (`seed` itself is not taken)."""

    seed: SkipJsonSchema[int] = Field(0, ge=0, le=MAX_SEED)
    seeds: list[SetSeed] = Field(min_length=1, max_length=MAX_SET_SEEDS, json_schema_extra={"uniqueItems": True},
                                 description="one model is trained per seed; 1 to 10 distinct seeds")

    @model_validator(mode="after")
    def _seeds_distinct_and_no_seed(self):
        if "seed" in self.model_fields_set:
            raise ValueError("a model set takes seeds (a list), not seed; e.g. \"seeds\": [0, 1, 2]")
        repeated = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seeds repeats {', '.join(map(str, repeated))}; each seed trains one model, give "
                             f"each once")
        return self


class ModelOut(ORM):
    id: int
    dataset_id: int
    job_id: int | None
    model_set_id: int | None = None
    status: str
    method: str
    density: str | None
    image_size: int
    options: dict
    history: list[dict]
    created_at: datetime


class AuditCreate(RequestBody):
    model_id: BodyId | None = Field(None, description="a ready dbvae model; leave out to train one first")
    density: Density = "histogram"
    anomaly_threshold: float = Field(3.5, gt=0, le=1e6,
                                     description="robust z-score (median / MAD, per class) at or above which a "
                                                 "sample is flagged")
    anomaly_tail: float = Field(0.02, ge=0, lt=0.5,
                                description="also flag each class's least typical share (0: robust z only)")
    anomaly_on: Literal["both", "density", "reconstruction"] = "both"
    reweight: Reweight = "both"
    strength: float = Field(1.0, ge=0, le=100)
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
    subgroup: int | None = Field(None, description="the sample's discovered subgroup (report.subgroups[].id)")
    under_representation: float | None = Field(None, description="higher = more under-represented, in (0, 1]")
    attributes: dict
    image_url: str
    review: Decision | None = Field(None, description="the sample's review decision in this audit, if any")


class ScorePage(BaseModel):
    items: list[ScoreOut]
    next_cursor: str | None
    prev_cursor: str | None = None
    limit: int


# ------------------------------------------------------------------ review decisions (audit.reviews)
# Tags are short labels (no separators, so a CSV cell can join them with "; "); a note is free text without
# control characters other than tab and newlines.
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^\w[\w .:/+-]*$")]
Note = Annotated[str, Field(max_length=2000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]
BodyIndex = Annotated[int, Field(ge=0, le=2**31 - 1), BeforeValidator(_json_integer)]
MAX_REVIEW_INDICES = 50_000


class ReviewIn(RequestBody):
    """A decision on one sample: reviewed (seen, no verdict), keep, or exclude (left out of a retraining)."""

    decision: Decision
    tags: list[Tag] = Field(default_factory=list, max_length=16, json_schema_extra={"uniqueItems": True})
    note: Note = ""

    @model_validator(mode="after")
    def _distinct_tags(self):
        repeated = sorted({t for t in self.tags if self.tags.count(t) > 1})
        if repeated:
            raise ValueError(f"tags repeats {', '.join(repeated)}; give each tag once")
        return self


class ReviewSelection(RequestBody):
    """Which samples a bulk decision covers: every given criterion must hold (at least one is needed)."""

    indices: list[BodyIndex] | None = Field(None, min_length=1, max_length=MAX_REVIEW_INDICES,
                                            description="these sample indices (all must be in the audit)")
    subgroup: int | None = Field(None, ge=0, le=MAX_ID, description="one discovered subgroup's samples")
    label: int | None = Field(None, ge=0, le=1)
    attribute: list[Annotated[str, Field(max_length=2100, pattern=r"^[^:]+:")]] | None = Field(
        None, max_length=8, description="NAME:VALUE, each must hold")
    flagged_only: bool | None = Field(None, description="true: only the samples flagged as anomalies; false: "
                                      "only the others")
    min_anomaly_score: float | None = Field(None, ge=-1e6, le=1e6)
    min_under_representation: float | None = Field(None, ge=0, le=1)
    review: ReviewState | None = Field(None, description="only samples in this review state, e.g. none: not "
                                       "decided yet (so earlier decisions are kept)")


class ReviewBulk(ReviewIn):
    selection: ReviewSelection


class ReviewOut(BaseModel):
    index: int
    decision: Decision
    tags: list[str]
    note: str
    reviewed_by: str = Field(description="the owner whose API key recorded the decision")
    reviewed_at: datetime
    image_url: str


class ReviewPage(BaseModel):
    items: list[ReviewOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last")
    limit: int
    counts: dict[str, int] = Field(description="samples per decision in the whole audit")


class ReviewBulkResult(BaseModel):
    decision: Decision
    count: int = Field(description="samples the decision was recorded for")


class EvaluationCreate(RequestBody):
    dataset_id: BodyId
    group_by: list[AttributeName] = Field(default_factory=list, max_length=8)


class EvaluationOut(ORM):
    id: int
    model_id: int
    dataset_id: int
    job_id: int | None
    status: str
    group_by: list[str]
    metrics: dict | None
    created_at: datetime


class CounterfactualCreate(RequestBody):
    """A counterfactual test of the model on a dataset: its images of values[0] translated to values[1] and back
    by a CycleGAN, the decisions that flip counted per direction and class."""

    dataset_id: BodyId
    attribute: AttributeName = Field(description="the attribute to change, e.g. skin_tone")
    values: list[AttributeName] = Field(min_length=2, max_length=2, json_schema_extra={"uniqueItems": True},
                                        description="the two values translated into each other, e.g. [light, dark]")
    epochs: int = Field(8, ge=1, le=200, description="epochs to train the translator (ignored with translator_from)")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    translator_from: BodyId | None = Field(None, description="an earlier counterfactual test (ready, same attribute "
                                           "and values, same image size) whose translator to reuse instead of "
                                           "training one: models compared under the same translation")

    @model_validator(mode="after")
    def _two_different_values(self):
        if self.values[0] == self.values[1]:
            raise ValueError("values must be two different attribute values")
        return self


class CounterfactualOut(ORM):
    id: int
    model_id: int
    dataset_id: int
    job_id: int | None
    status: str
    attribute: str
    values: list[str]
    options: dict
    translator_from: int | None
    result: dict | None = Field(description="counterfactual.json (ARCHITECTURE.md) with pairs_png a URL; "
                                "null until ready")
    created_at: datetime


class Accepted(BaseModel):
    """202: the work runs as a job; poll job.url."""

    job: JobOut
    resource: dict


class ModelSetMember(BaseModel):
    model_id: int
    seed: int | None
    status: str
    job_id: int | None
    url: str


class ModelSetOut(BaseModel):
    id: int
    dataset_id: int
    method: str
    density: str | None
    seeds: list[int]
    status: str = Field(description="ready when every member is, failed (or cancelled) if any member is, "
                        "else pending")
    options: dict
    members: list[ModelSetMember]
    created_at: datetime


class ModelSetAccepted(BaseModel):
    """202: one training job per seed; poll the set's url (or each job's)."""

    jobs: list[JobOut]
    resource: dict
