"""The in-memory dataset every loader produces and every stage consumes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import DatasetError


@dataclass
class ImageDataset:
    """Images, binary labels and free-form attributes, aligned by index.

    images: uint8 (N, H, W, 3), possibly a read-only np.memmap.
    labels: int64 (N,) in {0, 1}; 1 is the positive class (face).
    attributes: N rows, one column per attribute; never used for training.
    problems: non-fatal validation findings (skipped files, ...), for reports.
    """

    images: np.ndarray
    labels: np.ndarray
    attributes: pd.DataFrame = field(default_factory=pd.DataFrame)
    source: str = ""
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.attributes is None or len(self.attributes.columns) == 0:
            self.attributes = pd.DataFrame(index=pd.RangeIndex(len(self.labels)))
        validate(self)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def class_counts(self) -> dict[int, int]:
        return {c: int((self.labels == c).sum()) for c in (0, 1)}

    def subset(self, indices: np.ndarray) -> "ImageDataset":
        indices = np.asarray(indices)
        return ImageDataset(
            images=np.asarray(self.images[indices]),
            labels=self.labels[indices],
            attributes=self.attributes.iloc[indices].reset_index(drop=True),
            source=self.source,
            problems=list(self.problems),
        )


def validate(ds: ImageDataset, require_both_classes: bool = True) -> None:
    """Raise DatasetError naming the first broken invariant."""
    where = f" in {ds.source}" if ds.source else ""
    if ds.images.dtype != np.uint8 or ds.images.ndim != 4 or ds.images.shape[-1] != 3:
        raise DatasetError(
            f"images{where} must be uint8 (N, H, W, 3), got {ds.images.dtype} {tuple(ds.images.shape)}"
        )
    if ds.images.shape[1] != ds.images.shape[2]:
        raise DatasetError(f"images{where} must be square, got {ds.images.shape[1]}x{ds.images.shape[2]}")
    n = len(ds.images)
    if ds.labels.ndim != 1 or len(ds.labels) != n:
        raise DatasetError(f"labels{where} has {len(ds.labels)} entries but there are {n} images")
    if len(ds.attributes) != n:
        raise DatasetError(f"attributes{where} have {len(ds.attributes)} rows but there are {n} images")
    if n == 0:
        raise DatasetError(f"dataset{where} holds no samples")
    bad = set(np.unique(ds.labels).tolist()) - {0, 1}
    if bad:
        raise DatasetError(f"labels{where} must be 0 or 1, found {sorted(bad)[:5]}")
    if require_both_classes:
        counts = ds.class_counts()
        for cls, name in ((1, "positive (label 1)"), (0, "negative (label 0)")):
            if counts[cls] == 0:
                raise DatasetError(f"dataset{where} has no {name} samples; both classes are needed")
