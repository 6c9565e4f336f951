"""Training curves for the model and compare pages: only like overlaid with like.

A standard classifier's loss is its binary cross-entropy (BCE); a DB-VAE's `loss` is
BCE + 1[positive] * (reconstruction + kl_weight * KL). Comparing models, the curves
overlay BCE with BCE. A DB-VAE's loss parts differ by orders of magnitude (KL is
unweighted in the history): each gets its own chart and scale, its weight stated.
"""
from __future__ import annotations

from ..tables import TrainedModel
from . import charts
from .charts import fmt

# Training in the model colour, validation in the baseline's: two lines a reader tells apart at a glance.
VALIDATION_COLORS = [charts.MODEL_COLOR, charts.BASELINE_COLOR]
DEFAULT_KL_WEIGHT = 0.0005  # audit.models.ModelConfig's default, for models whose options leave it out


def _series(m: TrainedModel, key: str) -> list[tuple[float, float]]:
    return [(h["epoch"], h[key]) for h in m.history if h.get(key) is not None]


def bce_series(m: TrainedModel) -> list[tuple[float, float]]:
    """A model's classification loss per epoch; a standard model's `loss` is its BCE (older histories lack `bce`)."""
    pts = _series(m, "bce")
    return pts or (_series(m, "loss") if m.method == "standard" else [])


def _chart(title: str, series: list, y_label: str, y_format, bounds, colors=None) -> dict:
    series = [(name, pts) for name, pts in series if pts]
    if not series:
        return {"title": title, "has_points": False}
    described = "; ".join(f"{name} " + ", ".join(y_format(y) for _, y in pts) for name, pts in series)
    return {"title": title, "has_points": True,
            "chart": charts.line_chart(series, f"{title} per epoch: {described}", y_label=y_label,
                                       y_format=y_format, colors=colors, y_bounds=bounds)}


def training_curves(models: list[tuple[str, TrainedModel]], colors: list[str] | None = None) -> list[dict]:
    """Per epoch, one line per model: the loss (each model's own when alone, BCE for all when several) and
    the accuracy (an axis ending at 100%). Alone, a model's held-out validation figures (history's val_*)
    share a chart with the same training quantity; several models get a validation accuracy chart of their own."""
    out = []
    if len(models) == 1:
        name, m = models[0]
        what = "training loss" if m.method == "standard" else "training loss (total: BCE + reconstruction + KL)"
        out.append(_chart(what, [(name, _series(m, "loss"))], "loss", fmt, (0.0, None), colors))
        if _series(m, "val_bce"):
            out.append(_chart("classification loss (BCE), training vs held-out validation",
                              [("training", bce_series(m)), ("validation", _series(m, "val_bce"))],
                              "BCE", fmt, (0.0, None), VALIDATION_COLORS))
        acc = [("training", _series(m, "accuracy")), ("validation", _series(m, "val_accuracy"))]
        acc = [(who, pts) for who, pts in acc if pts]
        title = "accuracy, training vs held-out validation" if len(acc) == 2 else "training accuracy"
        out.append(_chart(title, acc, "accuracy", charts.pct, (0.0, 1.0), VALIDATION_COLORS if len(acc) == 2
                          else colors))
        return [c for c in out if c["has_points"]]
    out.append(_chart("classification loss (BCE)", [(name, bce_series(m)) for name, m in models], "loss", fmt,
                      (0.0, None), colors))
    out.append(_chart("training accuracy", [(name, _series(m, "accuracy")) for name, m in models], "accuracy",
                      charts.pct, (0.0, 1.0), colors))
    val = [(name, _series(m, "val_accuracy")) for name, m in models]
    if any(pts for _, pts in val):
        out.append(_chart("held-out validation accuracy", val, "accuracy", charts.pct, (0.0, 1.0), colors))
    return [c for c in out if c["has_points"]]


def loss_parts(m: TrainedModel) -> list[dict]:
    """A DB-VAE's loss parts, one chart each on its own scale, titled with the weight it carries in the total."""
    if m.method != "dbvae" or not m.history:
        return []
    kl_weight = m.options.get("kl_weight", DEFAULT_KL_WEIGHT)
    parts = (("bce", "classification (BCE)", "weight 1, all samples"),
             ("recon", "reconstruction (L1)", "weight 1, positives only"),
             ("kl", "KL divergence", f"weight {fmt(kl_weight)} (kl_weight), positives only"))
    out = []
    for key, title, weight in parts:
        pts = _series(m, key)
        if pts:
            chart = _chart(f"{title}, {weight}", [(title, pts)], key, fmt, (0.0, None), [charts.PALETTE[len(out)]])
            out.append({**chart, "name": title, "weight": weight})
    return out
