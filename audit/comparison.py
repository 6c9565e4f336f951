"""Two evaluations of the same test set, paired sample by sample.

Pairing is what makes a small difference readable: both models saw the same images,
so only the images one gets right and the other wrong count (McNemar), and the
bootstrap resamples pairs, not each model on its own. Evaluations of different
datasets cannot be paired and are refused.

Model sets (audit.modelset: one model per seed) score every sample once per member, so
pairing needs a rule. Kept simple: when both sides list the same seeds, member seed s of A is
paired with member seed s of B; otherwise (a single model against a set, sets of different
seeds) every member of A is paired with every member of B. Either way the pairs are pooled
into one paired test, and the result adds each side's worst-group accuracy as mean +- sd across
seeds and the difference of the means (`across_seeds`), and how the members were paired
(`pairing`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DebiasError
from .evaluation import (
    DEFAULTS,
    PREDICTION_COLUMNS,
    check_options,
    group_codes,
    group_name,
    render_table,
    small_group_notes,
)
from .modelset import across_seeds_of, format_mean_sd, pair_members
from .stats import (
    CONFIDENCE,
    as_interval,
    mcnemar_exact,
    paired_bootstrap,
    percentile_interval,
)

ALPHA = 0.05


def load_evaluation(path: str | Path, with_predictions: bool = True) -> dict:
    """An evaluation JSON from `debias evaluate --out`, with its `predictions` frame when asked."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise DebiasError(f"no such metrics file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DebiasError(f"{path} is not JSON ({getattr(exc, 'msg', exc)}); pass files written by "
                          "`debias evaluate --out`") from None
    if not isinstance(metrics, dict) or "groups" not in metrics:
        raise DebiasError(f"{path} has no 'groups'; pass files written by `debias evaluate --out`")
    if with_predictions:
        metrics["predictions"] = load_predictions(path, metrics)
    return metrics


