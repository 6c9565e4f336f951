"""Folders of image files: a `manifest.csv` layout or one sub-folder per class."""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from ..dataset import ImageDataset
from ..errors import DatasetError
from ..imagecache import IMAGE_SUFFIXES, decode_files
from ..untrusted import MAX_MANIFEST_BYTES, clean_attribute
from .common import (
    FORMATS_HINT,
    MANIFEST,
    Request,
    binary_labels,
    check_attribute,
    check_before_decoding,
    is_absolute,
    is_junk,
    positive_not_applicable,
    rel,
)

# Folder names that say "this is the positive class" / "this is the negative class".
POSITIVE_NAMES = {"1", "face", "faces", "positive", "positives", "pos", "true", "yes"}
NEGATIVE_NAMES = {"0", "negative", "negatives", "neg", "false", "no", "not_face", "not_faces", "nonface",
                  "non_face", "non_faces", "notface", "background"}


def load_folder_request(req: Request) -> ImageDataset:
    return load_folder(req.path, req, display_root=req.path)


def load_folder(root: Path, req: Request, display_root: Path) -> ImageDataset:
    """Load a manifest or class-folder layout found at `root`.

    display_root: what file names in messages are relative to (the zip's root
    for zips, so users see the names they packed).
    """
    if (root / MANIFEST).is_file():
        if req.positive is not None:
            raise positive_not_applicable(req.positive, f"{req.source} has {MANIFEST} with 0/1 labels")
        files, labels, attributes, problems = _read_manifest(root, req, display_root)
    else:
        files, labels = _read_class_folders(root, req, display_root)
        attributes, problems = pd.DataFrame(), []
    check_before_decoding(labels, attributes, req.source)
    with req.store(len(files)) as store:
        names = [rel(f, display_root) for f in files]
        decode_files(files, names, store.images, req.image_size, req.limits.max_pixels, req.source)
        return store.commit(labels, attributes, req.source, problems)


def _read_manifest(
    root: Path, req: Request, display_root: Path
) -> tuple[list[Path], np.ndarray, pd.DataFrame, list[str]]:
    manifest = root / MANIFEST
    where = rel(manifest, display_root)
    size = manifest.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise DatasetError(
            f"{where} in {req.source} is {size} bytes, more than {MAX_MANIFEST_BYTES}; "
            f"keep only path, label and short attribute columns"
        )
    try:
        # utf-8-sig: spreadsheets often start CSV files with a byte-order mark.
        # nrows: one row past the limit is enough to refuse a longer table.
        table = pd.read_csv(manifest, dtype={"path": str}, encoding="utf-8-sig", nrows=req.limits.max_samples + 1)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as e:
        raise DatasetError(
            f"cannot read {where} in {req.source}: {' '.join(str(e).split())}; "
            f"it must be a UTF-8 CSV with columns path,label"
        ) from None
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise DatasetError(
            f"{where} in {req.source} lacks column(s) {', '.join(missing)} "
            f"(found {', '.join(map(str, table.columns))}); "
            f"the header must name path and label"
        )
    for name in table.columns.drop(["path", "label"]):
        check_attribute(str(name), f"{where} in {req.source}")
    req.limits.check_samples(len(table), req.image_size, f"{where} in {req.source}")
    line = lambda i: f"line {i + 2}"  # noqa: E731 - row 0 is on line 2, after the header
    labels = binary_labels(table["label"], f"column 'label' of {where} in {req.source}", line)
    root_resolved = root.resolve()
    files: list[Path] = []
    absent: list[str] = []
    for i, raw in enumerate(table["path"]):
        if not isinstance(raw, str) or not raw.strip():
            raise DatasetError(f"{where} {line(i)} in {req.source} has an empty path; give every row an image path")
        if any(ord(c) < 32 or ord(c) == 127 for c in raw):
            raise DatasetError(
                f"{where} {line(i)} in {req.source}: path {raw!r} contains a control character (NUL, newline, ...); "
                f"fix it"
            )
        if is_absolute(raw):
            raise DatasetError(
                f"{where} {line(i)} in {req.source}: path {raw!r} is absolute; "
                f"paths must be relative to the folder holding {MANIFEST}"
            )
        full = root.joinpath(*PurePosixPath(raw.replace("\\", "/")).parts)
        if not full.resolve().is_relative_to(root_resolved):
            raise DatasetError(
                f"{where} {line(i)} in {req.source}: path {raw!r} points outside the folder holding {MANIFEST}; "
                f"keep every image inside it"
            )
        if full.suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(
                f"{where} {line(i)} in {req.source}: {raw!r} is not an image file "
                f"(expected {', '.join(IMAGE_SUFFIXES)})"
            )
        if not full.is_file():
            absent.append(f"{raw} ({line(i)})")
        files.append(full)
    if absent:
        raise DatasetError(
            f"{where} in {req.source} lists {len(absent)} file(s) that do not exist: {', '.join(absent[:5])}"
            f"{', ...' if len(absent) > 5 else ''}; fix the paths or remove the rows"
        )
    attributes = table.drop(columns=["path", "label"]).reset_index(drop=True)
    for name in attributes.columns:
        attributes[name] = clean_attribute(f"column {str(name)!r} of {where} in {req.source}", attributes[name], line)
    problems: list[str] = []
    repeated = table["path"][table["path"].duplicated()].unique().tolist()
    if repeated:
        problems.append(f"{where} lists {len(repeated)} path(s) more than once, e.g. {repeated[:3]}")
    return files, labels, attributes, problems


