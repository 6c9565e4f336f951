"""Which rarity ranks the planted minority: the sampling density or the local outlier factor, and its settings.

Trains (or reuses, from --work) the default DB-VAE on the planted faces (64px, 2% dark-skinned faces; no
held-out split, as bench/decoder_bench.py) and on Colored MNIST (32px, 1% conflicting; the default held-out
tenth), audits the training set, and prints per seed the ROC AUC and average
precision of `under_representation` for the minority within its class, with its rarity taken several ways
side by side:

  density     the per-class histogram density's percentile, with every class's early error set (before LOF)
  lof20       the local outlier factor at k = 20 among 2,048 references (the audit's before), with every
              class's early error set
  lof50       the same at the audit's k = 50, exact up to 10,000 samples a class
  audit       lof50 with the early error set only when the training found it coherent (the audit's now)
  lof k=K     the LOF alone at k = K (exact), no error set: how k was chosen

and, per class of the minority, the audit's top-ranked subgroup: its stratum, the minority's share of its
members, and its most enriched attribute.

    python bench/rarity_signals.py --work /tmp/rarity
    python bench/rarity_signals.py --data faces --seeds 0 1 2 3 4 --work /tmp/rarity
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colored_mnist import make_colored_mnist  # noqa: E402
from quality import design_prevalence  # noqa: E402

from audit.local_outliers import local_outlier_factor  # noqa: E402
from audit.models import ModelConfig  # noqa: E402
from audit.pipeline import audit_dataset, load_error_coherence, train_model  # noqa: E402
from audit.report import AuditConfig  # noqa: E402
from audit.sampling import CLASS_NAMES  # noqa: E402
from audit.subgroups import trusted_error_classes, under_representation  # noqa: E402
from audit.synth import make_synthetic  # noqa: E402
from audit.training import TrainConfig, default_error_options  # noqa: E402

SWEEP = (10, 20, 35, 50, 75, 100)


def data(name: str, seed: int):
    """(training set, image size, the minority's class, its mask over the training set)."""
    if name == "faces":
        train = make_synthetic(3000, 3000, 64, seed=seed, prevalence=design_prevalence("planted", 0.02))
        return train, 64, [1], train.attributes["skin_tone"].to_numpy() == "dark"
    train, _val, _test = make_colored_mnist(0.01, n_train=20000, n_val=1000, n_test=2000, image_size=32, seed=seed)
    return train, 32, [0, 1], train.attributes["conflicting"].to_numpy() == "yes"


def top_subgroup(subgroups: list[dict], ids: np.ndarray, truth: np.ndarray, cls: int) -> str:
    """The audit's top-ranked subgroup of a class: its stratum, the minority's share of it, what it holds most."""
    top = next(g for g in subgroups if g["class"] == CLASS_NAMES[cls] and not g["small"])
    enriched = top["enriched"][0] if top["enriched"] else None
    held = (f"{enriched['attribute']}={enriched['value']} (precision {enriched['precision']:.2f}, recall "
            f"{enriched['recall']:.2f})" if enriched else "nothing enriched")
    return (f"top {top['class']} subgroup: {top['n']} samples ({top['stratum']}), minority precision "
            f"{truth[ids == top['id']].mean():.2f}; most enriched {held}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["faces", "mnist"], choices=["faces", "mnist"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--work", type=Path, required=True, help="models are kept here and reused")
    args = p.parse_args()
    print(f"default DB-VAE, {args.epochs} epochs; under_representation of the minority within its class, "
          f"AUC / AP (mean over its classes)")
    for name in args.data:
        totals: dict[str, list] = {}
        for seed in args.seeds:
            train, size, classes, truth = data(name, seed)
            model_dir = args.work / f"{name}-{seed}"
            if not (model_dir / "model.pt").is_file():
                held_out = {"val_fraction": 0.0} if name == "faces" else {}
                train_model(train, model_dir, ModelConfig(method="dbvae", image_size=size),
                            TrainConfig(epochs=args.epochs, seed=seed, device="cpu", **held_out,
                                        **default_error_options("dbvae", args.epochs)), progress=False)
            audit = audit_dataset(train, model_dir, args.work / f"{name}-{seed}-audit", AuditConfig(), device="cpu",
                                  with_figures=False)
            samples, mu = audit.samples, audit.mu
            labels = samples["label"].to_numpy()
            errors = np.load(model_dir / "error_set.npy") if (model_dir / "error_set.npy").is_file() else None
            ld = samples["log_density"].to_numpy()
            trusted = trusted_error_classes(labels, load_error_coherence(model_dir)) if errors is not None else None
            lof = local_outlier_factor(mu, labels)
            scores = {"density": under_representation(ld, labels, errors=errors),
                      "lof20": under_representation(ld, labels, errors=errors,
                                                    local=local_outlier_factor(mu, labels, k=20, max_references=2048,
                                                                              exact_up_to=2048)),
                      "lof50": under_representation(ld, labels, errors=errors, local=lof),
                      "audit": samples["under_representation"].to_numpy()}
            for k in SWEEP:
                scores[f"lof k={k}"] = under_representation(ld, labels, local=local_outlier_factor(mu, labels, k=k))
            assert np.allclose(scores["audit"], under_representation(ld, labels, errors=errors, error_classes=trusted,
                                                                     local=lof))
            line = []
            for kind, score in scores.items():
                auc = np.mean([roc_auc_score(truth[labels == c], score[labels == c]) for c in classes])
                ap = np.mean([average_precision_score(truth[labels == c], score[labels == c]) for c in classes])
                totals.setdefault(kind, []).append((auc, ap))
                line.append(f"{kind} {auc:.3f} / {ap:.3f}")
            print(f"{name} seed {seed}: " + "; ".join(line), flush=True)
            for c in classes:
                line = top_subgroup(audit.report["subgroups"], samples["subgroup"].to_numpy(), truth, c)
                print(f"  {name} seed {seed} {line}", flush=True)
        for kind, values in totals.items():
            v = np.array(values)
            print(f"{name} {kind:9s} AUC {v[:, 0].mean():.3f} +- {v[:, 0].std(ddof=1) if len(v) > 1 else 0:.3f}, "
                  f"AP {v[:, 1].mean():.3f}")


if __name__ == "__main__":
    main()
