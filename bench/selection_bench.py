"""Which epoch to keep, chosen without group labels: selection rules on the held-out validation split.

The geometric error schedule lifts Colored MNIST's worst group past 0.8 but loses to ERM on the planted
faces (README "Debiasing on real images"): its last epochs train almost only on the error set, which on
the faces is not the minority. Hypothesis: choosing the epoch by a validation figure that needs no group
labels (the worst of JTT's inferred groups, class x error set) stops before that overshoot where it
happens and keeps the late epochs where they help.

Per dataset, schedule and seed, one DB-VAE trains with a tenth of each class held out (val_fraction 0.1);
every epoch's checkpoint is scored on the balanced test set. Printed, mean +- sd over seeds: the test
worst-group accuracy of the epoch each rule keeps.

  last       the last epoch (what ships today)
  val-acc    the best held-out accuracy
  val-class  the best held-out worst-class accuracy (the issue's allowed criterion)
  val-group  the best held-out worst inferred group (class x error set)
  best       the best test worst group over epochs: an upper reference that peeks at the test labels

and, per dataset, "auto": the last epoch of the schedule whose last held-out worst inferred group is
higher (ties: constant), what `--error-schedule auto` keeps (audit/schedule_choice.py).

    cd bench && python selection_bench.py                       # Colored MNIST 1% and planted faces, 3 seeds
    cd bench && python selection_bench.py --data mnist --seeds 0
    cd bench && python selection_bench.py --summary out/selection_bench.json   # the tables again, no training
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from colored_mnist import make_colored_mnist
from quality import GROUP_BY, design_prevalence

from audit.checkpoint import checkpoint_path, load_training_state, model_from_state
from audit.evaluation import evaluate
from audit.models import ModelConfig
from audit.pipeline import train_model
from audit.synth import make_synthetic
from audit.training import TrainConfig

RULES = {"last": None, "val-acc": "val_accuracy", "val-class": "val_worst_class_accuracy",
         "val-group": "val_worst_inferred_group_accuracy"}


def datasets(name: str, seed: int, args):
    """(train, test, group_by, image_size) of a benchmark dataset."""
    if name == "mnist":
        train, _val, test = make_colored_mnist(args.conflict, n_train=args.n_train, n_val=1000, n_test=2000,
                                               image_size=32, seed=seed)
        return train, test, ["color"], 32
    train = make_synthetic(args.faces, args.faces, 64, seed=seed, prevalence=design_prevalence("planted", 0.02))
    test = make_synthetic(600, 600, 64, seed=seed + 1000, balanced=True)  # as bench/quality.py
    return train, test, GROUP_BY, 64


def per_epoch_worst(model_dir: Path, epochs: int, test, group_by) -> list[float]:
    out = []
    for epoch in range(1, epochs + 1):
        path = checkpoint_path(model_dir, epoch)
        model = model_from_state(load_training_state(path), path)
        out.append(evaluate(model, test, group_by, torch.device("cpu"), n_boot=10)["worst_group_accuracy"])
    return out


def choose(history: list[dict], key: str | None, first_with_errors: int) -> int:
    """0-based epoch a rule keeps: the last, or the best by `key` among epochs that have it (ties: the later)."""
    if key is None:
        return len(history) - 1
    scored = [(h[key], i) for i, h in enumerate(history) if key in h and i >= first_with_errors]
    return max(scored)[1] if scored else len(history) - 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["mnist", "faces"], choices=["mnist", "faces"])
    p.add_argument("--schedules", nargs="+", default=["constant", "geometric"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--conflict", type=float, default=0.01)
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--faces", type=int, default=3000, help="faces and non-faces each (planted design, as "
                                                          "bench/quality.py)")
    p.add_argument("--json", type=Path)
    p.add_argument("--summary", type=Path, help="print the tables of an earlier run's --json and stop")
    args = p.parse_args()
    if args.summary:
        rows = json.loads(args.summary.read_text())
        first = next(iter(next(iter(rows.values())).values()))
        summarise(rows, len(first[0]["worst_by_epoch"]), f"{len(first)} seeds")
        return
    rows: dict = {}
    for data in args.data:
        for seed in args.seeds:
            train, test, group_by, size = datasets(data, seed, args)
            for schedule in args.schedules:
                with tempfile.TemporaryDirectory(prefix="debias-select-") as tmp:
                    started = time.perf_counter()
                    result = train_model(train, Path(tmp) / "m", ModelConfig(method="dbvae", image_size=size),
                                         TrainConfig(epochs=args.epochs, seed=seed, device="cpu", val_fraction=0.1,
                                                     error_upweight=50.0, error_schedule=schedule),
                                         progress=False)
                    worst = per_epoch_worst(Path(tmp) / "m", args.epochs, test, group_by)
                history = result.history
                picked = {rule: choose(history, key, 1) for rule, key in RULES.items()}
                run = {"worst_by_epoch": worst, "picked": picked, "history": history,
                       "seconds": time.perf_counter() - started}
                rows.setdefault(data, {}).setdefault(schedule, []).append(run)
                print(f"{data} seed {seed} {schedule:9} test worst by epoch "
                      + " ".join(f"{w:.3f}" for w in worst)
                      + " | val-group " + " ".join(f"{h.get('val_worst_inferred_group_accuracy', float('nan')):.3f}"
                                                   for h in history)
                      + " | kept " + " ".join(f"{r}={i + 1}" for r, i in picked.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))
    summarise(rows, args.epochs, f"seeds {args.seeds}")


def summarise(rows: dict, epochs: int, seeds: str) -> None:
    print(f"\n{epochs} epochs, DB-VAE with error upweight 50, val_fraction 0.1; test worst group of the "
          f"epoch each rule keeps, mean +- sd over {seeds}")
    for data, by_schedule in rows.items():
        print(f"\n{data}")
        print(f"{'schedule':10}" + "".join(f"{r:>18}" for r in [*RULES, "best"]))
        for schedule, runs in by_schedule.items():
            cells = [_mean_sd([r["worst_by_epoch"][r["picked"][rule]] for r in runs]) for rule in RULES]
            cells.append(_mean_sd([max(r["worst_by_epoch"]) for r in runs]))
            print(f"{schedule:10}" + "".join(f"{c:>18}" for c in cells))
        if {"constant", "geometric"} <= by_schedule.keys():
            kept = []
            for c, g in zip(by_schedule["constant"], by_schedule["geometric"]):
                score = [r["history"][-1].get("val_worst_inferred_group_accuracy", -1.0) for r in (c, g)]
                kept.append(g["worst_by_epoch"][-1] if score[1] > score[0] else c["worst_by_epoch"][-1])
            print(f"{'auto':10}{_mean_sd(kept):>18}  (last epoch of the schedule the held-out worst inferred "
                  f"group prefers: " + ", ".join(f"{k:.3f}" for k in kept) + ")")


def _mean_sd(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


if __name__ == "__main__":
    main()
