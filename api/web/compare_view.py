"""The compare page: per-group accuracy of a model next to a baseline on one evaluation dataset, with the
default choices, the verdict's rows, the group bars and both models' curves."""
from __future__ import annotations

from sqlalchemy.orm import Session

from ..services import Conflict
from ..services import comparison as comparison_service
from ..services import datasets as dataset_service
from ..services import models as model_service
from ..tables import Dataset, TrainedModel
from . import charts
from .naming import group_name
from .views import job_view, model_label, training_curves


def short_model_label(m: TrainedModel, datasets: dict[int, Dataset]) -> str:
    """A model in a select: what tells two apart first (id, method), so a narrow select clips the least."""
    ds = datasets.get(m.dataset_id)
    method = f"{m.method} ({m.density})" if m.density else m.method
    epochs = m.options.get("epochs")
    return f"#{m.id} {method} · {ds.name if ds is not None else f'dataset {m.dataset_id}'} · {epochs} ep"


def _defaults(ready: list[TrainedModel], datasets: list[Dataset], model_id: int | None, baseline_id: int | None,
              dataset_id: int | None) -> tuple[int | None, int | None, int | None]:
    """Unchosen ids: the newest debiased model; the newest standard model trained on the same dataset as it
    (else the newest standard one); the newest dataset neither was trained on (else the newest)."""
    if model_id is None:
        model_id = next((m.id for m in ready if m.method == "dbvae"), None)
    model = next((m for m in ready if m.id == model_id), None)
    if baseline_id is None:
        standard = [m for m in ready if m.method == "standard" and m.id != model_id]
        same = [m for m in standard if model is not None and m.dataset_id == model.dataset_id]
        baseline_id = next((m.id for m in same + standard), None)
    if dataset_id is None and datasets:
        trained_on = {m.dataset_id for m in ready if m.id in (model_id, baseline_id)}
        dataset_id = next((d.id for d in datasets if d.id not in trained_on), datasets[0].id)
    return model_id, baseline_id, dataset_id


# (label, key in a compare summary, formatter, which way is better: +1 higher, -1 lower)
SUMMARY_ROWS = (("Overall accuracy", "overall_accuracy", "pct", 1),
                ("Worst group accuracy", "worst_group_accuracy", "pct", 1),
                ("Accuracy gap (best − worst group)", "accuracy_gap", "pct", -1),
                ("Accuracy ratio (worst / best group)", "accuracy_ratio", "fmt", 1),
                ("Accuracy variance across groups", "accuracy_variance", "fmt", -1))


def change(diff: float | None, better: int, ci: list | None = None, unit: str = "pts",
           scale: float = 100.0) -> dict:
    """A difference (model - baseline) worded for the "Change" column: its size, which way is better, the
    direction's class for the colour, and the interval; `better` is +1 when higher is better, -1 when lower."""
    if diff is None:
        return {"text": "–", "direction": "none", "word": "", "ci": None}
    value = diff * scale
    shown = f"{value:+.1f} {unit}" if unit else f"{value:+.3g}"
    if round(value, 1 if unit else 4) == 0:
        return {"text": shown, "direction": "same", "word": "no change", "ci": ci}
    good = (value > 0) == (better > 0)
    return {"text": shown, "direction": "better" if good else "worse", "word": "better" if good else "worse",
            "ci": [c * scale for c in ci] if ci else None}


def _summary_rows(result: dict) -> list[dict]:
    m, b = result["model"], result["baseline"]
    rows = []
    for label, key, kind, better in SUMMARY_ROWS:
        mv, bv = m.get(key), b.get(key)
        diff = mv - bv if mv is not None and bv is not None else None
        ci = result.get("worst_group_gain_ci") if key == "worst_group_accuracy" else None
        if key == "overall_accuracy":
            ci = result.get("paired", {}).get("overall", {}).get("difference_ci")
        pts = kind == "pct"
        rows.append({"label": label, "kind": kind, "baseline": bv, "model": mv,
                     "baseline_ci": b.get(f"{key}_ci"), "model_ci": m.get(f"{key}_ci"),
                     "change": change(diff, better, ci, "pts" if pts else "", 100.0 if pts else 1.0)})
    return rows


