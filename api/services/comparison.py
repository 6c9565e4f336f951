"""Two models' evaluations on one test set, paired sample by sample (audit.comparison).

The evaluations' metrics come from their JSON column, their per-sample predictions
from `evaluation_predictions`; the engine pairs them (McNemar, paired bootstrap) and
words the verdict. Evaluations stored before predictions were kept cannot be paired:
the answer says to evaluate again.
"""
from __future__ import annotations

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.comparison import paired_comparison
from audit.errors import DebiasError

from ..tables import Evaluation, EvaluationPrediction, TrainedModel
from . import Conflict
from . import datasets as dataset_service
from .models import get, get_evaluation, latest_evaluation

# Per-evaluation keys copied into each side's summary (intervals, error rates, warnings).
SUMMARY_KEYS = ("worst_group", "worst_group_accuracy", "worst_group_accuracy_ci", "accuracy_variance",
                "accuracy_gap", "accuracy_gap_ci", "accuracy_ratio", "accuracy_ratio_ci", "small_groups", "warnings")
GROUP_KEYS = ("accuracy", "accuracy_ci", "fnr", "fnr_ci", "fpr", "fpr_ci", "n_positive", "n_negative")


def model_name(m: TrainedModel) -> str:
    """How the verdict sentence names a model: its id and method, e.g. "model 7 (dbvae)"."""
    return f"model {m.id} ({m.method})"


def predictions(session: Session, ev: Evaluation) -> pd.DataFrame:
    """The evaluation's per-sample predictions as the engine's frame; Conflict if it has none (older evaluation)."""
    rows = session.execute(select(EvaluationPrediction.sample_index, EvaluationPrediction.label,
                                  EvaluationPrediction.prediction, EvaluationPrediction.probability,
                                  EvaluationPrediction.group_key)
                           .where(EvaluationPrediction.evaluation_id == ev.id)
                           .order_by(EvaluationPrediction.sample_index)).all()
    n = (ev.metrics or {}).get("dataset_fingerprint", {}).get("n")
    if not rows or n is None or len(rows) != n:
        raise Conflict(f"evaluation {ev.id} of model {ev.model_id} was made before per-sample predictions were "
                       f"stored, so it cannot be paired; evaluate again (POST /v1/models/{ev.model_id}/evaluations "
                       f"with dataset_id {ev.dataset_id}) and compare the new evaluation")
    frame = pd.DataFrame(rows, columns=["index", "label", "prediction", "probability", "group"])
    frame["probability"] = frame["probability"].astype(float)
    return frame


def _pick(session: Session, owner_id: int, m: TrainedModel, dataset_id: int | None,
          evaluation_id: int | None) -> Evaluation:
    if evaluation_id is not None:
        ev = get_evaluation(session, owner_id, evaluation_id)
        if ev.model_id != m.id:
            raise DebiasError(f"evaluation {ev.id} is of model {ev.model_id}, not of model {m.id}")
        if ev.status != "ready":
            raise Conflict(f"evaluation {ev.id} is {ev.status}, not ready; wait for its job {ev.job_id}")
        return ev
    ev = latest_evaluation(session, m.id, dataset_id)
    if ev is None:
        raise Conflict(f"model {m.id} has no finished evaluation on dataset {dataset_id}; "
                       f"POST /v1/models/{m.id}/evaluations first")
    return ev


def compare(session: Session, owner_id: int, model_id: int, baseline_id: int, dataset_id: int | None = None,
            evaluation_id: int | None = None, baseline_evaluation_id: int | None = None) -> dict:
    """`model_id` against `baseline_id` (differences are model - baseline), paired on one test set.

    The evaluations are the latest of each model on `dataset_id`, or the ones named.
    """
    model, baseline = get(session, owner_id, model_id), get(session, owner_id, baseline_id)
    if dataset_id is not None:
        dataset_service.get(session, owner_id, dataset_id)
    elif evaluation_id is None or baseline_evaluation_id is None:
        raise DebiasError("name the test set: dataset=ID (the latest evaluations of both models on it), or "
                          "evaluation=ID and baseline_evaluation=ID")
    ev = _pick(session, owner_id, model, dataset_id, evaluation_id)
    base_ev = _pick(session, owner_id, baseline, dataset_id, baseline_evaluation_id)
    if ev.dataset_id != base_ev.dataset_id:
        raise DebiasError(f"evaluation {ev.id} is on dataset {ev.dataset_id} but evaluation {base_ev.id} on dataset "
                          f"{base_ev.dataset_id}: only evaluations of the same test set can be paired; evaluate "
                          f"both models on one dataset")
    if dataset_id is not None and ev.dataset_id != dataset_id:
        raise DebiasError(f"evaluation {ev.id} is on dataset {ev.dataset_id}, not on dataset {dataset_id}")
    a, b = base_ev.metrics, ev.metrics
    if a["group_by"] != b["group_by"]:
        raise Conflict(f"the evaluations group by different attributes ({a['group_by']} vs {b['group_by']}); "
                       "evaluate both with the same group_by")
    paired = paired_comparison({**a, "predictions": predictions(session, base_ev)},
                               {**b, "predictions": predictions(session, ev)},
                               names=(model_name(baseline), model_name(model)))
    key = lambda g: tuple(sorted(g["group"].items()))  # noqa: E731
    mine, theirs, pairs = ({key(g): g for g in m["groups"]} for m in (b, a, paired))
    groups = []
    for k, p in pairs.items():
        g, o = mine.get(k, {}), theirs.get(k, {})
        groups.append({"group": p["group"], "n": p["n"], **{f: g.get(f) for f in GROUP_KEYS},
                       **{f"baseline_{f}": o.get(f) for f in GROUP_KEYS},
                       "difference": p["difference"], "difference_ci": p["difference_ci"],
                       "only_model_right": p["only_b_right"], "only_baseline_right": p["only_a_right"],
                       "mcnemar_p": p["mcnemar_p"], "small": p["small"]})

    def summary(m: TrainedModel, metrics: dict, e: Evaluation) -> dict:
        return {"model_id": m.id, "method": m.method, "density": m.density, "name": model_name(m),
                "dataset_id": m.dataset_id, "evaluation_id": e.id,
                "overall_accuracy": metrics["overall"]["accuracy"],
                "overall_accuracy_ci": metrics["overall"].get("accuracy_ci"),
                **{k: metrics.get(k) for k in SUMMARY_KEYS}, "history": m.history}

    return {"dataset_id": ev.dataset_id, "group_by": b["group_by"], "model": summary(model, b, ev),
            "baseline": summary(baseline, a, base_ev), "groups": groups,
            "worst_group_gain": b["worst_group_accuracy"] - a["worst_group_accuracy"],
            "worst_group_gain_ci": paired["worst_group"]["change_ci"],
            "sentence": paired["sentence"], "significant": paired["significant"],
            "warnings": trained_on_test_set(ev.dataset_id, model, baseline) + paired["warnings"],
            "paired": paired}


def trained_on_test_set(dataset_id: int, *models: TrainedModel) -> list[str]:
    """A warning per model trained on the test set: its accuracy there is memory, not generalisation."""
    return [f"{model_name(m)} was trained on dataset {dataset_id}, the test set: accuracy on the images a model "
            f"learned from overstates (often to 100%) how it does on new ones; compare on a held-out test set"
            for m in models if m.dataset_id == dataset_id]
