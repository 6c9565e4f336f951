"""Read every supported dataset format into one ImageDataset.

Formats (see ARCHITECTURE.md, "Contracts"):
- `.npz` with `images`, `labels` and optional `attr_<name>` arrays;
- `.h5` / `.hdf5` with datasets of the same names (the 6.S191 lab's train_face.h5);
- a folder with `manifest.csv` (`path`, `label`, other columns are attributes);
- a folder with exactly two class sub-folders (`positive` names the positive one);
- a `.zip` holding either folder layout, possibly inside one top-level folder.

Every image comes out as uint8 RGB, centre-cropped to a square and resized to
`image_size` with PIL's antialiased bilinear filter, whatever the format, so
the same pictures give the same array.

Inputs are untrusted (uploads): every reader checks what a file declares
against `audit.untrusted.Limits` before reading it, never follows a reference
out of it, and normalises attribute text at ingest. Modules: `arrays` (.npz,
.h5), `folders` (manifest, class folders), `zips` (.zip), `common`.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..dataset import ImageDataset
from ..errors import DatasetError
from ..imagecache import cache_key, load_cached, resolve_cache_dir
from ..limits import MAX_DECODED_BYTES, MAX_EXPANSION, MAX_PIXELS, MAX_SAMPLES, MAX_ZIP_BYTES, MAX_ZIP_ENTRIES
from ..untrusted import Limits
from .arrays import load_h5, load_npz
from .common import FORMATS_HINT, MANIFEST, RESERVED_ATTRIBUTES, Request, positive_not_applicable
from .folders import load_folder_request
from .zips import load_zip

__all__ = ["load_dataset", "Limits", "FORMATS_HINT", "MANIFEST", "RESERVED_ATTRIBUTES",
           "MAX_ZIP_ENTRIES", "MAX_ZIP_BYTES"]


def load_dataset(
    path: str | Path,
    image_size: int = 64,
    positive: str | None = None,
    cache_dir: str | Path | None = None,
    max_pixels: int = MAX_PIXELS,
    max_zip_entries: int = MAX_ZIP_ENTRIES,
    max_zip_bytes: int = MAX_ZIP_BYTES,
    max_samples: int = MAX_SAMPLES,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
    max_expansion: float = MAX_EXPANSION,
) -> ImageDataset:
    """Load a dataset file or folder as uint8 RGB images of image_size x image_size.

    positive: for class-folder layouts, the name of the positive class folder;
        needed only when the folder names do not say it (face, positive, 1, ...).
    cache_dir: keep the decoded images there (default $DEBIAS_CACHE_DIR) and
        memory-map them on later loads of the same, unchanged input.
    Limits on hostile input, each checked before the bytes it bounds are read:
    max_pixels: largest image (width x height) a file or array may hold.
    max_zip_entries, max_zip_bytes: a zip's entry count and unpacked size.
    max_samples: images in the dataset.
    max_decoded_bytes: the declared size of each .npz/.h5 array (and of the
        labels and attributes together), and of the decoded images
        (N x image_size x image_size x 3).
    max_expansion: declared / stored bytes of one compressed array or zip
        entry (and of a zip as a whole), judged only above a few MiB.
    Raises DatasetError naming the problem and the fix; a failed load leaves
    no cache entry and no temporary file.
    """
    image_size = _positive_int("image_size", image_size)
    limits = Limits(max_pixels=max_pixels, max_samples=max_samples, max_decoded_bytes=max_decoded_bytes,
                    max_expansion=max_expansion, max_zip_entries=max_zip_entries, max_zip_bytes=max_zip_bytes)
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no such file or folder: {path}")
    reader = _reader_for(path)
    if positive is not None and reader in (load_npz, load_h5):
        raise positive_not_applicable(positive, f"{path} carries its own 0/1 labels")
    cache = resolve_cache_dir(cache_dir)
    key = cache_key(path, image_size, positive) if cache is not None else None
    request = Request(path, image_size, positive, limits, cache, key)
    if cache is not None and key is not None:
        cached = load_cached(cache, key, image_size, request.source)
        if cached is not None:
            return cached
    return reader(request)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DatasetError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _reader_for(path: Path) -> Callable[[Request], ImageDataset]:
    if path.is_dir():
        return load_folder_request
    readers = {".npz": load_npz, ".h5": load_h5, ".hdf5": load_h5, ".zip": load_zip}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DatasetError(f"unknown dataset format for {path}: {FORMATS_HINT}")
    return reader