def load_predictions(path: str | Path, metrics: dict) -> pd.DataFrame:
    """The per-sample predictions written beside the evaluation JSON at `path`, checked against it."""
    path = Path(path)
    name = metrics.get("predictions_file")
    again = f"evaluate again with `debias evaluate ... --out {path}` to pair it"
    if not isinstance(name, str) or not isinstance(metrics.get("dataset_fingerprint"), dict):
        raise DebiasError(f"{path} carries no per-sample predictions (written by an older debias?); {again}")
    if Path(name).name != name:  # a name beside the JSON, never a path elsewhere
        raise DebiasError(f"{path}: predictions_file must be a file name beside it, got {name!r}")
    csv = path.parent / name
    try:
        frame = pd.read_csv(csv, dtype={"group": str}, keep_default_na=False, na_values={"probability": [""]})
    except FileNotFoundError:
        raise DebiasError(f"{csv} is missing: the per-sample predictions of {path}; {again}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DebiasError(f"{csv} is not a predictions CSV ({exc}); {again}") from None
    n = metrics["dataset_fingerprint"].get("n")
    # A model set's evaluation holds one block of n rows per member, in seed order, with a `seed` column.
    seeds = _set_seeds(metrics, path)
    lacking = [c for c in PREDICTION_COLUMNS + (["seed"] if seeds else []) if c not in frame.columns]
    if lacking:
        raise DebiasError(f"{csv} lacks column(s) {', '.join(lacking)}; {again}")
    blocks = len(seeds) if seeds else 1
    ok = (isinstance(n, int) and len(frame) == n * blocks
          and frame["index"].tolist() == list(range(n)) * blocks
          and frame["label"].isin([0, 1]).all() and frame["prediction"].isin([0, 1]).all()
          and (not seeds or frame["seed"].tolist() == [s for s in seeds for _ in range(n)]))
    if not ok:
        what = f"{n} samples" + (f" x {blocks} seeds" if seeds else "")
        raise DebiasError(f"{csv} does not match {path} ({len(frame)} rows for {what}, or labels / "
                          f"predictions outside 0 and 1{', or seeds out of order' if seeds else ''}); {again}")
    return frame


def _set_seeds(metrics: dict, path: Path) -> list[int] | None:
    """The seeds of a model set's evaluation (audit.modelset), None for a single model's."""
    ms = metrics.get("model_set")
    if ms is None:
        return None
    seeds = ms.get("seeds") if isinstance(ms, dict) else None
    if not (isinstance(seeds, list) and seeds and len(set(map(str, seeds))) == len(seeds)
            and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise DebiasError(f"{path}: model_set.seeds must list distinct whole numbers; evaluate the set again")
    return seeds


def check_same_dataset(a: dict, b: dict, names: tuple[str, str]) -> None:
    """DebiasError unless both evaluations are of the same samples, grouped the same way."""
    fa, fb = a.get("dataset_fingerprint"), b.get("dataset_fingerprint")
    if not fa or not fb:
        return  # written before fingerprints: pairing refuses them itself (no predictions)
    what = None
    if fa.get("n") != fb.get("n"):
        what = f"{fa.get('n')} vs {fb.get('n')} samples"
    elif fa.get("labels_sha256") != fb.get("labels_sha256"):
        what = f"the same number of samples ({fa.get('n')}) but different labels"
    elif fa.get("attributes_sha256") != fb.get("attributes_sha256"):
        what = "the same labels but different attributes"
    if what:
        raise DebiasError(f"{names[0]} and {names[1]} are evaluations of different datasets ({what}); "
                          f"compare evaluations of the same test set")
    if a.get("group_by") != b.get("group_by"):
        raise DebiasError(f"{names[0]} and {names[1]} group by different attributes ({a.get('group_by')} vs "
                          f"{b.get('group_by')}); evaluate both with the same --group-by")


def paired_comparison(a: dict, b: dict, names: tuple[str, str] = ("A", "B"), n_boot: int = DEFAULTS["n_boot"],
                      min_group_size: int = DEFAULTS["min_group_size"],
                      include_small: bool = DEFAULTS["include_small"], seed: int = DEFAULTS["seed"]) -> dict:
    """B against A (differences are B - A) per group and overall, with paired intervals and McNemar p-values.

    Either side may be a model set's evaluation: see the module's docstring for how members are paired;
    the result then also carries `pairing` and `across_seeds` (mean +- sd of each side's worst group).
    """
    check_options(n_boot, min_group_size, seed)
    check_same_dataset(a, b, names)
    # Model sets: rows are (member, sample); seed-matched members paired, else all pairs (pair_members).
    pa, pb, pairing = pair_members(a, b)
    if not (np.array_equal(pa["label"], pb["label"]) and np.array_equal(pa["group"], pb["group"])):
        raise DebiasError(f"the per-sample predictions of {names[0]} and {names[1]} disagree on labels or groups; "
                          "evaluate both again on the same test set")
    group_by = a["group_by"]
    code, descs = group_codes(pa["group"].to_numpy(), group_by)
    right_a = (pa["label"] == pa["prediction"]).to_numpy()
    right_b = (pb["label"] == pb["prediction"]).to_numpy()
    cell = 2 * ~right_a + ~right_b  # 0 both right, 1 only A right, 2 only B right, 3 neither
    cells = np.bincount(code * 4 + cell, minlength=4 * len(descs)).reshape(-1, 4)
    n = cells.sum(axis=1)
    acc_a, acc_b = (cells[:, 0] + cells[:, 1]) / n, (cells[:, 0] + cells[:, 2]) / n
    small = n < min_group_size
    ranked = np.ones(len(n), bool) if include_small else ~small
    notes = small_group_notes(descs, n, small, ranked, min_group_size)
    if not ranked.any():
        ranked[:] = True  # as in evaluate: rank all, and say so
    boot = paired_bootstrap(cells, ranked, n_boot, np.random.default_rng(seed))
    p_group = [mcnemar_exact(c[1], c[2]) for c in cells]
    idx = np.flatnonzero(ranked)
    worst_a, worst_b = idx[np.argmin(acc_a[idx])], idx[np.argmin(acc_b[idx])]
    total = cells.sum(axis=0)
    result = {
        "names": {"a": names[0], "b": names[1]}, "difference": "b - a", "group_by": list(group_by),
        "n": int(n.sum()),
        "overall": {"accuracy_a": float((total[0] + total[1]) / n.sum()),
                    "accuracy_b": float((total[0] + total[2]) / n.sum()),
                    "difference": float((total[2] - total[1]) / n.sum()),
                    "difference_ci": as_interval(*percentile_interval(boot["overall"])),
                    "only_a_right": int(total[1]), "only_b_right": int(total[2]),
                    "mcnemar_p": mcnemar_exact(total[1], total[2])},
        "groups": [{"group": d, "n": int(n[i]), "accuracy_a": float(acc_a[i]), "accuracy_b": float(acc_b[i]),
                    "difference": float(acc_b[i] - acc_a[i]), "difference_ci": as_interval(*boot["group_ci"][i]),
                    "only_a_right": int(cells[i, 1]), "only_b_right": int(cells[i, 2]), "mcnemar_p": p_group[i],
                    "small": bool(small[i])} for i, d in enumerate(descs)],
        "worst_group": {"a": {"group": descs[worst_a], "accuracy": float(acc_a[worst_a])},
                        "b": {"group": descs[worst_b], "accuracy": float(acc_b[worst_b])},
                        "same_group": bool(worst_a == worst_b),
                        "change": float(acc_b[worst_b] - acc_a[worst_a]),
                        # Plain percentile: the two minima's biases mostly cancel, and a bias correction
                        # (as for one evaluation's worst / gap) overclaims here (91% coverage vs 94-99%).
                        "change_ci": as_interval(*percentile_interval(boot["worst_change"]))},
        "min_group_size": int(min_group_size), "include_small": bool(include_small), "warnings": notes,
        "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "confidence": CONFIDENCE,
                      "method": "percentile; sample pairs resampled within each group"},
    }
    if pairing["mode"] != "single":
        result["pairing"] = {**pairing, "note": f"{len(pairing['pairs'])} member pairs ({pairing['mode']}): each "
                             f"n counts (sample, member pair) rows, {len(pairing['pairs'])} per sample"}
        opts = {"min_group_size": min_group_size, "include_small": include_small}
        side_a, side_b = across_seeds_of(a, **opts), across_seeds_of(b, **opts)
        result["across_seeds"] = {"a": side_a, "b": side_b,
                                  "worst_group_accuracy_difference_of_means": side_b["mean"] - side_a["mean"]}
    result["significant"] = bool(p_group[worst_b] < ALPHA)
    result["sentence"] = _sentence(result, worst_b)
    return result


def _points(diff: float, other: str) -> str:
    if round(diff * 100, 1) == 0:
        return f"as accurate as {other}"
    return f"{abs(diff) * 100:.1f} points {'better' if diff > 0 else 'worse'} than {other}"


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _sentence(r: dict, worst_b: int) -> str:
    """The verdict in one plain sentence, e.g. for the compare page's first line.

    It is about B's worst group; the significance is McNemar's on that group's pairs.
    """
    a, b, w = r["names"]["a"], r["names"]["b"], r["worst_group"]
    g = r["groups"][worst_b]
    ci = w["change_ci"]
    ci_text = f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if ci else ""
    verdict = (f"{'significant' if r['significant'] else 'not significant'} at the 5% level "
               f"(McNemar {_p(g['mcnemar_p'])}, n={g['n']})")
    name_b = group_name(w["b"]["group"])
    if w["same_group"]:
        return f"{b}'s worst group ({name_b}) is {_points(w['change'], a + chr(39) + 's')}{ci_text}; {verdict}."
    return (f"{b}'s worst group ({name_b}) is {_points(w['change'], a + chr(39) + 's worst group')} "
            f"({group_name(w['a']['group'])}){ci_text}; on {name_b} itself {b} is "
            f"{_points(g['difference'], a)}, {verdict}.")


def format_paired(r: dict) -> str:
    """Plain-text table of a paired comparison: per group both accuracies, the change and McNemar's p."""
    a, b = r["names"]["a"], r["names"]["b"]
    cols = ["label", *r["group_by"]]
    worst = {json.dumps(r["worst_group"]["a"]["group"]): f"worst of {a}",
             json.dumps(r["worst_group"]["b"]["group"]): f"worst of {b}"}
    if r["worst_group"]["same_group"]:
        worst = {json.dumps(r["worst_group"]["b"]["group"]): "worst of both"}

    def change(diff, ci):
        return f"{diff * 100:+.1f}" + (f" [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]" if ci else "")

    rows = [[str(g["group"].get(c, "")) for c in cols]
            + [str(g["n"]), f"{g['accuracy_a']:.3f}", f"{g['accuracy_b']:.3f}", change(g["difference"],
               g["difference_ci"]), _p(g["mcnemar_p"]).removeprefix("p="),
               " ".join(filter(None, [worst.get(json.dumps(g["group"]), ""), "small" if g["small"] else ""]))]
            for g in r["groups"]]
    o = r["overall"]
    rows.append(["overall"] + [""] * (len(cols) - 1) + [str(r["n"]), f"{o['accuracy_a']:.3f}",
                f"{o['accuracy_b']:.3f}", change(o["difference"], o["difference_ci"]),
                _p(o["mcnemar_p"]).removeprefix("p="), ""])
    w = r["worst_group"]
    rows.append(["worst group"] + [""] * (len(cols) - 1) + ["", f"{w['a']['accuracy']:.3f}",
                f"{w['b']['accuracy']:.3f}", change(w["change"], w["change_ci"]), "", ""])
    header = cols + ["n", a, b, f"change, points ({b} - {a}) [95% CI]", "McNemar p", ""]
    return render_table(header, rows) + "".join("\n" + line for line in seed_lines(r)) + "\n" + r["sentence"]


def seed_lines(r: dict) -> list[str]:
    """For model sets: mean +- sd across seeds of each side's worst group, and how the members were paired."""
    s = r.get("across_seeds")
    if not s:
        return []
    a, b = r["names"]["a"], r["names"]["b"]
    diff = s["worst_group_accuracy_difference_of_means"]
    return [f"across seeds, worst-group accuracy: {a} {format_mean_sd(s['a'])}, {b} {format_mean_sd(s['b'])}; "
            f"difference of the means {diff * 100:+.1f} points",
            f"paired (pooled) test above: {r['pairing']['note']}"]
