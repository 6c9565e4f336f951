"""What each kind of job does, in the worker: train, audit, evaluate, counterfactual.

Results are written to a folder of their own and published in one final
transaction together with the job's success, so a failed or cancelled job
leaves nothing half-written visible. `run` executes in the job's own process
(api.jobchild); `discard`, `sweep` and `mark_resources` in the worker.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from audit.checkpoint import latest_checkpoint
from audit.counterfactual import run_counterfactual
from audit.errors import DebiasError
from audit.models import ModelConfig
from audit.pipeline import audit_dataset, evaluate_model, train_model
from audit.report import AuditConfig
from audit.reviews import Exclusion
from audit.schedule_choice import has_started as schedule_runs_started
from audit.training import ERROR_STEPS, TrainConfig, default_error_options, one_process_only

from ..settings import Settings
from ..tables import Audit, AuditScore, Counterfactual, Dataset, Evaluation, EvaluationPrediction, Job, TrainedModel
from . import counterfactuals as counterfactual_service
from . import datasets as dataset_service
from .bulk import bulk_insert
from .jobs import JobLost, finish
from .leftovers import remove_debris, remove_result

SCORE_COLUMNS = ("audit_id", "sample_index", "label", "log_density", "sampling_weight", "anomaly_score",
                 "is_anomaly", "reconstruction_error", "predicted_probability", "subgroup", "under_representation",
                 "attributes")
PREDICTION_COLUMNS = ("evaluation_id", "sample_index", "label", "prediction", "probability", "group_key")


@dataclass
class JobContext:
    job: Job
    settings: Settings
    sessions: sessionmaker[Session]
    report: Callable[[float, str], None]   # progress 0-100 and a message, relayed to the worker

    @property
    def payload(self) -> dict:
        return self.job.payload


def model_dir(settings: Settings, model_id: int) -> Path:
    return settings.path("models", model_id)


def audit_dir(settings: Settings, audit_id: int) -> Path:
    return settings.path("audits", audit_id)


def _row(session: Session, table, row_id: int, what: str, job_id: int):
    """The row the job works on; a clear DebiasError if it was deleted meanwhile (never an AttributeError)."""
    row = session.get(table, row_id)
    if row is None:
        raise DebiasError(f"{what} {row_id} was deleted before job {job_id} could use it; nothing to do")
    return row


def _load_dataset(session: Session, ctx: JobContext, dataset_id: int):
    return dataset_service.load(ctx.settings, _row(session, Dataset, dataset_id, "dataset", ctx.job.id))


def _claimed_job(session: Session, ctx: JobContext) -> Job:
    """Our job row, locked for the final transaction; JobLost if another worker has it now."""
    job = session.scalar(select(Job).where(Job.id == ctx.job.id).with_for_update())
    if job is None or job.worker_id != ctx.job.worker_id or job.status != "running":
        raise JobLost(f"job {ctx.job.id} is no longer ours")
    return job


def stored_train_config(model: TrainedModel, device: str | None) -> TrainConfig:
    """How a stored model trains: its options, with what models stored before an option existed trained with."""
    opts = model.options
    return TrainConfig(epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"], seed=opts["seed"],
                       density=model.density or "histogram", reweight=opts["reweight"],
                       strength=opts["strength"], min_effective_fraction=opts["min_effective_fraction"],
                       error_epoch=opts.get("error_epoch", 1),
                       # Stored before val_fraction existed: trained on every sample.
                       val_fraction=opts.get("val_fraction", 0.0),
                       # Stored before error_steps existed: 0, as they trained; stored as None: the default.
                       error_steps=_or_default(opts.get("error_steps", 0), ERROR_STEPS),
                       **default_error_options(model.method, opts["epochs"], opts.get("error_upweight", 0.0),
                                               opts.get("mix_groups", 0.0), opts.get("error_epoch", 1),
                                               None if chooses_schedule(model) else _stored_schedule(model.method,
                                                                                                      opts)),
                       device=device)


def _train(ctx: JobContext, model: TrainedModel, ds, start: float, span: float) -> None:
    opts = model.options
    cfg = ModelConfig(method=model.method, image_size=model.image_size, latent_dim=opts["latent_dim"],
                      kl_weight=opts["kl_weight"],
                      # Models stored before these options take ModelConfig's defaults: a plain decoder.
                      **{k: opts[k] for k in ("decoder", "adversarial_weight") if k in opts})
    train_cfg = stored_train_config(model, ctx.settings.device)
    out = model_dir(ctx.settings, model.id)
    choose = chooses_schedule(model)
    # A retry after a lost worker continues from the last epoch it checkpointed (an auto run: in either run).
    resume = latest_checkpoint(out) is not None or (choose and schedule_runs_started(out))

    def on_step(epoch: int, step: int, steps: int, metrics: dict) -> None:
        done = metrics.get("fraction_done", (epoch - 1 + step / steps) / train_cfg.epochs)
        run = f" ({metrics['schedule_run']} schedule run)" if "schedule_run" in metrics else ""
        ctx.report(start + span * done, f"training {model.method}{run}: epoch {epoch}/{train_cfg.epochs}, "
                                        f"step {step}/{steps}, loss {metrics.get('loss', float('nan')):.4f}")

    if not resume and out.exists():
        shutil.rmtree(out)
    # Frozen when the job was queued (services.reviews.exclusion_for); the engine trains on the rest.
    exclude = (Exclusion.of(ctx.payload["exclude"], f"audit {opts.get('exclude_from_audit')}")
               if ctx.payload.get("exclude") else None)
    nproc = ctx.settings.train_processes
    if nproc > 1 and one_process_only(cfg, train_cfg, choose) is None:
        result = _train_in_processes(ctx, model, ds, cfg, train_cfg, out, resume, exclude, on_step, nproc)
    else:
        result = train_model(ds, out, cfg, train_cfg, resume=resume, progress=False, callback=on_step,
                             exclude=exclude, choose_schedule=choose)
    model.history = result.history


def _train_in_processes(ctx: JobContext, model: TrainedModel, ds, cfg: ModelConfig, train_cfg: TrainConfig,
                        out: Path, resume: bool, exclude: Exclusion | None, on_step, nproc: int):
    """DEBIAS_TRAIN_PROCESSES: this job's process is rank 0 (progress, result); api.trainrank runs the others."""
    import sys
    import tempfile
    from types import SimpleNamespace

    from audit import distributed

    from .. import trainrank

    with ctx.sessions() as session:
        row = _row(session, Dataset, model.dataset_id, "dataset", ctx.job.id)
        ds_row = SimpleNamespace(id=row.id, name=row.name, image_size=row.image_size, positive=row.positive)
    excluded = None if exclude is None else {"indices": exclude.indices.tolist(), "label": exclude.source}
    with tempfile.TemporaryDirectory(prefix="debias-ranks-") as tmp:
        spec = trainrank.write_spec(Path(tmp) / "spec.json", ctx.settings, ds_row, cfg, train_cfg, out, resume,
                                    excluded)
        return distributed.train_as_rank_zero(
            [sys.executable, "-m", "api.trainrank", str(spec)], nproc,
            lambda: train_model(ds, out, cfg, train_cfg, resume=resume, progress=False, callback=on_step,
                                exclude=exclude))


