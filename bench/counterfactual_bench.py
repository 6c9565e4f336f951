"""Counterfactual flip rates on binary Colored MNIST: does changing only the colour change the decision?

Per seed: a CycleGAN translator (audit/cyclegan.py) learns red <-> green on --per-value training images of each
colour (its training time is printed: the target is under 10 minutes for 2,000 per value at 32px); then per
conflict fraction `standard` (ERM) and the default `dbvae` train on the biased split (bench/debias_bench.py's
definitions, fixed epochs) and `debias counterfactual` (audit.counterfactual, the translator reused) tests
each on the balanced test split. Printed per seed: each direction's flip rate with its 95% Wilson interval,
the translation checks (probe share on target, cycle L1), the model's worst-group accuracy; then mean +- sd
over seeds; and the time to translate 10,000 images (target under 30 s).

    python bench/counterfactual_bench.py --conflict 0.01 0.02 --seeds 0 1 2
    python bench/counterfactual_bench.py --quick
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from colored_mnist import make_colored_mnist
from debias_bench import methods
from debias_bench import run as train_and_score

import audit.training as training
from audit.counterfactual import run_counterfactual
from audit.cyclegan import TranslatorConfig, load_translator, train_translator
from audit.models import pick_device

MODELS = ("standard", "default")   # debias_bench.py's names; --models adds e.g. dbvae-constant


def train_colour_translator(train, per_value: int, epochs: int, seed: int, folder: Path) -> dict:
    colour = train.attributes["color"].to_numpy()
    rng = np.random.default_rng(seed)
    picked = [np.sort(rng.choice(np.flatnonzero(colour == c), per_value, replace=False)) for c in ("red", "green")]
    cfg = TranslatorConfig(attribute="color", values=("red", "green"), image_size=train.image_size, epochs=epochs,
                           seed=seed)
    started = time.perf_counter()
    translator = train_translator(train.images[picked[0]], train.images[picked[1]], cfg, pick_device("cpu"))
    seconds = time.perf_counter() - started
    translator.save(folder)
    return {"seconds": seconds, "epochs": epochs, "per_value": per_value}


def translate_speed(folder: Path, images: np.ndarray, n: int = 10_000) -> float:
    translator = load_translator(folder)
    tiled = np.resize(images, (n, *images.shape[1:]))
    started = time.perf_counter()
    translator.translate(tiled, "a_to_b")
    return time.perf_counter() - started


def interval(cell: dict) -> str:
    lo, hi = cell["flip_rate_ci"]
    return f"{cell['flip_rate']:.3f} [{lo:.3f}, {hi:.3f}]"


def summary(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conflict", type=float, nargs="+", default=[0.01, 0.02])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6, help="classifier epochs (as bench/debias_bench.py)")
    p.add_argument("--translator-epochs", type=int, default=8)
    p.add_argument("--per-value", type=int, default=2000, help="training images of each colour for the translator")
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--quick", action="store_true", help="1 seed, 1 fraction, small: a smoke run")
    p.add_argument("--json", type=Path, default=None, help="also write every figure here")
    p.add_argument("--models", nargs="+", default=list(MODELS), help="debias_bench.py's method names to test")
    p.add_argument("--models-from", type=Path, default=None,
                   help="test the models a `debias_bench.py --keep DIR` run trained (DIR/FRACTION-seedS/NAME) "
                        "instead of training them again")
    args = p.parse_args()
    if args.quick:
        args.conflict, args.seeds, args.epochs, args.n_train = [0.01], [0], 2, 1000
        args.translator_epochs, args.per_value, args.n_test = 1, 100, 200
    # debias_bench.run's options: the bench's defaults
    run_args = argparse.Namespace(image_size=32, latent_dim=100, epochs=args.epochs, batch_size=32, audit=False,
                                  reuse=args.models_from is not None)
    table = methods(50.0, 1, training.ERROR_STEPS)
    results: dict = {"translator": [], "runs": {}}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="debias-cf-bench-") as tmp:
            tmp = Path(tmp)
            for k, fraction in enumerate(args.conflict):
                data = make_colored_mnist(fraction, n_train=args.n_train, n_val=1000, n_test=args.n_test,
                                          image_size=32, seed=seed)
                if k == 0:  # one translator per seed: colour is the same task whatever the fraction
                    t = train_colour_translator(data[0], args.per_value, args.translator_epochs, seed,
                                                tmp / "translator")
                    t["translate_10k_seconds"] = translate_speed(tmp / "translator", data[2].images)
                    results["translator"].append(t)
                    print(f"seed {seed} translator: {t['per_value']} per colour, {t['epochs']} epochs, "
                          f"{t['seconds']:.1f} s; translating 10,000 images {t['translate_10k_seconds']:.1f} s",
                          flush=True)
                models = tmp / str(fraction) if args.models_from is None else \
                    args.models_from / f"{fraction:g}-seed{seed}"
                (tmp / str(fraction)).mkdir(parents=True, exist_ok=True)
                for name in args.models:
                    scored = train_and_score(name, *table[name], data, run_args, seed, models)
                    cf = run_counterfactual(models / name, data[2], "color", ("red", "green"),
                                            tmp / str(fraction) / f"{name}-cf", translator_dir=tmp / "translator",
                                            device="cpu")
                    row = {"worst": scored["worst"], "average": scored["average"], "warnings": cf["warnings"],
                           "directions": cf["directions"]}
                    results["runs"].setdefault(str(fraction), {}).setdefault(name, []).append(row)
                    cells = "  ".join(f"{d['from']}->{d['to']} flips {interval(d['classes'][0])} "
                                      f"(probe {d['translation']['probe_target_share']:.2f}, cycle L1 {d['translation']['cycle_error']:.3f})"
                                      for d in cf["directions"])
                    print(f"conflict {fraction:.3f} seed {seed} {name:14} worst {scored['worst']:.3f}  {cells}"
                          + (f"  WARNINGS: {cf['warnings']}" if cf["warnings"] else ""), flush=True)
    print(f"\n{args.epochs} classifier epochs, {args.n_train} training images at 32px; translator "
          f"{args.translator_epochs} epochs on {args.per_value} training images per colour; mean +- sd over seeds "
          f"{args.seeds}; flip rate = share of test decisions that change when only the colour is translated")
    t = results["translator"]
    print(f"translator training {summary([r['seconds'] for r in t])} s; translating 10,000 images "
          f"{summary([r['translate_10k_seconds'] for r in t])} s")
    for fraction, by_model in results["runs"].items():
        print(f"\nconflicting {float(fraction):.1%}")
        print(f"{'model':14} {'worst group':>16} {'flips red->green':>18} {'flips green->red':>18} "
              f"{'flips (both)':>16}")
        for name, rows in by_model.items():
            flips = [[r["directions"][d]["classes"][0]["flip_rate"] for r in rows] for d in (0, 1)]
            both = [(r["directions"][0]["classes"][0]["flipped"] + r["directions"][1]["classes"][0]["flipped"])
                    / (r["directions"][0]["n"] + r["directions"][1]["n"]) for r in rows]
            print(f"{name:14} {summary([r['worst'] for r in rows]):>16} {summary(flips[0]):>18} "
                  f"{summary(flips[1]):>18} {summary(both):>16}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **results}, indent=1))


if __name__ == "__main__":
    main()
