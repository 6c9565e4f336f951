"""Tiny synthetic data shared by the tests: 16x16 images, a few dozen samples."""
from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from audit.synth import make_synthetic, save_npz


def pytest_terminal_summary(terminalreporter):
    """One line per reason tests were skipped (e.g. no DEBIAS_TEST_DATABASE_URL), without needing -rs."""
    reasons = Counter(report.longrepr[2].removeprefix("Skipped: ")
                      for report in terminalreporter.stats.get("skipped", [])
                      if isinstance(report.longrepr, tuple))
    for reason, n in reasons.most_common():
        terminalreporter.write_line(f"{n} skipped: {reason}")


SIZE = 16
# Model sets train their members one after another in the tests: spawning a process per member would cost
# seconds each (importing torch) on tiny data; tests/test_modelset.py covers the side-by-side path.
os.environ.setdefault("DEBIAS_MEMBER_PROCESSES", "1")


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
