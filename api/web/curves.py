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

DEFAULT_KL_WEIGHT = 0.0005  # audit.models.ModelConfig's default, for models whose options leave it out


def _series(m: TrainedModel, key: str) -> list[tuple[float, float]]:
    return [(h["epoch"], h[key]) for h in m.history if h.get(key) is not None]


def bce_series(m: TrainedModel) -> list[tuple[float, float]]:
    """A model's classification loss per epoch; a standard model's `loss` is its BCE (older histories lack `bce`)."""
    pts = _series(m, "bce")
    return pts or (_series(m, "loss") if m.method == "standard" else [])


def _chart(title: str, series: list, y_label: str, y_format, bounds, colors=None) -> dict:
    described = "; ".join(f"{name} " + ", ".join(y_format(y) for _, y in pts) for name, pts in series)
    return {"title": title, "chart": charts.line_chart(series, f"{title} per epoch: {described}", y_label=y_label,
                                                       y_format=y_format, colors=colors, y_bounds=bounds)}


def training_curves(models: list[tuple[str, TrainedModel]], colors: list[str] | None = None) -> list[dict]:
    """Per epoch, one line per model: the loss (each model's own when alone, BCE for all when several) and
    the training accuracy (an axis ending at 100%)."""
    out = []
    if len(models) == 1:
        name, m = models[0]
        what = "training loss" if m.method == "standard" else "training loss (total: BCE + reconstruction + KL)"
        loss = [(name, _series(m, "loss"))]
    else:
        what = "classification loss (BCE)"
        loss = [(name, bce_series(m)) for name, m in models]
    if any(pts for _, pts in loss):
        out.append(_chart(what, loss, "loss", fmt, (0.0, None), colors))
    acc = [(name, _series(m, "accuracy")) for name, m in models]
    if any(pts for _, pts in acc):
        out.append(_chart("training accuracy", acc, "accuracy", charts.pct, (0.0, 1.0), colors))
    return out


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
