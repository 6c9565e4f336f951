"""Which rarity ranks the planted minority: the sampling density or the local outlier factor.

Trains (or reuses, from --work) the default DB-VAE on the planted faces (64px, 2% dark-skinned faces; no
held-out split, as bench/decoder_bench.py) and on Colored MNIST (32px, 1% conflicting; the default held-out
tenth), audits the training set, and prints per seed the ROC AUC and average
precision of `under_representation` for the minority within its class, with its rarity taken two ways
side by side (each beside the early error set's flags, as the audit does):

  density   the per-class histogram density's percentile (the score before this release)
  lof       the local outlier factor's percentile (audit/local_outliers.py; the audit's now)

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
from audit.pipeline import audit_dataset, train_model  # noqa: E402
from audit.report import AuditConfig  # noqa: E402
from audit.subgroups import under_representation  # noqa: E402
from audit.synth import make_synthetic  # noqa: E402
from audit.training import TrainConfig, default_error_options  # noqa: E402


def data(name: str, seed: int):
    """(training set, image size, the minority's class, its mask over the training set)."""
    if name == "faces":
        train = make_synthetic(3000, 3000, 64, seed=seed, prevalence=design_prevalence("planted", 0.02))
        return train, 64, [1], train.attributes["skin_tone"].to_numpy() == "dark"
    train, _val, _test = make_colored_mnist(0.01, n_train=20000, n_val=1000, n_test=2000, image_size=32, seed=seed)
    return train, 32, [0, 1], train.attributes["conflicting"].to_numpy() == "yes"


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
        totals: dict[str, list] = {"density": [], "lof": []}
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
            scores = {"density": under_representation(samples["log_density"].to_numpy(), labels, errors=errors),
                      "lof": under_representation(samples["log_density"].to_numpy(), labels, errors=errors,
                                                  local=local_outlier_factor(mu, labels))}
            line = []
            for kind, score in scores.items():
                auc = np.mean([roc_auc_score(truth[labels == c], score[labels == c]) for c in classes])
                ap = np.mean([average_precision_score(truth[labels == c], score[labels == c]) for c in classes])
                totals[kind].append((auc, ap))
                line.append(f"{kind} {auc:.3f} / {ap:.3f}")
            print(f"{name} seed {seed}: " + "; ".join(line), flush=True)
        for kind, values in totals.items():
            v = np.array(values)
            print(f"{name} {kind:8s} AUC {v[:, 0].mean():.3f} +- {v[:, 0].std(ddof=1) if len(v) > 1 else 0:.3f}, "
                  f"AP {v[:, 1].mean():.3f}")


if __name__ == "__main__":
    main()
