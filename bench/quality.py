"""Quality on synthetic faces with planted minorities in both classes.

For each seed: synthesise a biased training set with a planted minority in
each class (dark-skinned faces among faces, face-like objects among
non-faces) and a balanced test set; train `standard` and one `dbvae` per
density estimator at equal epochs; report worst-group accuracy over
label x skin_tone x kind on the test set, and how well each audit ranks the
planted minority samples of the training set as under-represented (ROC AUC of
the sampling weight, per class).

Two designs:
  planted (default)  every other attribute uniform, the planted minorities at
                     --minority-share (2%): they are the only imbalance, so
                     the gain measured is the gain on them.
  demo               the demo's data (audit.synth.DEFAULT_PREVALENCE): 5%
                     minorities plus other rare attributes (10% glasses, 20%
                     turned heads, 15% dim light, ...).  There a plain
                     dark-skinned face is less rare than a turned head with
                     glasses in dim light, so even ranking by the true
                     probability of each sample's attributes (the "attribute
                     rarity" line) gives an AUC of about 0.87.

    python bench/quality.py                  # the issue's figures (about 4 min per seed on 2 cores)
    python bench/quality.py --design demo    # the same on the demo's data
    python bench/quality.py --quick          # a smoke run
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from audit.density import ESTIMATORS
from audit.models import ModelConfig
from audit.pipeline import audit_dataset, evaluate_model, train_model
from audit.report import AuditConfig
from audit.synth import ALL_ATTRIBUTES, DEFAULT_PREVALENCE, FACE_ATTRIBUTES, NONFACE_ATTRIBUTES, make_synthetic
from audit.training import SCHEDULE_FILE, TrainConfig, default_error_options

GROUP_BY = ["skin_tone", "kind"]
PLANTED = {1: ("skin_tone", "dark"), 0: ("kind", "object")}



def planted_auc(labels, score, attributes) -> dict[str, float]:
    """ROC AUC of `score` (higher = more under-represented) for each planted minority, within its class."""
    out = {}
    for cls, (attr, value) in PLANTED.items():
        members = labels == cls
        truth = attributes[attr].to_numpy()[members] == value
        out[f"{attr}={value}"] = float(roc_auc_score(truth, score[members]))
    return out


def design_prevalence(design: str, minority_share: float) -> dict[str, dict[str, float]]:
    """Every attribute's value -> probability for a design (see the module docstring)."""
    if design == "demo":
        return DEFAULT_PREVALENCE
    uniform = {a: {v: 1.0 / len(values) for v in values} for a, values in ALL_ATTRIBUTES.items()}
    rest = (1.0 - minority_share) / 2
    return {**uniform, "skin_tone": {"light": rest, "medium": rest, "dark": minority_share},
            "kind": {"scene": rest, "texture": rest, "object": minority_share}}


def attribute_rarity(ds, prevalence: dict[str, dict[str, float]]) -> np.ndarray:
    """-log P(attribute combination) under the prevalences the data was drawn with."""
    score = np.zeros(len(ds))
    for cls, attrs in ((1, FACE_ATTRIBUTES), (0, NONFACE_ATTRIBUTES)):
        members = ds.labels == cls
        for a in attrs:
            score[members] -= np.log(ds.attributes[a][members].map(prevalence[a]).to_numpy())
    return score


