"""The model page's pieces: the options its method uses, evaluation results per group, the per-epoch table."""
from __future__ import annotations

from urllib.parse import urlencode

from audit.training import default_error_options

from ..schemas import ModelCreate
from ..tables import Evaluation, TrainedModel
from .charts import fmt, pct
from .naming import group_name

# Options that only shape the DB-VAE (its latent space and density weighting): a standard model ignores them.
DBVAE_ONLY = ("latent_dim", "kl_weight", "density", "reweight", "strength", "min_effective_fraction", "decoder",
              "adversarial_weight")
# Options of the error set, which is off when error_upweight is 0.
ERROR_SET_ONLY = ("error_epoch", "error_steps", "error_schedule", "mix_groups")


def error_set_on(model: TrainedModel) -> bool:
    """Whether the model trained with an error set: its upweight, or the engine's default where left out."""
    opts = model.options
    chosen = default_error_options(model.method, opts.get("epochs", 0), opts.get("error_upweight"),
                                   error_epoch=opts.get("error_epoch", 1))
    return chosen["error_upweight"] > 0


def shown_options(model: TrainedModel) -> list[tuple[str, str]]:
    """(name, value in words) of the options this model's training used; left-out ones say "default"."""
    skip = set(DBVAE_ONLY if model.method != "dbvae" else ()) | set(ERROR_SET_ONLY if not error_set_on(model)
                                                                     else ())
    out = []
    for k, v in model.options.items():
        if k in skip or k == "method":
            continue
        if k == "error_upweight" and not error_set_on(model):
            out.append((k, "0 (no error set)"))
        elif k == "val_fraction" and not v:
            out.append((k, "0 (trained on every sample, nothing held out)"))
        elif k == "error_schedule" and ran_schedule(model):
            # gated (the default) decides when the error set is taken: say which schedule ran.
            out.append((k, f"{'default' if v is None else v} (ran {ran_schedule(model)})"))
        else:
            out.append((k, "default" if v is None else str(v)))
    if "val_fraction" not in model.options:
        out.append(("val_fraction", "0 (trained before validation splits: nothing held out)"))
    return out


def ran_schedule(model: TrainedModel) -> str | None:
    """The error schedule the last epoch trained with (a gated run's choice), from the history; None before."""
    last = (model.history or [{}])[-1]
    return last.get("error_schedule")


def retrain_fields(model: TrainedModel) -> list[tuple[str, object, str]]:
    """(name, value, type) of the model's training options a new training job takes: "retrain without
    excluded" trains the same way, leaving out an audit's excluded samples."""
    taken = set(ModelCreate.model_fields) - {"exclude_from_audit"}
    return [(k, v, "number" if isinstance(v, (int, float)) else "string") for k, v in model.options.items()
            if k in taken and v is not None and not isinstance(v, bool)]


def _interval(ci) -> str:
    return f" ({pct(ci[0])}–{pct(ci[1])})" if ci and ci[0] is not None and ci[1] is not None else ""


def evaluation_view(model: TrainedModel, e: Evaluation) -> dict:
    """An evaluation row's results: per group accuracy, FNR and FPR with their intervals, and where to compare."""
    metrics = e.metrics or {}
    groups = [{"name": group_name(g["group"]), "n": g["n"],
               "accuracy": pct(g["accuracy"]) + _interval(g.get("accuracy_ci")),
               "fnr": pct(g.get("fnr")) + _interval(g.get("fnr_ci")),
               "fpr": pct(g.get("fpr")) + _interval(g.get("fpr_ci"))}
              for g in metrics.get("groups", [])]
    side = "model" if model.method == "dbvae" else "baseline"
    query = [(side, model.id), ("dataset", e.dataset_id), ("chosen", 1)] + [("group_by", g) for g in e.group_by]
    return {"groups": groups, "compare_url": "/compare?" + urlencode(query), "json_url": f"/v1/evaluations/{e.id}"}


def epoch_rows(model: TrainedModel) -> tuple[bool, list[dict]]:
    """(whether any epoch has validation figures, one row per epoch for the per-epoch table)."""
    has_val = any("val_accuracy" in h for h in model.history)
    rows = [{"epoch": h["epoch"], "loss": fmt(h.get("loss")), "accuracy": pct(h.get("accuracy")),
             "val_bce": fmt(h.get("val_bce")), "val_accuracy": pct(h.get("val_accuracy")),
             "val_error_set_accuracy": pct(h.get("val_error_set_accuracy")),
             "seconds": fmt(h.get("seconds")), "samples_per_second": fmt(h.get("samples_per_second"))}
            for h in model.history]
    return has_val, rows