class TrainRunner:
    kind = "train"

    def run(self, ctx: JobContext) -> None:
        with ctx.sessions() as session:
            model = _row(session, TrainedModel, ctx.payload["model_id"], "model", ctx.job.id)
            ds = _load_dataset(session, ctx, model.dataset_id)
        ctx.report(1, "dataset loaded")
        _train(ctx, model, ds, 1, 98)
        with ctx.sessions() as session:
            job = _claimed_job(session, ctx)
            session.execute(update(TrainedModel).where(TrainedModel.id == model.id)
                            .values(status="ready", history=model.history))
            epochs = len(model.history)
            finish(session, job, "succeeded", f"trained {model.method} for {epochs} epoch{'' if epochs == 1 else 's'}")
            session.commit()

    def discard(self, settings: Settings, payload: dict) -> None:
        remove_result(model_dir(settings, payload["model_id"]))

    def sweep(self, settings: Settings, payload: dict) -> None:
        remove_debris(model_dir(settings, payload["model_id"]))

    def mark_resources(self, session: Session, job: Job, status: str) -> None:
        session.execute(update(TrainedModel).where(TrainedModel.id == job.payload["model_id"]).values(status=status))


def score_rows(audit_id: int, samples, attribute_records: list[dict]):
    """AuditScore rows in SCORE_COLUMNS order from an audit's samples frame (samples.csv's columns)."""
    columns = [samples[c].tolist() for c in ("index", "label", "log_density", "sampling_weight", "anomaly_score",
                                             "is_anomaly", "reconstruction_error", "predicted_probability",
                                             "subgroup", "under_representation")]
    return ((audit_id, *values, rec) for *values, rec in zip(*columns, attribute_records))


