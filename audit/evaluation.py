"""Accuracy and error rates per group (label x attributes), each with its uncertainty.

An evaluation is data: the JSON contract (ARCHITECTURE.md) plus `predictions`, a
frame of per-sample results kept so that two evaluations can be paired
(audit.comparison). Groups smaller than `min_group_size` are listed but not ranked:
a group of 3 images must not decide the worst group or the gap.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .checkpoint import atomic_write_bytes, write_json
from .dataset import ImageDataset
from .errors import DebiasError
from .inference import predict
from .models import check_image_size
from .sampling import CLASS_NAMES
from .stats import CONFIDENCE, as_interval, as_number, spread_intervals, wilson_interval

DEFAULTS = {"n_boot": 1000, "min_group_size": 30, "include_small": False, "seed": 0}
MAX_BOOT = 100_000
PREDICTION_COLUMNS = ["index", "label", "prediction", "probability", "group"]


def group_metrics(labels: np.ndarray, predicted: np.ndarray, attributes: pd.DataFrame, group_by: list[str],
                  probability: np.ndarray | None = None, **options) -> dict:
    """The `debias evaluate` JSON, plus `predictions` (one row per sample, in input order)."""
    missing = [a for a in group_by if a not in attributes.columns]
    if missing:
        known = ", ".join(map(str, attributes.columns)) or "none"
        raise DebiasError(f"unknown attribute(s) {', '.join(missing)} for --group-by; the dataset has: {known}")
    labels = np.asarray(labels).astype(int)
    frame = pd.DataFrame({"index": np.arange(len(labels)), "label": labels,
                          "prediction": np.asarray(predicted).astype(int),
                          "probability": np.nan if probability is None else np.asarray(probability, dtype=float),
                          "group": _group_keys(labels, attributes, group_by)})
    metrics = summarise(frame, group_by, **options)
    metrics["dataset_fingerprint"] = dataset_fingerprint(labels, attributes)
    metrics["predictions"] = frame
    return metrics


def evaluate(model, dataset: ImageDataset, group_by: list[str], device, threshold: float = 0.5, **options) -> dict:
    check_image_size(model.cfg.image_size, dataset.image_size)
    logits = predict(model, dataset.images, device, want_recon_error=False)["logit"]
    probability = 1.0 / (1.0 + np.exp(-logits))
    return group_metrics(dataset.labels, (probability >= threshold).astype(int), dataset.attributes, group_by,
                         probability, **options)


def with_options(metrics: dict, **options) -> dict:
    """The same evaluation summarised again from its predictions with other options (n_boot, ...)."""
    return {**metrics, **summarise(metrics["predictions"], metrics["group_by"], **options)}


def summarise(frame: pd.DataFrame, group_by: list[str], n_boot: int = DEFAULTS["n_boot"],
              min_group_size: int = DEFAULTS["min_group_size"], include_small: bool = DEFAULTS["include_small"],
              seed: int = DEFAULTS["seed"]) -> dict:
    """Per-group n, accuracy, FNR, FPR with Wilson intervals; worst / gap / ratio with bootstrap intervals."""
    check_options(n_boot, min_group_size, seed)
    code, descs = group_codes(frame["group"].to_numpy(), group_by)
    label, pred = frame["label"].to_numpy(), frame["prediction"].to_numpy()
    count = lambda mask: np.bincount(code, weights=mask, minlength=len(descs)).astype(int)  # noqa: E731
    n, right = count(np.ones(len(label))), count(label == pred)
    # FNR over the group's true positives, FPR over its true negatives: the harm of a missed face is
    # counted among faces only. A group with no positives has no FNR (None), and likewise for FPR.
    pos, fn = count(label == 1), count((label == 1) & (pred == 0))
    neg, fp = count(label == 0), count((label == 0) & (pred == 1))
    acc_lo, acc_hi = wilson_interval(right, n)
    fnr_lo, fnr_hi = wilson_interval(fn, pos)
    fpr_lo, fpr_hi = wilson_interval(fp, neg)
    small = n < min_group_size
    ranked = np.ones(len(n), bool) if include_small else ~small
    notes = small_group_notes(descs, n, small, ranked, min_group_size)
    if not ranked.any():
        ranked[:] = True  # nothing left to rank: rank all and say so (notes) rather than report nothing
    groups = [{"group": d, "n": int(n[i]), "accuracy": float(right[i] / n[i]),
               "accuracy_ci": as_interval(acc_lo[i], acc_hi[i]),
               "n_positive": int(pos[i]), "fnr": _rate(fn[i], pos[i]), "fnr_ci": as_interval(fnr_lo[i], fnr_hi[i]),
               "n_negative": int(neg[i]), "fpr": _rate(fp[i], neg[i]), "fpr_ci": as_interval(fpr_lo[i], fpr_hi[i]),
               "small": bool(small[i])} for i, d in enumerate(descs)]
    acc = right / n
    idx = np.flatnonzero(ranked)
    worst_i, best_i = idx[np.argmin(acc[idx])], idx[np.argmax(acc[idx])]
    spread = spread_intervals(right[idx], n[idx], n_boot, np.random.default_rng(seed))
    ratio = as_number(acc[worst_i] / acc[best_i]) if acc[best_i] > 0 else None
    overall_ci = wilson_interval(right.sum(), n.sum())
    return {
        "overall": {"accuracy": float(right.sum() / n.sum()), "accuracy_ci": as_interval(*overall_ci),
                    "n": int(n.sum()),
                    "accuracy_by_label": {str(c): float((label == pred)[label == c].mean()) for c in np.unique(label)}},
        "group_by": list(group_by),
        "groups": groups,
        "worst_group": descs[worst_i],
        "worst_group_accuracy": float(acc[worst_i]),
        "worst_group_accuracy_ci": as_interval(*spread["worst"]),
        "best_group": descs[best_i],
        "best_group_accuracy": float(acc[best_i]),
        "accuracy_variance": float(acc[idx].var()),
        "accuracy_gap": float(acc[best_i] - acc[worst_i]),
        "accuracy_gap_ci": as_interval(*spread["gap"]),
        "accuracy_ratio": ratio,
        "accuracy_ratio_ci": as_interval(*spread["ratio"]),
        "small_groups": [{"group": descs[i], "n": int(n[i])} for i in np.flatnonzero(small)],
        "ranked_groups": int(ranked.sum()),
        "min_group_size": int(min_group_size),
        "include_small": bool(include_small),
        "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "confidence": CONFIDENCE,
                      "method": "percentile, bias-corrected for worst / gap / ratio; "
                                "samples resampled within each group"},
        "warnings": notes,
    }


def check_options(n_boot, min_group_size, seed) -> None:
    """Options come from users (CLI, API): out-of-range values are refused, never clamped."""
    def whole(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    if not whole(n_boot) or not 1 <= n_boot <= MAX_BOOT:
        raise DebiasError(f"n_boot must be a whole number from 1 to {MAX_BOOT}, got {n_boot!r}")
    if not whole(min_group_size) or not 0 <= min_group_size <= 10**9:
        raise DebiasError(f"min_group_size must be a whole number >= 0, got {min_group_size!r}")
    if not whole(seed) or not 0 <= seed < 2**32:
        raise DebiasError(f"seed must be a whole number from 0 to {2**32 - 1}, got {seed!r}")


def _rate(k, n) -> float | None:
    return float(k / n) if n else None


def group_name(desc: dict) -> str:
    """`{"label": 1, "skin_tone": "dark"}` -> "positive, skin_tone=dark"."""
    label = CLASS_NAMES.get(desc.get("label"), str(desc.get("label")))
    return ", ".join([label, *(f"{k}={v}" for k, v in desc.items() if k != "label")])


def small_group_notes(descs, n, small, ranked, min_group_size) -> list[str]:
    which = np.flatnonzero(small)
    if not len(which):
        return []
    listing = ", ".join(f"{group_name(descs[i])} (n={n[i]})" for i in which[:5])
    listing += f" and {len(which) - 5} more" if len(which) > 5 else ""
    k = f"{len(which)} group{'s' if len(which) > 1 else ''} with fewer than {min_group_size} samples"
    if not ranked.any():
        return [f"every group has fewer than {min_group_size} samples ({listing}): worst group, gap and ratio "
                f"rank them all anyway and are indicative only"]
    if ranked[which].any():
        return [f"{k} ranked (include_small), so worst group, gap and ratio may rest on them: {listing}"]
    return [f"{k} listed but left out of worst group, gap and ratio (--include-small ranks them): {listing}"]


def _group_keys(labels: np.ndarray, attributes: pd.DataFrame, group_by: list[str]) -> np.ndarray:
    """Per sample, its group as compact JSON (`{"label":1,"skin_tone":"dark"}`): unambiguous whatever the values."""
    cols = ["label", *group_by]
    frame = pd.DataFrame({"label": labels, **{a: attributes[a].astype(str).to_numpy() for a in group_by}})
    code, uniques = pd.factorize(pd.MultiIndex.from_frame(frame[cols]))
    keys = [json.dumps(dict(zip(cols, (int(t[0]), *t[1:]))), separators=(",", ":")) for t in uniques]
    return np.asarray(keys, dtype=object)[code]


def group_codes(keys: np.ndarray, group_by: list[str]) -> tuple[np.ndarray, list[dict]]:
    """Per sample its group number, and the groups, sorted by label then attribute values."""
    uniq, code = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    descs = [json.loads(k) for k in uniq]
    order = sorted(range(len(descs)), key=lambda i: tuple(str(descs[i].get(c)) for c in ["label", *group_by]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[code.reshape(-1)], [descs[i] for i in order]


def dataset_fingerprint(labels: np.ndarray, attributes: pd.DataFrame) -> dict:
    """What `compare` checks before pairing two evaluations sample by sample."""
    attrs = hashlib.sha256()
    for col in sorted(attributes.columns, key=str):
        attrs.update(str(col).encode() + b"\0" + "\x1f".join(attributes[col].astype(str)).encode() + b"\x1e")
    return {"n": int(len(labels)),
            "labels_sha256": hashlib.sha256(np.asarray(labels, dtype="<i8").tobytes()).hexdigest(),
            "attributes_sha256": attrs.hexdigest()}


def predictions_path(json_path: str | Path) -> Path:
    """`out/standard.json` -> `out/standard.predictions.csv`."""
    json_path = Path(json_path)
    return json_path.with_name(json_path.stem + ".predictions.csv")


def write_evaluation(path: str | Path, metrics: dict) -> Path:
    """The JSON and, beside it, its per-sample predictions (CSV); returns the CSV's path."""
    path = Path(path)
    target = predictions_path(path)
    # A model set's pooled predictions carry the member's seed on each row (audit.modelset).
    frame = metrics["predictions"]
    frame = frame[PREDICTION_COLUMNS + (["seed"] if "seed" in frame.columns else [])]
    # The only text cells are group keys, which start with "{": nothing a spreadsheet runs (see csvsafe).
    atomic_write_bytes(target, lambda f: f.write(frame.to_csv(index=False, float_format="%.6g").encode()))
    # The JSON last: a reader that finds it finds its predictions too.
    write_json(path, {k: v for k, v in metrics.items() if k != "predictions"} | {"predictions_file": target.name})
    return target


