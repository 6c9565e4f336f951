"""Tiny synthetic data shared by the tests: 16x16 images, a few dozen samples."""
from __future__ import annotations

import numpy as np
import pytest

from audit.synth import make_synthetic, save_npz

SIZE = 16


@pytest.fixture(scope="session")
def tiny_dataset():
    return make_synthetic(24, 24, image_size=SIZE, seed=0)


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory, tiny_dataset):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_npz(tiny_dataset, path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)
