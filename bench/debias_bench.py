"""Debiasing efficacy on real images: binary Colored MNIST (bench/colored_mnist.py), methods side by side.

Per conflict fraction and seed, every method trains for the same fixed number of epochs on the same
biased training split (no group labels for stopping or selection) and is scored on the test split,
balanced over class x colour:

  standard      ERM with class-balanced batches
  lab-dbvae     the 6.S191 lab's DB-VAE exactly: per-dimension histogram density, positives only,
                untempered inverse density (strength 1)
  jtt           JTT (Liu et al. 2021) in this engine: the error set of the model after
                --error-steps steps of epoch 1, drawn (1 + upweight) times as often from then on
  jtt-geometric the same, the multiplier raised to the k-th power in the k-th epoch after the
                snapshot (--error-schedule geometric)
  default       `--method dbvae` as it ships: DB-VAE density weights (both classes, tempered)
                times JTT's multiplier, geometric where the error set is coherent in the latent
                space, else constant (--error-schedule gated; audit/coherence.py)
  dbvae-constant the same with the constant schedule (the default before the gated one)
  dbvae-geometric the same with the geometric schedule (--error-schedule geometric)
  dbvae-auto    both schedules, the one with the better held-out worst inferred group kept
                (--error-schedule auto; trains on 90%: the rest is its validation split)
  ae            the default with kl_weight 0 (an autoencoder: does the VAE prior matter here?)
  oracle        group-balanced sampling with the TRUE class x colour groups: an upper reference
                that uses the labels the others never see; never a default

Printed: worst-group and average test accuracy per method, per seed and mean +- sd; the wall time of
each run; and how well each method's sampling weights (last epoch) rank the bias-conflicting training
samples within their class (ROC AUC, average precision).

    python bench/debias_bench.py --conflict 0.01 0.02 --seeds 0 1 2
    python bench/debias_bench.py --quick
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from colored_mnist import make_colored_mnist
from mnist_digits import SOURCES
from sklearn.metrics import average_precision_score, roc_auc_score

import audit.coherence as coherence
import audit.training as training
from audit.models import ModelConfig
from audit.pipeline import audit_dataset, evaluate_model, train_model
from audit.report import AuditConfig
from audit.training import TrainConfig

_REAL_EPOCH_BATCHES = training.epoch_batches
_REAL_BALANCED_THRESHOLD = coherence.balanced_threshold
LAB = dict(density="histogram", reweight="positive", strength=1.0, min_effective_fraction=0.0, lr_schedule="constant")


DEFAULT_METHODS = ["standard", "lab-dbvae", "jtt", "jtt-geometric", "default", "dbvae-constant", "dbvae-geometric",
                   "ae", "oracle"]


def methods(upweight: float, error_epoch: int, error_steps: int = 0) -> dict[str, tuple[dict, dict]]:
    """name -> (ModelConfig overrides, TrainConfig overrides)."""
    const = dict(error_upweight=upweight, error_epoch=error_epoch, error_steps=error_steps,
                 error_schedule="constant")
    geo = const | {"error_schedule": "geometric"}
    return {
        "standard": ({"method": "standard"}, {}),
        "lab-dbvae": ({"method": "dbvae"}, LAB),
        "jtt": ({"method": "standard"}, const),
        "jtt-geometric": ({"method": "standard"}, geo),
        "jtt-mix": ({"method": "standard"}, const | {"mix_groups": 0.5}),
        "default": ({"method": "dbvae"}, const | {"error_schedule": "gated"}),
        # The default as it was before the balanced threshold: the error set always taken at logit 0.
        "default-threshold0": ({"method": "dbvae"}, const | {"error_schedule": "gated"}),
        "dbvae-constant": ({"method": "dbvae"}, const),
        "dbvae-geometric": ({"method": "dbvae"}, geo),
        "dbvae-mix": ({"method": "dbvae"}, const | {"mix_groups": 0.5}),
        # Both schedules, the one with the better held-out worst inferred group kept: needs a validation split,
        # so it trains on 90% of the digits the others train on (audit/schedule_choice.py).
        "dbvae-auto": ({"method": "dbvae"}, const | {"val_fraction": 0.1, "choose_schedule": True}),
        "ae": ({"method": "dbvae", "kl_weight": 0.0}, const | {"error_schedule": "gated"}),
        "oracle": ({"method": "standard"}, {}),
    }


def group_balanced_batches(groups: np.ndarray):
    """epoch_batches drawing each class's half of a batch evenly over that class's true groups (oracle)."""
    real = training.epoch_batches

    def batches(labels, prob, batch_size, steps, rng, pool=None):
        p = np.empty(len(labels))
        for g in np.unique(groups):
            members = groups == g
            p[members] = 1.0 / members.sum()
        return real(labels, p, batch_size, steps, rng, pool)
    return batches


def run(name: str, model_over: dict, train_over: dict, data, args, seed: int, folder: Path) -> dict:
    train, _val, test = data
    cfg = ModelConfig(image_size=args.image_size, latent_dim=args.latent_dim, **model_over)
    # Every training digit is trained on (val_fraction 0), as in every earlier run of this bench: the figures
    # stay comparable, and the bench has its own validation split (unused: fixed epochs select the model).
    train_over = dict(train_over)
    choose = train_over.pop("choose_schedule", False)
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=seed, device="cpu",
                       **{"val_fraction": 0.0, **train_over})
    if name == "oracle":
        groups = train.labels * 2 + (train.attributes["color"].to_numpy() == "red")
        training.epoch_batches = group_balanced_batches(groups)
    if name == "default-threshold0":
        coherence.balanced_threshold = lambda logits, labels: 0.0
    started = time.perf_counter()
    reused = getattr(args, "reuse", False) and (folder / name / "model.pt").is_file()
    try:
        # --reuse: the kept model of an earlier run (an audit change measured on the same trained models).
        result = None if reused else train_model(train, folder / name, cfg, tcfg, progress=False,
                                                  choose_schedule=choose)
    finally:
        training.epoch_batches = _REAL_EPOCH_BATCHES
        coherence.balanced_threshold = _REAL_BALANCED_THRESHOLD
    seconds = float("nan") if reused else time.perf_counter() - started
    metrics = evaluate_model(folder / name, test, ["color"], device="cpu")
    out = {"worst": metrics["worst_group_accuracy"], "average": metrics["overall"]["accuracy"], "seconds": seconds}
    if choose:
        out["chosen"] = json.loads((folder / name / "schedule_choice.json").read_text())["chosen"]
    elif tcfg.error_schedule == "gated" and (folder / name / training.SCHEDULE_FILE).is_file():
        decision = json.loads((folder / name / training.SCHEDULE_FILE).read_text())
        out["chosen"] = (f"{decision['schedule']} (coherence {decision['coherence']['pooled']:.2f}"
                         + (f", threshold {decision['threshold']:+.2f}" if "threshold" in decision else "") + ")")
    prob = None if result is None else result.sampling_probability
    if train_over.get("error_upweight") and (folder / name / training.ERROR_SET_FILE).is_file():
        errors = np.load(folder / name / training.ERROR_SET_FILE)
        out |= {f"error_set_{k}": v for k, v in discovery(train, errors).items()}
    if prob is not None:
        out |= {f"weight_{k}": v for k, v in discovery(train, prob).items()}
    if model_over["method"] == "dbvae" and args.audit:
        out |= audit_discovery(train, folder / name, folder / f"{name}-audit")
    return out


def audit_discovery(train, model_dir: Path, out_dir: Path) -> dict:
    """The audit of the training set: its under_representation score and its top subgroup per class."""
    result = audit_dataset(train, model_dir, out_dir, AuditConfig(), device="cpu", with_figures=False)
    samples = result.samples
    out = {f"under_rep_{k}": v for k, v in discovery(train, samples["under_representation"].to_numpy()).items()}
    truth = train.attributes["conflicting"].to_numpy() == "yes"
    precision = []
    for cls in (0, 1):  # the highest-ranked subgroup of each class: how many of its members conflict?
        name = {1: "positive", 0: "negative"}[cls]
        top = next((s for s in result.report["subgroups"] if s["class"] == name and not s.get("small")), None)
        if top is not None:
            precision.append(float(truth[samples["subgroup"].to_numpy() == top["id"]].mean()))
    out["top_subgroup_precision"] = float(np.mean(precision)) if precision else float("nan")
    return out


def discovery(ds, score: np.ndarray) -> dict:
    """Mean over classes of ROC AUC / AP of `score` for the bias-conflicting samples within the class."""
    truth = ds.attributes["conflicting"].to_numpy() == "yes"
    aucs, aps = [], []
    for cls in (0, 1):
        m = ds.labels == cls
        if truth[m].any() and not truth[m].all() and np.ptp(score[m]) > 0:
            aucs.append(roc_auc_score(truth[m], score[m]))
            aps.append(average_precision_score(truth[m], score[m]))
    return {"auc": float(np.mean(aucs)) if aucs else float("nan"), "ap": float(np.mean(aps)) if aps else float("nan")}


def summary(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conflict", type=float, nargs="+", default=[0.01, 0.02])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=None,
                   help=f"default: {' '.join(DEFAULT_METHODS)} "
                        "(also: jtt-mix, dbvae-mix, dbvae-auto, default-threshold0)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--digits", choices=SOURCES, default="mnist", help="digit source (bench/mnist_digits.py)")
    p.add_argument("--upweight", type=float, default=50.0)
    p.add_argument("--error-epoch", type=int, default=1)
    p.add_argument("--error-steps", type=int, default=training.ERROR_STEPS,
                   help="take the error set after this many steps of --error-epoch when it is longer; 0: at its end")
    p.add_argument("--audit", action="store_true", help="also audit each DB-VAE's training set (discovery)")
    p.add_argument("--quick", action="store_true", help="1 seed, 1 fraction, 2 epochs: a smoke run")
    p.add_argument("--json", type=Path, default=None, help="also write every figure here")
    p.add_argument("--keep", type=Path, default=None,
                   help="keep the trained models and audits under this folder (default: a temporary one)")
    p.add_argument("--reuse", action="store_true",
                   help="with --keep: evaluate and audit the models kept there instead of training them again")
    args = p.parse_args()
    if args.quick:
        args.conflict, args.seeds, args.epochs, args.n_train = [0.01], [0], 2, 1000
    table = methods(args.upweight, args.error_epoch, args.error_steps)
    names = args.methods or DEFAULT_METHODS
    results: dict = {}
    for fraction in args.conflict:
        for seed in args.seeds:
            data = make_colored_mnist(fraction, n_train=args.n_train, n_val=1000, n_test=args.n_test,
                                      image_size=args.image_size, seed=seed, digits=args.digits)
            with tempfile.TemporaryDirectory(prefix="debias-bench-") as tmp:
                folder = Path(tmp) if args.keep is None else args.keep / f"{fraction:g}-seed{seed}"
                for name in names:
                    r = run(name, *table[name], data, args, seed, folder)
                    results.setdefault(str(fraction), {}).setdefault(name, []).append(r)
                    print(f"conflict {fraction:.3f} seed {seed} {name:12} worst {r['worst']:.3f} "
                          f"avg {r['average']:.3f} {r['seconds']:6.1f}s "
                          + (f"chose {r['chosen']} " if "chosen" in r else "")
                          + " ".join(f"{k} {v:.3f}" for k, v in r.items()
                                     if k.startswith(("weight_", "error_set_", "under_rep_", "top_"))),
                          flush=True)
    print(f"\n{args.epochs} epochs, {args.n_train} training images at {args.image_size}px, "
          f"upweight {args.upweight:g} after epoch {args.error_epoch}"
          + (f" step {args.error_steps}" if args.error_steps else "") + f"; mean +- sd over seeds {args.seeds}")
    for fraction, by_method in results.items():
        print(f"\nconflicting {float(fraction):.1%}")
        print(f"{'method':12} {'worst group':>16} {'average':>16} {'seconds':>10}  discovery (AUC / AP)")
        for name, runs in by_method.items():
            disc = "  ".join(f"{kind} {summary([r[f'{kind}_auc'] for r in runs])} / "
                             f"{summary([r[f'{kind}_ap'] for r in runs])}"
                             for kind in ("error_set", "weight", "under_rep") if f"{kind}_auc" in runs[0])
            if "top_subgroup_precision" in runs[0]:
                disc += f"  top subgroup precision {summary([r['top_subgroup_precision'] for r in runs])}"
            print(f"{name:12} {summary([r['worst'] for r in runs]):>16} {summary([r['average'] for r in runs]):>16} "
                  f"{np.mean([r['seconds'] for r in runs]):10.1f}  {disc}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1))


if __name__ == "__main__":
    main()
