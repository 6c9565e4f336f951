"""What every reader shares: the request, label and attribute checks, names and paths."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
import pandas as pd

from ..dataset import ImageDataset
from ..errors import DatasetError
from ..imagecache import ImageStore
from ..untrusted import Limits, check_attribute_name

FORMATS_HINT = "expected .npz, .h5, .hdf5, .zip or a folder with manifest.csv or one sub-folder per class"
MANIFEST = "manifest.csv"
# samples.csv already has these columns; an attribute with the same name would clash.
RESERVED_ATTRIBUTES = ("index", "label", "log_density", "sampling_weight", "anomaly_score", "is_anomaly")
# Files operating systems drop into folders and zips; never part of a dataset.
_JUNK_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class Request:
    """What the caller asked for, passed to every reader."""

    path: Path
    image_size: int
    positive: str | None
    limits: Limits
    cache_dir: Path | None
    key: str | None

    @property
    def source(self) -> str:
        return str(self.path)

    def store(self, n: int) -> ImageStore:
        # The last gate before memory or disk is committed to the decoded images.
        self.limits.check_samples(n, self.image_size, self.source)
        return ImageStore(n, self.image_size, self.cache_dir, self.key)


def positive_not_applicable(positive: str, why: str) -> DatasetError:
    return DatasetError(
        f"positive={positive!r} (--positive) only applies to a folder with one sub-folder per class, "
        f"but {why}; leave --positive out"
    )


def binary_labels(raw: Any, where: str, position: Callable[[int], str] = lambda i: f"index {i}") -> np.ndarray:
    """Labels as int64 (N,), after checking every value is exactly 0 or 1 (the lab stores 0./1. floats)."""
    arr = np.asarray(raw)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DatasetError(f"{where} must have shape (N,) or (N, 1), got {arr.shape}")
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        examples = pd.unique(pd.Series(arr[:1000]).astype(str))[:3].tolist()
        raise DatasetError(
            f"{where} must be the numbers 0 or 1 (1 = positive), got values such as {examples}; relabel them as 0/1"
        )
    bad = (arr != 0) & (arr != 1)  # NaN counts as bad too
    if bad.any():
        values = pd.unique(arr[bad])[:5].tolist()
        first = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"{where} must be 0 or 1 (1 = positive), found {values} in {int(bad.sum())} labels "
            f"(first at {position(first)}); relabel them as 0/1"
        )
    return arr.astype(np.int64)


def check_attribute(name: str, where: str) -> None:
    """An attribute name safe to print, store and write as a column (quotes are fine)."""
    check_attribute_name(name, where)
    if name in RESERVED_ATTRIBUTES or not name.strip():
        raise DatasetError(
            f"{where}: attribute name {name!r} is empty or clashes with an output column "
            f"({', '.join(RESERVED_ATTRIBUTES)}); rename it"
        )


def check_before_decoding(labels: np.ndarray, attributes: pd.DataFrame, source: str) -> None:
    """Run ImageDataset's checks (sample count, both classes, ...) before the slow decoding."""
    placeholder = np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (len(labels), 1, 1, 3))
    ImageDataset(images=placeholder, labels=labels, attributes=attributes, source=source)


def is_absolute(name: str) -> bool:
    """True for /x, \\x and C:x: absolute on POSIX or on Windows, where the file may have been written."""
    return name.replace("\\", "/").startswith("/") or bool(PureWindowsPath(name).drive)


def is_junk(name: str) -> bool:
    return name.startswith(".") or name in _JUNK_NAMES


def rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