def _group_views(result: dict) -> list[dict]:
    worst_m, worst_b = result["model"]["worst_group"], result["baseline"]["worst_group"]
    out = []
    for g in result["groups"]:
        worst = [who for who, w in (("baseline", worst_b), ("model", worst_m)) if w == g["group"]]
        out.append({**g, "name": group_name(g["group"]), "worst": worst,
                    "change": change(g["difference"], 1, g.get("difference_ci")),
                    "fnr_change": change(_minus(g.get("fnr"), g.get("baseline_fnr")), -1),
                    "fpr_change": change(_minus(g.get("fpr"), g.get("baseline_fpr")), -1)})
    return out


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _group_bars(views: list[dict], series: list[tuple[str, str]], width: int) -> charts.Markup:
    rows = [(g["name"], [g["baseline_accuracy"], g["accuracy"]]) for g in views]
    notes = []
    for g in views:
        worst = {("baseline",): "worst of baseline", ("model",): "worst of model",
                 ("baseline", "model"): "worst of both"}.get(tuple(g["worst"]), "")
        notes.append(" · ".join(filter(None, [f"n={g['n']}", worst, "small group" if g.get("small") else ""])))
    return charts.grouped_bars(
        rows, series, "accuracy per group with 95% intervals, baseline and compared model: " + "; ".join(
            f"{g['name']} (n={g['n']}) {charts.pct(g['baseline_accuracy'])} vs {charts.pct(g['accuracy'])}"
            for g in views),
        intervals=[[g["baseline_accuracy_ci"], g["accuracy_ci"]] for g in views], notes=notes,
        marked=[i for i, g in enumerate(views) if g["worst"]], width=width)


def compare_page(session: Session, owner_id: int, model_id: int | None, baseline_id: int | None,
                 dataset_id: int | None, group_by: list[str] | None) -> dict:
    datasets = dataset_service.list_for(session, owner_id)
    by_id = {d.id: d for d in datasets}
    ready = [m for m in model_service.list_for(session, owner_id) if m.status == "ready"]
    # Ids named in the address must be the owner's (404 otherwise); missing ones get defaults.
    for m_id in (model_id, baseline_id):
        if m_id is not None:
            model_service.get(session, owner_id, m_id)
    if dataset_id is not None:
        dataset_service.get(session, owner_id, dataset_id)
    model_id, baseline_id, dataset_id = _defaults(ready, datasets, model_id, baseline_id, dataset_id)
    ctx: dict = {"datasets": datasets,
                 "models": [(m.id, short_model_label(m, by_id), model_label(m, by_id)) for m in ready],
                 "model_id": model_id, "baseline_id": baseline_id, "dataset_id": dataset_id, "group_by": group_by,
                 "warnings": []}
    dataset = by_id.get(dataset_id) if dataset_id is not None else None
    ctx["attributes"] = list(dataset.attributes) if dataset else []
    if model_id is None or baseline_id is None or dataset is None:
        return ctx
    model = model_service.get(session, owner_id, model_id)
    baseline = model_service.get(session, owner_id, baseline_id)
    ctx["warnings"] = comparison_service.trained_on_test_set(dataset.id, baseline, model)
    latest = {m.id: model_service.latest_evaluation(session, m.id, dataset.id) for m in (model, baseline)}
    if group_by is None:  # not chosen yet: what the latest evaluations used, if they agree
        used = {tuple(e.group_by) for e in latest.values() if e is not None}
        group_by = list(used.pop()) if len(used) == 1 else []
    group_by = [g for g in group_by if g in dataset.attributes]
    ctx["group_by"] = group_by
    pending, missing = [], []
    for m in (model, baseline):
        newest = model_service.latest_evaluation(session, m.id, dataset.id, ready_only=False)
        if newest is not None and newest.status == "pending":
            pending.append({"model": m, "job": job_view(session, owner_id, newest.job_id)})
        elif latest[m.id] is None or list(latest[m.id].group_by) != group_by:
            missing.append({"model": m, "failed": newest if newest is not None and newest.status == "failed"
                            else None,
                            "error": (job_view(session, owner_id, newest.job_id).error
                                      if newest is not None and newest.status == "failed" and newest.job_id
                                      else None)})
    ctx.update(model=model, baseline=baseline, dataset=dataset, pending=pending, missing=missing)
    if pending or missing:
        return ctx
    try:
        result = comparison_service.compare(session, owner_id, model.id, baseline.id, dataset.id)
    except Conflict as exc:  # e.g. evaluated before predictions were stored: offer to evaluate again
        ctx.update(missing=[{"model": m, "failed": None, "error": None} for m in (model, baseline)],
                   stale=str(exc))
        return ctx
    views = _group_views(result)
    series = [(f"baseline: model {baseline.id} ({baseline.method})", charts.BASELINE_COLOR),
              (f"model {model.id} ({model.method})", charts.MODEL_COLOR)]
    ctx.update(result=result, group_rows=views, series=series, summary_rows=_summary_rows(result),
               bars=_group_bars(views, series, charts.WIDTH), bars_wide=_group_bars(views, series, 2 * charts.WIDTH),
               warnings=result["warnings"],
               worst_model=group_name(result["model"]["worst_group"]),
               worst_baseline=group_name(result["baseline"]["worst_group"]),
               curves=training_curves([(f"baseline: model {baseline.id}", baseline),
                                       (f"model {model.id}", model)],
                                      colors=[charts.BASELINE_COLOR, charts.MODEL_COLOR]))
    return ctx
