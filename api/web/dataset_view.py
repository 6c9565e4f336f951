"""The dataset page and the datasets list: what each job makes, per-class attribute charts, work per dataset."""
from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.subgroups import MISSING_VALUES

from ..tables import Audit, Job, Sample, TrainedModel
from . import charts

CLASSES = ((1, "positive"), (0, "negative"))


def _epochs(n) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def model_name(m: TrainedModel) -> str:
    """"DB-VAE model 3, histogram, 6 epochs": what a training job makes, in words."""
    if m.method == "dbvae":
        return f"DB-VAE model {m.id}, {m.density}, {_epochs(m.options.get('epochs'))}"
    return f"standard model {m.id}, {_epochs(m.options.get('epochs'))}"


def audit_name(a: Audit, model: TrainedModel | None, own: bool) -> str:
    density = a.options.get("density")
    if model is None:
        return f"audit {a.id}, {density}"
    if own:
        return f"audit {a.id}, {density}, training its own DB-VAE model {model.id} ({_epochs(model.options.get('epochs'))})"
    return f"audit {a.id}, {density}, with DB-VAE model {model.id}"


def audit_jobs(session: Session, models: list[TrainedModel]) -> dict[int, int]:
    """model id -> the audit whose job trained it (an audit left without a model_id trains its own)."""
    job_ids = [m.job_id for m in models if m.job_id is not None]
    if not job_ids:
        return {}
    rows = session.execute(select(Audit.id, Audit.job_id).where(Audit.job_id.in_(job_ids)))
    by_job = {r.job_id: r.id for r in rows}
    return {m.id: by_job[m.job_id] for m in models if m.job_id in by_job}


def work_lists(session: Session, audits: list[Audit], models: list[TrainedModel], job_of) -> dict:
    """The audits and models of a dataset, named by what they are and made by."""
    trained_by = audit_jobs(session, models)
    by_id = {m.id: m for m in models}
    model_rows = [{"row": m, "job": job_of(m.job_id), "name": model_name(m), "audit_id": trained_by.get(m.id)}
                  for m in models]
    audit_rows = []
    for a in audits:
        model = by_id.get(a.model_id)
        own = trained_by.get(a.model_id) == a.id
        audit_rows.append({"row": a, "job": job_of(a.job_id), "name": audit_name(a, model, own),
                           "model": model, "own_model": own})
    usable = [m for m in models if m.method == "dbvae" and m.status == "ready"]
    return {"audits": audit_rows, "models": model_rows, "audit_models": usable}


def class_attribute_counts(session: Session, dataset_id: int) -> dict[str, dict[str, Counter]]:
    """attribute -> class -> Counter of values; a missing value (null, "", "n/a") is not a value: not counted."""
    out: dict[str, dict[str, Counter]] = {}
    names = dict(CLASSES)
    for label, attrs in session.execute(select(Sample.label, Sample.attributes)
                                        .where(Sample.dataset_id == dataset_id)):
        for name, value in (attrs or {}).items():
            if value is not None and value not in MISSING_VALUES:
                out.setdefault(name, {}).setdefault(names.get(label, str(label)), Counter())[value] += 1
    return out


def attribute_charts(session: Session, dataset_id: int, class_sizes: dict[str, int],
                     limit: int = 20) -> list[dict]:
    """Per attribute, one bar chart per class that has values for it: counts with their share of the class."""
    out = []
    for name, per_class in class_attribute_counts(session, dataset_id).items():
        parts = []
        for _, cls in CLASSES:
            counts = per_class.get(cls)
            if not counts:
                parts.append({"class": cls, "chart": None, "values": []})
                continue
            total = class_sizes.get(cls) or sum(counts.values())
            items = counts.most_common(limit)
            missing = total - sum(counts.values())

            def share(c, total=total):
                return f"{c} · {100 * c / total:.0f}%"

            described = ", ".join(f"{v} {c} ({100 * c / total:.1f}%)" for v, c in items)
            chart = charts.bar_chart(items, f"attribute {name} in the {cls} class ({total} samples): {described}",
                                     value_format=share, colors=[charts.CLASS_COLORS[cls]])
            parts.append({"class": cls, "chart": chart, "values": items, "total": total, "missing": missing,
                          "more": max(len(counts) - limit, 0)})
        out.append({"name": name, "classes": parts})
    return out


def dataset_work(session: Session, owner_id: int) -> dict[int, dict]:
    """dataset id -> {"audits": {status: n}, "models": {status: n}, "running": n jobs queued or running}."""
    out: dict[int, dict] = {}

    def entry(ds_id: int) -> dict:
        return out.setdefault(ds_id, {"audits": Counter(), "models": Counter(), "running": 0})

    for table, key in ((Audit, "audits"), (TrainedModel, "models")):
        rows = session.execute(select(table.dataset_id, table.status, func.count())
                               .where(table.owner_id == owner_id).group_by(table.dataset_id, table.status))
        for ds_id, status, n in rows:
            entry(ds_id)[key][status] += n
    rows = session.execute(select(Job.dataset_id, func.count()).where(
        Job.owner_id == owner_id, Job.status.in_(("queued", "running")), Job.dataset_id.is_not(None))
        .group_by(Job.dataset_id))
    for ds_id, n in rows:
        entry(ds_id)["running"] = n
    return out