def format_table(metrics: dict) -> str:
    """Plain-text table: per group n, accuracy, FNR and FPR with 95% intervals; worst, best and small marked."""
    cols = ["label", *metrics["group_by"]]
    marks = {json.dumps(metrics["worst_group"]): "worst", json.dumps(metrics.get("best_group")): "best"}
    rows = [[str(g["group"].get(c, "")) for c in cols]
            + [str(g["n"]), _with_ci(g["accuracy"], g.get("accuracy_ci")), _with_ci(g.get("fnr"), g.get("fnr_ci")),
               _with_ci(g.get("fpr"), g.get("fpr_ci")),
               " ".join(filter(None, [marks.get(json.dumps(g["group"]), ""), "small" if g.get("small") else ""]))]
            for g in metrics["groups"]]
    header = cols + ["n", "accuracy [95% CI]", "FNR [95% CI]", "FPR [95% CI]", ""]
    across = metrics.get("across_seeds")
    if across:  # a model set: the pooled table, with each group's accuracy as mean +- sd over seeds beside it
        by_group = {json.dumps(g["group"], sort_keys=True): g for g in across["groups"]}
        for g, row in zip(metrics["groups"], rows):
            row.insert(len(cols) + 2, _mean_sd(by_group.get(json.dumps(g["group"], sort_keys=True))))
        header.insert(len(cols) + 2, f"accuracy over {across['n_seeds']} seeds (mean +- sd)")
    out = render_table(header, rows)
    boot = metrics.get("bootstrap", {})
    out += (f"\noverall {_with_ci(metrics['overall']['accuracy'], metrics['overall'].get('accuracy_ci'))} "
            f"(n={metrics['overall'].get('n', '?')})  worst group "
            f"{_with_ci(metrics['worst_group_accuracy'], metrics.get('worst_group_accuracy_ci'))}  gap "
            f"{_with_ci(metrics['accuracy_gap'], metrics.get('accuracy_gap_ci'))}  ratio "
            f"{_with_ci(metrics.get('accuracy_ratio'), metrics.get('accuracy_ratio_ci'))}  variance "
            f"{metrics['accuracy_variance']:.4f}"
            f"\nworst group: {group_name(metrics['worst_group'])}; intervals: 95% Wilson per group, worst / gap / "
            f"ratio bootstrap over {boot.get('n_boot', '?')} resamples within each group (seed {boot.get('seed', '?')})"
            f"; {metrics.get('ranked_groups', len(metrics['groups']))} of {len(metrics['groups'])} groups ranked")
    if across:
        out += (f"\nacross {across['n_seeds']} seeds {metrics['model_set']['seeds']} (mean +- sd): worst group "
                f"{_mean_sd(across['worst_group_accuracy'])}  overall {_mean_sd(across['overall_accuracy'])}  gap "
                f"{_mean_sd(across['accuracy_gap'])}; the intervals above pool the {across['n_seeds']} members' "
                f"predictions (n counts member x sample)")
    return out


def _mean_sd(stat: dict | None) -> str:
    if not stat:
        return "-"
    return f"{stat['mean']:.3f}" + ("" if stat.get("sd") is None else f" +- {stat['sd']:.3f}")


def _with_ci(value, ci) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


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
    return render_table(cols + ["n", *names], rows)


def render_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