def _read_class_folders(root: Path, req: Request, display_root: Path) -> tuple[list[Path], np.ndarray]:
    entries = [e for e in sorted(root.iterdir()) if not is_junk(e.name)]
    folders = [e for e in entries if e.is_dir()]
    names = [f.name for f in folders]
    stray = [e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES]
    if not folders and not stray:
        raise DatasetError(f"folder {req.source} has no {MANIFEST} and no class sub-folders: {FORMATS_HINT}")
    if stray:
        raise DatasetError(
            f"{req.source} has images outside any class folder "
            f"({', '.join(rel(e, display_root) for e in stray[:3])}); "
            f"move each image into its class sub-folder or add a {MANIFEST}"
        )
    if len(folders) != 2:
        raise DatasetError(
            f"{req.source} needs exactly two class sub-folders (positive and negative), found {len(folders)}: "
            f"{', '.join(names) or 'none'}; or add a {MANIFEST} with path,label columns"
        )
    pos = _pick_positive(names, req.positive, req.source)
    files: list[Path] = []
    labels: list[int] = []
    for folder in folders:
        found = _list_images(folder, display_root, req.source, req.limits.max_samples - len(files))
        files += found
        labels += [int(folder.name == pos)] * len(found)
    return files, np.array(labels, dtype=np.int64)


def _pick_positive(names: list[str], positive: str | None, source: str) -> str:
    if positive is not None:
        if positive not in names:
            raise DatasetError(
                f"--positive {positive!r} is not a class folder of {source}; choose one of: {', '.join(names)}"
            )
        return positive
    said_positive = [n for n in names if n.lower() in POSITIVE_NAMES]
    said_negative = [n for n in names if n.lower() in NEGATIVE_NAMES]
    if len(said_positive) == 1:
        return said_positive[0]
    if not said_positive and len(said_negative) == 1:
        return next(n for n in names if n != said_negative[0])
    raise DatasetError(
        f"cannot tell which class folder of {source} is the positive class (folders: {', '.join(names)}); "
        f"pass --positive NAME, e.g. --positive {names[0]}"
    )


def _list_images(folder: Path, display_root: Path, source: str, room: int) -> list[Path]:
    """Every image under `folder`, recursively, in a stable order; other files are an error.

    room: how many more samples the dataset may hold (max_samples); one more is enough to refuse.
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
        for name in sorted(filenames):
            if is_junk(name):
                continue
            path = Path(dirpath, name)
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DatasetError(
                    f"{rel(path, display_root)} in {source} is not an image "
                    f"(expected {', '.join(IMAGE_SUFFIXES)}); remove it from the class folder"
                )
            found.append(path)
            if len(found) > room:
                return found  # Request.store refuses the total, naming max_samples
    return found
