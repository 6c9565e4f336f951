"""The adversarial decoder against the plain one: sharpness, reconstruction, accuracy, discovery and cost.

Per dataset and seed, two DB-VAEs (the default otherwise: error set, constant schedule) train for the same
epochs on the same data, one with `--decoder plain` and one with `--decoder adversarial`. Printed side by
side, mean +- sd over seeds:

  recon L1          mean absolute error of test positives' reconstructions (from the latent mean)
  sharpness         variance of the Laplacian of reconstructions, as a share of the real images' (1 = as
                    sharp as the data; a blurred average is far below)
  prior sharpness   the same for images decoded from the prior
  accuracy          the classifier's test accuracy, and its worst group
  discovery         the audit of the training set: Colored MNIST's conflicting samples (under_representation
                    AUC / AP), the planted faces' dark-skinned faces (AUC)
  s / epoch         training seconds per epoch (history), the adversarial run's share of the plain one's

    cd bench && python decoder_bench.py                        # Colored MNIST 1% at 32px, planted faces at 64px
    cd bench && python decoder_bench.py --data faces --seeds 0
    cd bench && python decoder_bench.py --data mnist --seeds 0 --weights 0.01 0.002 --no-plain   # a weight sweep
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from colored_mnist import make_colored_mnist
from quality import GROUP_BY, design_prevalence, planted_auc
from scipy.ndimage import laplace
from sklearn.metrics import average_precision_score, roc_auc_score

from audit.checkpoint import load_model
from audit.evaluation import evaluate
from audit.inference import decode, predict
from audit.models import ModelConfig
from audit.pipeline import audit_dataset, train_model
from audit.report import AuditConfig
from audit.synth import make_synthetic
from audit.training import TrainConfig, default_error_options

DEVICE = torch.device("cpu")


def sharpness(images: np.ndarray) -> float:
    """Mean over images of the variance of the Laplacian of the grey image in [0, 1]."""
    grey = np.asarray(images, dtype=np.float64).mean(-1) / 255.0
    return float(np.mean([laplace(g).var() for g in grey]))


def datasets(name: str, seed: int, args):
    if name == "mnist":
        train, _val, test = make_colored_mnist(0.01, n_train=args.n_train, n_val=1000, n_test=2000, image_size=32,
                                               seed=seed)
        return train, test, ["color"], 32
    train = make_synthetic(args.faces, args.faces, 64, seed=seed, prevalence=design_prevalence("planted", 0.02))
    return train, make_synthetic(600, 600, 64, seed=seed + 1000, balanced=True), GROUP_BY, 64


def discovery(name: str, train, score: np.ndarray) -> str:
    if name == "faces":
        return f"dark AUC {planted_auc(train.labels, score, train.attributes)['skin_tone=dark']:.3f}"
    truth = train.attributes["conflicting"].to_numpy() == "yes"
    aucs, aps = [], []
    for cls in (0, 1):
        m = train.labels == cls
        aucs.append(roc_auc_score(truth[m], score[m]))
        aps.append(average_precision_score(truth[m], score[m]))
    return f"AUC {np.mean(aucs):.3f} AP {np.mean(aps):.3f}"


def run(name: str, decoder: str, seed: int, data, folder: Path, epochs: int, weight: float | None = None) -> dict:
    train, test, group_by, size = data
    extra = {} if weight is None else {"adversarial_weight": weight}
    cfg = ModelConfig(method="dbvae", image_size=size, decoder=decoder, **extra)
    tcfg = TrainConfig(epochs=epochs, seed=seed, device="cpu", val_fraction=0.0,
                       **default_error_options("dbvae", epochs))
    result = train_model(train, folder / decoder, cfg, tcfg, progress=False)
    model, _ = load_model(folder / decoder, DEVICE)
    positives = np.flatnonzero(test.labels == 1)[:400]
    real = np.asarray(test.images[positives])
    mu = predict(model, real, DEVICE, want_recon_error=False)["mu"]
    recon = decode(model, mu, DEVICE)
    prior = decode(model, np.random.default_rng(seed).standard_normal((400, cfg.latent_dim)).astype(np.float32),
                   DEVICE)
    metrics = evaluate(model, test, group_by, DEVICE, n_boot=10)
    audit = audit_dataset(train, folder / decoder, folder / f"{decoder}-audit", AuditConfig(), device="cpu",
                          with_figures=False)
    reference = sharpness(real)
    return {"recon_l1": float(np.abs(recon.astype(np.float64) - real).mean() / 255.0),
            "sharpness": sharpness(recon) / reference, "prior_sharpness": sharpness(prior) / reference,
            "accuracy": metrics["overall"]["accuracy"], "worst": metrics["worst_group_accuracy"],
            "discovery": discovery(name, train, audit.samples["under_representation"].to_numpy()),
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in result.history]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["mnist", "faces"], choices=["mnist", "faces"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--faces", type=int, default=3000)
    p.add_argument("--weights", type=float, nargs="+", default=None,
                   help="adversarial weights to run (default: the ModelConfig default only)")
    p.add_argument("--no-plain", action="store_true", help="skip the plain decoder (already measured)")
    args = p.parse_args()
    variants = ([] if args.no_plain else [("plain", None)]) + [
        ("adversarial" if w is None else f"adversarial-{w:g}", w) for w in (args.weights or [None])]
    rows: dict = {}
    for name in args.data:
        for seed in args.seeds:
            data = datasets(name, seed, args)
            with tempfile.TemporaryDirectory(prefix="debias-decoder-") as tmp:
                for decoder, weight in variants:
                    r = run(name, decoder.split("-")[0], seed, data, Path(tmp) / decoder, args.epochs, weight)
                    rows.setdefault(name, {}).setdefault(decoder, []).append(r)
                    print(f"{name} seed {seed} {decoder:17} " + " ".join(
                        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)
    print(f"\n{args.epochs} epochs, default DB-VAE; mean +- sd over seeds {args.seeds}")
    keys = ("recon_l1", "sharpness", "prior_sharpness", "accuracy", "worst", "seconds_per_epoch")
    for name, by_decoder in rows.items():
        print(f"\n{name}\n{'decoder':18}" + "".join(f"{k:>22}" for k in keys) + "  discovery")
        for decoder, runs in by_decoder.items():
            cells = []
            for k in keys:
                v = np.array([r[k] for r in runs])
                cells.append(f"{v.mean():.4f} +- {v.std(ddof=1) if len(v) > 1 else 0:.4f}")
            print(f"{decoder:18}" + "".join(f"{c:>22}" for c in cells) + "  " + " | ".join(r["discovery"]
                                                                                         for r in runs))
        for decoder in [d for d in by_decoder if d.startswith("adversarial")] if "plain" in by_decoder else []:
            ratio = np.mean([a["seconds_per_epoch"] / b["seconds_per_epoch"]
                             for a, b in zip(by_decoder[decoder], by_decoder["plain"])])
            print(f"{decoder} epoch / plain epoch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