def run_seed(seed: int, args, work: Path, log) -> dict:
    prevalence = design_prevalence(args.design, args.minority_share)
    train_ds = make_synthetic(args.faces, args.nonfaces, args.image_size, seed=seed, prevalence=prevalence)
    test_ds = make_synthetic(args.test_per_class, args.test_per_class, args.image_size, seed=seed + 1000,
                             balanced=True)
    rarity = attribute_rarity(train_ds, prevalence)
    rows = {"attribute rarity": {"audit_auc": planted_auc(train_ds.labels, rarity, train_ds.attributes)}}
    for name in ["standard", *args.estimators]:
        method = "standard" if name == "standard" else "dbvae"
        model_dir = work / f"seed{seed}-{name}"
        t = time.perf_counter()
        train_model(train_ds, model_dir, ModelConfig(method=method, image_size=args.image_size),
                    # val_fraction 0: every planted face is trained on, as in the earlier runs of this bench.
                    TrainConfig(epochs=args.epochs, seed=seed, density=name if method == "dbvae" else "histogram",
                                val_fraction=0.0,
                                **default_error_options(method, args.epochs, 0.0 if args.density_only else None,
                                                        error_schedule=args.error_schedule
                                                        if method == "dbvae" else None)),
                    progress=False)
        metrics = evaluate_model(model_dir, test_ds, GROUP_BY)
        row = {"worst_group_accuracy": metrics["worst_group_accuracy"], "worst_group": metrics["worst_group"],
               "overall_accuracy": metrics["overall"]["accuracy"], "train_seconds": time.perf_counter() - t}
        if method == "dbvae":
            audit = audit_dataset(train_ds, model_dir, work / f"seed{seed}-{name}-audit", AuditConfig(density=name),
                                  with_figures=False)
            row["audit_auc"] = planted_auc(train_ds.labels, audit.samples["sampling_weight"].to_numpy(),
                                           train_ds.attributes)
            row["under_representation_auc"] = planted_auc(
                train_ds.labels, audit.samples["under_representation"].to_numpy(), train_ds.attributes)
            top = next((s for s in audit.report["subgroups"] if s["class"] == "positive" and not s["small"]), None)
            row["top_positive_subgroup_enriched"] = top["enriched"][:1] if top else []
        decision = model_dir / SCHEDULE_FILE
        if decision.is_file():
            recorded = json.loads(decision.read_text())
            row["error_schedule"] = recorded["schedule"]
            if "coherence" in recorded:
                row["error_set_coherence"] = recorded["coherence"]["pooled"]
            if "threshold" in recorded:
                row["error_set_threshold"] = recorded["threshold"]
        rows[name] = row
        log(f"  seed {seed} {name:18s} worst group {row['worst_group_accuracy']:.3f} "
            f"overall {row['overall_accuracy']:.3f}" +
            ("".join(f"  AUC {k} {v:.3f}" for k, v in row.get("audit_auc", {}).items())) +
            ("".join(f"  under_representation AUC {k} {v:.3f}"
                     for k, v in row.get("under_representation_auc", {}).items())) +
            ("".join(f"  top positive subgroup: {e['attribute']}={e['value']} (precision {e['precision']:.2f}, "
                     f"recall {e['recall']:.2f})" for e in row.get("top_positive_subgroup_enriched", []))) +
            (f"  schedule {row['error_schedule']}" if "error_schedule" in row else "") +
            (f" (coherence {row['error_set_coherence']:.2f})" if "error_set_coherence" in row else "") +
            (f" error set at logit {row['error_set_threshold']:+.2f}" if "error_set_threshold" in row else ""))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--design", choices=("planted", "demo"), default="planted")
    p.add_argument("--minority-share", type=float, default=0.02, help="planted design: share of each minority")
    p.add_argument("--faces", type=int, default=3000)
    p.add_argument("--nonfaces", type=int, default=3000)
    p.add_argument("--test-per-class", type=int, default=600)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=list(ESTIMATORS))
    p.add_argument("--density-only", action="store_true",
                   help="train dbvae without the error-aware defaults (density-only sampling, as before)")
    p.add_argument("--error-schedule", choices=("constant", "geometric", "gated"), default=None,
                   help="the DB-VAE's error schedule (default: the engine's, gated)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--keep", help="keep the trained models and audits under this folder (default: a temporary one)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not the figures")
    args = p.parse_args()
    if args.quick:
        args.faces = args.nonfaces = 200
        args.test_per_class, args.image_size, args.epochs = 60, 32, 1

    if not 0 < args.minority_share < 1:
        p.error("--minority-share must be between 0 and 1")
    design = args.design + (f", minorities {args.minority_share:.0%}" if args.design == "planted" else "")
    print(f"quality ({design}): {args.faces}+{args.nonfaces} training images at {args.image_size}px, "
          f"{args.epochs} epochs, balanced test set of {2 * args.test_per_class}, seeds {args.seeds}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="debias-bench-") as tmp:
        for seed in args.seeds:
            results[seed] = run_seed(seed, args, Path(args.keep or tmp), lambda m: print(m, flush=True))

    print("\nmean over seeds")
    print(f"{'model':24s} {'worst group':>11s} {'vs standard':>11s} {'AUC dark faces':>14s} {'AUC objects':>11s}"
          f"  (sampling weight; under_representation: dark faces, objects)")
    base = np.mean([r["standard"]["worst_group_accuracy"] for r in results.values()])
    aucs = [np.mean([r["attribute rarity"]["audit_auc"][k] for r in results.values()])
            for k in ("skin_tone=dark", "kind=object")]
    print(f"{'attribute rarity (ref.)':24s} {'':11s} {'':11s} {aucs[0]:14.3f} {aucs[1]:11.3f}")
    for name in ["standard", *args.estimators]:
        worst = np.mean([r[name]["worst_group_accuracy"] for r in results.values()])
        label = name if name == 'standard' else f'dbvae/{name}'
        line = f"{label:24s} {worst:11.3f} {100 * (worst - base):+10.1f}p"
        if name != "standard":
            aucs = [np.mean([r[name]["audit_auc"][k] for r in results.values()]) for k in
                    ("skin_tone=dark", "kind=object")]
            line += f" {aucs[0]:14.3f} {aucs[1]:11.3f}"
            under = [np.mean([r[name]["under_representation_auc"][k] for r in results.values()]) for k in
                     ("skin_tone=dark", "kind=object")]
            line += f"  {under[0]:.3f} {under[1]:.3f}"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
