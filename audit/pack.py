"""`debias pack`: a folder of one's own images -> one file the CLI and the service read.

The folder is first read with the loaders (audit.loaders), so it gets every check
a dataset gets and messages name its own files. Then:
- `.npz`: the decoded images (at `image_size`), labels and attributes; missing
  attribute text is written as "" (the engine's "no value", like NaN);
- `.zip`: the original files, exactly those the loader read (manifest.csv and
  its images, or the class folders), so the service can resize them itself.
The file is written beside its target and moved into place at the end: a refused
folder or a failure leaves nothing behind.
"""
from __future__ import annotations

import os
import secrets
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .dataset import ImageDataset
from .errors import DatasetError, DebiasError
from .limits import MAX_ZIP_BYTES
from .loaders import MANIFEST, load_dataset
from .loaders.common import is_junk
from .untrusted import Limits

FORMATS = (".zip", ".npz")
# Formats that are already compressed: stored as they are (deflating them costs time and saves nothing).
_STORED = {".jpg", ".jpeg", ".png", ".gif", ".webp"}


def pack_folder(folder: str | Path, out: str | Path, image_size: int = 64, positive: str | None = None,
                force: bool = False, **limits) -> ImageDataset:
    """Write `folder` (a manifest or class-folder layout) to `out` (.zip or .npz); returns the dataset read.

    limits: load_dataset's bounds (max_samples, max_decoded_bytes, ...), its defaults when not given.
    """
    folder, out = Path(folder), Path(out)
    check_paths(folder, out, force)
    dataset = load_dataset(folder, image_size=image_size, positive=positive, **limits)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name rather than mkstemp: the file gets the user's usual permissions (mkstemp's are 0600).
    tmp = out.with_name(f".{out.stem}.{secrets.token_hex(4)}{out.suffix}.partial")
    try:
        if out.suffix.lower() == ".npz":
            write_npz(dataset, tmp)
        else:
            write_zip(folder, _members(folder), tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dataset


def check_paths(folder: Path, out: Path, force: bool) -> None:
    """Refuse what cannot be packed before reading anything."""
    if out.suffix.lower() not in FORMATS:
        raise DebiasError(f"--out must end in .zip or .npz, got {str(out)!r}")
    if not folder.exists():
        raise DatasetError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise DatasetError(f"{folder} is a file; pack reads a folder of images (.npz, .h5 and .zip files are read "
                           f"as they are)")
    if out.is_dir():
        raise DebiasError(f"--out {out} is a folder; give a file name ending in .zip or .npz")
    if out.exists() and not force:
        raise DebiasError(f"{out} already exists; pass --force to replace it or choose a new --out")


def write_npz(dataset: ImageDataset, path: str | Path) -> None:
    """images, labels and attr_<name>: numbers stay numbers (NaN = no value), text with "" for no value."""
    arrays = {"images": np.asarray(dataset.images), "labels": np.asarray(dataset.labels)}
    for name in dataset.attributes.columns:
        column = dataset.attributes[name]
        if column.dtype.kind in "biuf":
            arrays[f"attr_{name}"] = column.to_numpy()
        else:
            arrays[f"attr_{name}"] = np.asarray(column.map(lambda v: "" if pd.isna(v) else str(v)), dtype=str)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _members(folder: Path) -> list[tuple[Path, str]]:
    """(file, name in the zip) for every file the loader read, after load_dataset accepted the folder."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        paths = pd.read_csv(manifest, dtype={"path": str}, usecols=["path"], encoding="utf-8-sig")["path"]
        names = dict.fromkeys(PurePosixPath(p.replace("\\", "/")).as_posix() for p in paths)  # once each, in order
        climbing = [n for n in names if ".." in PurePosixPath(n).parts]
        if climbing:  # inside the folder, but a zip entry with '..' is refused as an escape
            raise DatasetError(f"{MANIFEST} in {folder} lists {climbing[0]!r}, with '..'; write the path without "
                               f"'..' to pack it into a zip")
        return [(manifest, MANIFEST)] + [(folder.joinpath(*PurePosixPath(n).parts), n) for n in names]
    members = []
    for cls in sorted(e for e in folder.iterdir() if e.is_dir() and not is_junk(e.name)):
        for dirpath, dirnames, filenames in os.walk(cls):  # the order and junk rule of the class-folder loader
            dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
            for name in sorted(f for f in filenames if not is_junk(f)):
                path = Path(dirpath, name)
                members.append((path, path.relative_to(folder).as_posix()))
    return members


def write_zip(folder: Path, members: list[tuple[Path, str]], path: str | Path) -> None:
    """The members under their names; refuses what the zip loader would (file size, total size)."""
    per_file, total = Limits().max_image_file_bytes, 0
    with zipfile.ZipFile(path, "w") as archive:
        for file, name in members:
            size = file.stat().st_size
            total += size
            if name != MANIFEST and size > per_file:
                raise DatasetError(f"{name} in {folder} is {size} bytes, more than the {per_file} a zip may hold "
                                   f"for one image; shrink it or pack to .npz")
            if total > MAX_ZIP_BYTES:
                raise DatasetError(f"{folder} holds more than {MAX_ZIP_BYTES} bytes of images, the most a zip may "
                                   f"unpack to; pack to .npz (decoded at --image-size) or split the folder")
            stored = file.suffix.lower() in _STORED
            archive.write(file, name, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