class AuditRunner:
    kind = "audit"

    def run(self, ctx: JobContext) -> None:
        with ctx.sessions() as session:
            audit = _row(session, Audit, ctx.payload["audit_id"], "audit", ctx.job.id)
            model = _row(session, TrainedModel, audit.model_id, "model", ctx.job.id)
            ds = _load_dataset(session, ctx, audit.dataset_id)
        ctx.report(1, "dataset loaded")
        trains = ctx.payload.get("train_model", False)
        if trains:
            _train(ctx, model, ds, 1, 79)
        ctx.report(80, "auditing the latent space")
        opts = audit.options
        cfg = AuditConfig(density=opts["density"], reweight=opts["reweight"], strength=opts["strength"],
                          min_effective_fraction=opts["min_effective_fraction"], anomaly_on=opts["anomaly_on"],
                          anomaly_threshold=opts["anomaly_threshold"], top_features=opts["top_features"],
                          anomaly_tail=opts.get("anomaly_tail", 0.0))   # audits queued before the tail rule: none
        result = audit_dataset(ds, model_dir(ctx.settings, model.id), audit_dir(ctx.settings, audit.id), cfg,
                               device=ctx.settings.device)
        ctx.report(92, f"storing {len(ds)} per-sample scores")
        s = result.samples
        rows = score_rows(audit.id, s, dataset_service.attribute_records(ds))
        with ctx.sessions() as session:
            job = _claimed_job(session, ctx)
            bulk_insert(session, AuditScore.__table__, SCORE_COLUMNS, rows)
            session.execute(update(Audit).where(Audit.id == audit.id).values(
                status="ready", report=result.report, n_samples=len(s),
                n_anomalies=int(result.report["anomalies"]["count"])))
            if trains:
                session.execute(update(TrainedModel).where(TrainedModel.id == model.id)
                                .values(status="ready", history=model.history))
            finish(session, job, "succeeded", f"audited {len(s)} samples, "
                                              f"{result.report['anomalies']['count']} anomalies")
            session.commit()

    def discard(self, settings: Settings, payload: dict) -> None:
        remove_result(audit_dir(settings, payload["audit_id"]))
        if payload.get("train_model"):
            remove_result(model_dir(settings, payload["model_id"]))

    def sweep(self, settings: Settings, payload: dict) -> None:
        remove_debris(audit_dir(settings, payload["audit_id"]))
        if payload.get("train_model"):
            remove_debris(model_dir(settings, payload["model_id"]))

    def mark_resources(self, session: Session, job: Job, status: str) -> None:
        session.execute(update(Audit).where(Audit.id == job.payload["audit_id"]).values(status=status))
        if job.payload.get("train_model"):
            session.execute(update(TrainedModel).where(TrainedModel.id == job.payload["model_id"])
                            .values(status=status))


