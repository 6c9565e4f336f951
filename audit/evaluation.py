"""Accuracy per group (label x attributes): worst group, variance and gap."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .dataset import ImageDataset
from .errors import DebiasError
from .inference import predict
from .models import check_image_size


def group_metrics(labels: np.ndarray, predicted: np.ndarray, attributes: pd.DataFrame,
                  group_by: list[str]) -> dict:
    """The `debias evaluate` JSON: overall accuracy, per-group accuracy, worst, variance, gap."""
    missing = [a for a in group_by if a not in attributes.columns]
    if missing:
        known = ", ".join(map(str, attributes.columns)) or "none"
        raise DebiasError(f"unknown attribute(s) {', '.join(missing)} for --group-by; the dataset has: {known}")
    labels = np.asarray(labels)
    correct = np.asarray(predicted) == labels
    frame = pd.DataFrame({"label": labels, "correct": correct})
    for a in group_by:
        frame[a] = attributes[a].astype(str).to_numpy()
    groups = []
    for key, g in frame.groupby(["label", *group_by], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        desc = {"label": int(key[0]), **{a: v for a, v in zip(group_by, key[1:])}}
        groups.append({"group": desc, "n": int(len(g)), "accuracy": float(g["correct"].mean())})
    accs = np.array([g["accuracy"] for g in groups])
    worst = groups[int(np.argmin(accs))]
    return {
        "overall": {"accuracy": float(correct.mean()), "n": int(len(labels)),
                    "accuracy_by_label": {str(c): float(correct[labels == c].mean()) for c in np.unique(labels)}},
        "group_by": list(group_by),
        "groups": groups,
        "worst_group": worst["group"],
        "worst_group_accuracy": float(accs.min()),
        "accuracy_variance": float(accs.var()),
        "accuracy_gap": float(accs.max() - accs.min()),
    }


def evaluate(model, dataset: ImageDataset, group_by: list[str], device, threshold: float = 0.5) -> dict:
    check_image_size(model.cfg.image_size, dataset.image_size)
    logits = predict(model, dataset.images, device, want_recon_error=False)["logit"]
    probability = 1.0 / (1.0 + np.exp(-logits))
    return group_metrics(dataset.labels, (probability >= threshold).astype(int), dataset.attributes, group_by)


def format_table(metrics: dict) -> str:
    """Plain-text table of per-group accuracy, worst group marked."""
    cols = ["label", *metrics["group_by"]]
    rows = [[str(g["group"].get(c, "")) for c in cols] + [str(g["n"]), f"{g['accuracy']:.3f}"]
            for g in metrics["groups"]]
    return _render(cols + ["n", "accuracy"], rows, metrics)


def format_comparison(named: dict[str, dict]) -> str:
    """Side by side per-group accuracy of several evaluations over the same groups."""
    names = list(named)
    first = named[names[0]]
    cols = ["label", *first["group_by"]]
    by_key = {n: {tuple(sorted(g["group"].items())): g for g in m["groups"]} for n, m in named.items()}
    rows = []
    for g in first["groups"]:
        key = tuple(sorted(g["group"].items()))
        accs = [by_key[n].get(key, {}).get("accuracy") for n in names]
        rows.append([str(g["group"].get(c, "")) for c in cols] + [str(g["n"])]
                    + ["-" if a is None else f"{a:.3f}" for a in accs])
    for label, field in (("overall", None), ("worst group", "worst_group_accuracy"),
                         ("variance", "accuracy_variance"), ("gap", "accuracy_gap")):
        vals = [m["overall"]["accuracy"] if field is None else m[field] for m in named.values()]
        rows.append([label] + [""] * (len(cols) - 1) + [""] + [f"{v:.4f}" if field == "accuracy_variance"
                                                              else f"{v:.3f}" for v in vals])
    return _render(cols + ["n", *names], rows, None)


def _render(header: list[str], rows: list[list[str]], metrics: dict | None) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if metrics is not None:
        out.append(f"overall {metrics['overall']['accuracy']:.3f}  worst group "
                   f"{metrics['worst_group_accuracy']:.3f}  variance {metrics['accuracy_variance']:.4f}  "
                   f"gap {metrics['accuracy_gap']:.3f}")
    return "\n".join(out)