class EvaluateRunner:
    kind = "evaluate"

    def run(self, ctx: JobContext) -> None:
        with ctx.sessions() as session:
            ev = _row(session, Evaluation, ctx.payload["evaluation_id"], "evaluation", ctx.job.id)
            ds = _load_dataset(session, ctx, ev.dataset_id)
        ctx.report(10, "evaluating")
        metrics = evaluate_model(model_dir(ctx.settings, ev.model_id), ds, ev.group_by, device=ctx.settings.device)
        metrics["model"].pop("path", None)  # a server path is nobody's business
        # Per-sample predictions (a frame) go to their own table, in bulk, not into the JSON column:
        # compare pairs two evaluations sample by sample from them.
        frame = metrics.pop("predictions")
        metrics["dataset"] = ev.dataset_id
        ctx.report(90, f"storing {len(frame)} per-sample predictions")
        probability = [None if p != p else p for p in frame["probability"].astype(float).tolist()]  # NaN -> NULL
        rows = zip([ev.id] * len(frame), frame["index"].tolist(), frame["label"].tolist(),
                   frame["prediction"].tolist(), probability, frame["group"].tolist())
        with ctx.sessions() as session:
            job = _claimed_job(session, ctx)
            bulk_insert(session, EvaluationPrediction.__table__, PREDICTION_COLUMNS, rows)
            session.execute(update(Evaluation).where(Evaluation.id == ev.id).values(status="ready", metrics=metrics))
            finish(session, job, "succeeded", f"worst group accuracy {metrics['worst_group_accuracy']:.3f}")
            session.commit()

    def discard(self, settings: Settings, payload: dict) -> None:
        pass  # nothing on disk

    def sweep(self, settings: Settings, payload: dict) -> None:
        pass

    def mark_resources(self, session: Session, job: Job, status: str) -> None:
        session.execute(update(Evaluation).where(Evaluation.id == job.payload["evaluation_id"]).values(status=status))


class CounterfactualRunner:
    kind = "counterfactual"

    def run(self, ctx: JobContext) -> None:
        with ctx.sessions() as session:
            row = _row(session, Counterfactual, ctx.payload["counterfactual_id"], "counterfactual", ctx.job.id)
            ds = _load_dataset(session, ctx, row.dataset_id)
            translator = counterfactual_service.translator_dir(ctx.settings, row)
        if translator is not None and not translator.is_dir():
            raise DebiasError(f"the translator of counterfactual {row.options['translator_from']} is gone (its "
                              f"dataset was deleted); start the test again with another translator_from or none")
        ctx.report(1, "dataset loaded")
        result = run_counterfactual(model_dir(ctx.settings, row.model_id), ds, row.attribute, tuple(row.values),
                                    counterfactual_service.counterfactual_dir(ctx.settings, row.id),
                                    translator_dir=translator, epochs=row.options["epochs"],
                                    seed=row.options["seed"], device=ctx.settings.device,
                                    callback=lambda fraction, message: ctx.report(1 + 98 * fraction, message))
        # Server paths are nobody's business; the ids say where the model and the translator are.
        result["model"].pop("path", None)
        result["translator"].pop("path", None)
        flips = ", ".join(f"{d['from']}->{d['to']} {d['classes'][0]['flip_rate']:.1%}" for d in result["directions"])
        with ctx.sessions() as session:
            job = _claimed_job(session, ctx)
            session.execute(update(Counterfactual).where(Counterfactual.id == row.id)
                            .values(status="ready", result=result))
            finish(session, job, "succeeded", f"decisions flipped: {flips}"
                                              + ("" if result["reliable"] else " (unreliable translation)"))
            session.commit()

    def discard(self, settings: Settings, payload: dict) -> None:
        remove_result(counterfactual_service.counterfactual_dir(settings, payload["counterfactual_id"]))

    def sweep(self, settings: Settings, payload: dict) -> None:
        remove_debris(counterfactual_service.counterfactual_dir(settings, payload["counterfactual_id"]))

    def mark_resources(self, session: Session, job: Job, status: str) -> None:
        session.execute(update(Counterfactual).where(Counterfactual.id == job.payload["counterfactual_id"])
                        .values(status=status))


RUNNERS = {r.kind: r for r in (TrainRunner(), AuditRunner(), EvaluateRunner(), CounterfactualRunner())}


def chooses_schedule(model: TrainedModel) -> bool:
    """error_schedule auto: both schedules trained, one kept (audit/schedule_choice.py)."""
    return model.options.get("error_schedule") == "auto"


def _stored_schedule(method: str, opts: dict) -> str | None:
    """The error schedule a stored model trains with; None: the default."""
    if "error_schedule" in opts:
        return opts["error_schedule"]
    # Stored before the option existed: as they trained. The standard classifier's upweight compounded
    # every epoch (what "geometric" now names); the DB-VAE's stayed constant.
    return "geometric" if method == "standard" else "constant"


def _or_default(value, default):
    return default if value is None else value
