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
"""
from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pandas as pd

from .dataset import ImageDataset
from .errors import DatasetError
from .imagecache import (
    IMAGE_SUFFIXES,
    ImageStore,
    cache_key,
    decode_files,
    fill_from_array,
    load_cached,
    resolve_cache_dir,
)

FORMATS_HINT = "expected .npz, .h5, .hdf5, .zip or a folder with manifest.csv or one sub-folder per class"
MANIFEST = "manifest.csv"
# samples.csv already has these columns; an attribute with the same name would clash.
RESERVED_ATTRIBUTES = ("index", "label", "log_density", "sampling_weight", "anomaly_score", "is_anomaly")
# Folder names that say "this is the positive class" / "this is the negative class".
POSITIVE_NAMES = {"1", "face", "faces", "positive", "positives", "pos", "true", "yes"}
NEGATIVE_NAMES = {"0", "negative", "negatives", "neg", "false", "no", "not_face", "not_faces", "nonface",
                  "non_face", "non_faces", "notface", "background"}
# Files operating systems drop into folders and zips; never part of a dataset.
_JUNK_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}

_SAVEZ = "np.savez(path, images=..., labels=...)"

MAX_ZIP_ENTRIES = 100_000
MAX_ZIP_BYTES = 4 << 30


@dataclass(frozen=True)
class _Request:
    """What the caller asked for, passed to every reader."""

    path: Path
    image_size: int
    positive: str | None
    max_pixels: int
    cache_dir: Path | None
    key: str | None
    max_zip_entries: int = MAX_ZIP_ENTRIES
    max_zip_bytes: int = MAX_ZIP_BYTES

    @property
    def source(self) -> str:
        return str(self.path)

    def store(self, n: int) -> ImageStore:
        return ImageStore(n, self.image_size, self.cache_dir, self.key)


def load_dataset(
    path: str | Path,
    image_size: int = 64,
    positive: str | None = None,
    cache_dir: str | Path | None = None,
    max_pixels: int = 4096 * 4096,
    max_zip_entries: int = MAX_ZIP_ENTRIES,
    max_zip_bytes: int = MAX_ZIP_BYTES,
) -> ImageDataset:
    """Load a dataset file or folder as uint8 RGB images of image_size x image_size.

    positive: for class-folder layouts, the name of the positive class folder;
        needed only when the folder names do not say it (face, positive, 1, ...).
    cache_dir: keep the decoded images there (default $DEBIAS_CACHE_DIR) and
        memory-map them on later loads of the same, unchanged input.
    max_pixels: largest image (width x height) a folder may hold, checked
        before decoding so a hostile file cannot exhaust memory.
    max_zip_entries, max_zip_bytes: bounds on a zip's entry count and unpacked
        size (zip bombs).
    Raises DatasetError naming the problem and the fix.
    """
    image_size = _positive_int("image_size", image_size)
    max_pixels = _positive_int("max_pixels", max_pixels)
    max_zip_entries = _positive_int("max_zip_entries", max_zip_entries)
    max_zip_bytes = _positive_int("max_zip_bytes", max_zip_bytes)
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no such file or folder: {path}")
    reader = _reader_for(path)
    if positive is not None and reader in (_load_npz, _load_h5):
        raise _positive_not_applicable(positive, f"{path} carries its own 0/1 labels")
    cache = resolve_cache_dir(cache_dir)
    key = cache_key(path, image_size, positive) if cache is not None else None
    request = _Request(path, image_size, positive, max_pixels, cache, key, max_zip_entries, max_zip_bytes)
    if cache is not None and key is not None:
        cached = load_cached(cache, key, image_size, request.source)
        if cached is not None:
            return cached
    return reader(request)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DatasetError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _reader_for(path: Path) -> Callable[[_Request], ImageDataset]:
    if path.is_dir():
        return _load_folder_request
    readers = {".npz": _load_npz, ".h5": _load_h5, ".hdf5": _load_h5, ".zip": _load_zip}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DatasetError(f"unknown dataset format for {path}: {FORMATS_HINT}")
    return reader


def _positive_not_applicable(positive: str, why: str) -> DatasetError:
    return DatasetError(
        f"positive={positive!r} (--positive) only applies to a folder with one sub-folder per class, "
        f"but {why}; leave --positive out"
    )


# --------------------------------------------------------------------------- arrays (.npz, .h5)


def _load_npz(req: _Request) -> ImageDataset:
    try:
        archive = np.load(req.path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetError(f"cannot read {req.path} as .npz: {e}; save it with {_SAVEZ}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{req.path} holds a single array, not named arrays; save it with {_SAVEZ}")
    with archive:
        names = list(archive.files)

        def read(name: str) -> np.ndarray:
            try:
                return archive[name]
            except ValueError as e:  # object arrays need pickle, which we never load
                raise DatasetError(
                    f"array {name!r} in {req.path} cannot be read without pickle ({e}); store strings as a "
                    f"unicode array, e.g. np.array(values, dtype=str)"
                ) from None

        return _load_arrays(req, names, read, "array", _SAVEZ)


def _load_h5(req: _Request) -> ImageDataset:
    import h5py  # only needed for this format

    try:
        f = h5py.File(req.path, "r")
    except OSError as e:
        raise DatasetError(f"cannot open {req.path} as HDF5: {e}") from None
    with f:
        # Attribute columns come in the file's order: creation order if the file
        # tracks it, else alphabetical (HDF5's default).
        names = [name for name, item in f.items() if isinstance(item, h5py.Dataset)]

        def read(name: str) -> Any:
            ds = f[name]
            if name == "images":
                return ds  # read lazily, in chunks
            if h5py.check_string_dtype(ds.dtype) is not None:
                return np.array(ds.asstr()[()], dtype=str)
            return ds[()]

        return _load_arrays(req, names, read, "dataset", "datasets 'images' and 'labels' at the file's root")


def _load_arrays(
    req: _Request, names: list[str], read: Callable[[str], Any], kind: str, how: str
) -> ImageDataset:
    """Shared path for .npz and .h5: check everything small, then copy images in chunks."""
    for required in ("images", "labels"):
        if required not in names:
            found = ", ".join(repr(n) for n in names) or "nothing"
            raise DatasetError(f"{req.path} has no {required!r} {kind} (found {found}); it needs {how}")
    images = read("images")
    _check_image_array(images, req.source)
    n = int(images.shape[0])
    labels = _binary_labels(read("labels"), f"labels in {req.source}")
    columns = {name[len("attr_"):]: read(name) for name in names if name.startswith("attr_")}
    lengths = {"labels": len(labels), **{f"attr_{k}": len(np.atleast_1d(v)) for k, v in columns.items()}}
    for name, length in lengths.items():
        if length != n:
            raise DatasetError(
                f"{name} in {req.source} has {length} entries but images has {n}; "
                f"every {kind} needs one entry per image"
            )
    attributes = _attributes_from_arrays(columns, req.source)
    ignored = [name for name in names if name not in ("images", "labels") and not name.startswith("attr_")]
    problems = []
    if ignored:
        problems.append(
            f"ignored {kind}s {', '.join(ignored)} in {req.source} (only images, labels and attr_<name> are read)"
        )
    _check_before_decoding(labels, attributes, req.source)
    with req.store(n) as store:
        fill_from_array(images, store.images, req.image_size)
        return store.commit(labels, attributes, req.source, problems)


def _check_image_array(images: Any, source: str) -> None:
    shape = tuple(images.shape)
    looks = "(N, H, W, 3) RGB or (N, H, W) grayscale"
    if len(shape) == 4 and shape[1] in (1, 3) and shape[-1] not in (1, 3):
        raise DatasetError(
            f"images in {source} have shape {shape}, which looks channels-first; it must be {looks}: "
            f"use images.transpose(0, 2, 3, 1)"
        )
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 3)):
        hint = "; drop the alpha channel with images[..., :3]" if len(shape) == 4 and shape[-1] == 4 else ""
        raise DatasetError(f"images in {source} must be {looks}, got shape {shape}{hint}")
    if shape[1] == 0 or shape[2] == 0:
        raise DatasetError(f"images in {source} are empty pictures, shape {shape}")
    dtype = np.dtype(images.dtype)
    if dtype != np.uint8:
        if dtype.kind == "f":
            sample = np.asarray(images[: min(shape[0], 256)])
            top = float(np.nanmax(sample)) if sample.size else 0.0
            fix = "(images * 255).round()" if top <= 1.0 else "images.round().clip(0, 255)"
            raise DatasetError(
                f"images in {source} are {dtype} (max {top:g}); convert them to uint8 0-255 first, "
                f"e.g. {fix}.astype(np.uint8)"
            )
        raise DatasetError(f"images in {source} are {dtype}; convert them to uint8 (values 0-255) first")


def _binary_labels(raw: Any, where: str, position: Callable[[int], str] = lambda i: f"index {i}") -> np.ndarray:
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


def _attributes_from_arrays(columns: Mapping[str, Any], source: str) -> pd.DataFrame:
    data: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise DatasetError(f"attr_{name} in {source} must hold one value per image, shape (N,), got {arr.shape}")
        if arr.dtype.kind == "S":
            arr = np.char.decode(arr, "utf-8")
        if arr.dtype.kind not in "biufU":
            raise DatasetError(f"attr_{name} in {source} has dtype {arr.dtype}; store strings or integers")
        _check_attribute_name(name, f"attr_{name} in {source}")
        data[name] = arr
    return pd.DataFrame(data)


def _check_attribute_name(name: str, where: str) -> None:
    if name in RESERVED_ATTRIBUTES or not name.strip():
        raise DatasetError(
            f"{where}: attribute name {name!r} is empty or clashes with an output column "
            f"({', '.join(RESERVED_ATTRIBUTES)}); rename it"
        )


def _check_before_decoding(labels: np.ndarray, attributes: pd.DataFrame, source: str) -> None:
    """Run ImageDataset's checks (sample count, both classes, ...) before the slow decoding."""
    placeholder = np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (len(labels), 1, 1, 3))
    ImageDataset(images=placeholder, labels=labels, attributes=attributes, source=source)


# --------------------------------------------------------------------------- folders


def _load_folder_request(req: _Request) -> ImageDataset:
    return _load_folder(req.path, req, display_root=req.path)


def _load_folder(root: Path, req: _Request, display_root: Path) -> ImageDataset:
    """Load a manifest or class-folder layout found at `root`.

    display_root: what file names in messages are relative to (the zip's root
    for zips, so users see the names they packed).
    """
    if (root / MANIFEST).is_file():
        if req.positive is not None:
            raise _positive_not_applicable(req.positive, f"{req.source} has {MANIFEST} with 0/1 labels")
        files, labels, attributes, problems = _read_manifest(root, req, display_root)
    else:
        files, labels = _read_class_folders(root, req, display_root)
        attributes, problems = pd.DataFrame(), []
    _check_before_decoding(labels, attributes, req.source)
    with req.store(len(files)) as store:
        names = [_rel(f, display_root) for f in files]
        decode_files(files, names, store.images, req.image_size, req.max_pixels, req.source)
        return store.commit(labels, attributes, req.source, problems)


def _read_manifest(
    root: Path, req: _Request, display_root: Path
) -> tuple[list[Path], np.ndarray, pd.DataFrame, list[str]]:
    manifest = root / MANIFEST
    where = _rel(manifest, display_root)
    try:
        # utf-8-sig: spreadsheets often start CSV files with a byte-order mark
        table = pd.read_csv(manifest, dtype={"path": str}, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise DatasetError(
            f"cannot read {where} in {req.source}: {e}; it must be a UTF-8 CSV with columns path,label"
        ) from None
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise DatasetError(
            f"{where} in {req.source} lacks column(s) {', '.join(missing)} "
            f"(found {', '.join(map(str, table.columns))}); "
            f"the header must name path and label"
        )
    line = lambda i: f"line {i + 2}"  # noqa: E731 - row 0 is on line 2, after the header
    labels = _binary_labels(table["label"], f"column 'label' of {where} in {req.source}", line)
    root_resolved = root.resolve()
    files: list[Path] = []
    absent: list[str] = []
    for i, raw in enumerate(table["path"]):
        if not isinstance(raw, str) or not raw.strip():
            raise DatasetError(f"{where} {line(i)} in {req.source} has an empty path; give every row an image path")
        if _is_absolute(raw):
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
        _check_attribute_name(str(name), f"{where} in {req.source}")
    problems: list[str] = []
    repeated = table["path"][table["path"].duplicated()].unique().tolist()
    if repeated:
        problems.append(f"{where} lists {len(repeated)} path(s) more than once, e.g. {repeated[:3]}")
    return files, labels, attributes, problems


def _read_class_folders(root: Path, req: _Request, display_root: Path) -> tuple[list[Path], np.ndarray]:
    entries = [e for e in sorted(root.iterdir()) if not _is_junk(e.name)]
    folders = [e for e in entries if e.is_dir()]
    names = [f.name for f in folders]
    stray = [e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES]
    if not folders and not stray:
        raise DatasetError(f"folder {req.source} has no {MANIFEST} and no class sub-folders: {FORMATS_HINT}")
    if stray:
        raise DatasetError(
            f"{req.source} has images outside any class folder "
            f"({', '.join(_rel(e, display_root) for e in stray[:3])}); "
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
        found = _list_images(folder, display_root, req.source)
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


def _list_images(folder: Path, display_root: Path, source: str) -> list[Path]:
    """Every image under `folder`, recursively, in a stable order; other files are an error."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_junk(d))
        for name in sorted(filenames):
            if _is_junk(name):
                continue
            path = Path(dirpath, name)
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DatasetError(
                    f"{_rel(path, display_root)} in {source} is not an image "
                    f"(expected {', '.join(IMAGE_SUFFIXES)}); remove it from the class folder"
                )
            found.append(path)
    return found


def _is_absolute(name: str) -> bool:
    """True for /x, \\x and C:x: absolute on POSIX or on Windows, where the file may have been written."""
    return name.replace("\\", "/").startswith("/") or bool(PureWindowsPath(name).drive)


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name in _JUNK_NAMES


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- zip


def _load_zip(req: _Request) -> ImageDataset:
    with tempfile.TemporaryDirectory(prefix="debias-zip-") as tmp:
        dest = Path(tmp)
        _extract_zip(req.path, dest, req.max_zip_entries, req.max_zip_bytes)
        return _load_folder(_dataset_root(dest), req, display_root=dest)


def _extract_zip(path: Path, dest: Path, max_entries: int, max_bytes: int) -> None:
    """Extract every entry after checking them all: no absolute paths, no '..', no symlinks, bounded size."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"cannot open {path} as a zip file: {e}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_entries:
            raise DatasetError(
                f"{path} has {len(infos)} entries, more than the limit of {max_entries}; split the dataset"
            )
        declared = sum(info.file_size for info in infos)
        if declared > max_bytes:
            raise DatasetError(
                f"{path} unpacks to {declared} bytes, more than the limit of {max_bytes}; split the dataset"
            )
        targets = [(info, _safe_entry_parts(info, path)) for info in infos]
        written = 0
        for info, parts in targets:
            if not parts:
                continue
            target = dest.joinpath(*parts)
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:
                    # Count real bytes: a forged header must not let an entry grow past the limits.
                    entry_bytes = 0
                    while block := src.read(1 << 20):
                        entry_bytes += len(block)
                        written += len(block)
                        if entry_bytes > info.file_size or written > max_bytes:
                            raise DatasetError(
                                f"zip entry {info.filename!r} in {path} unpacks to more bytes than it declares; "
                                f"the archive is corrupt or hostile"
                            )
                        dst.write(block)
            except DatasetError:
                raise
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError, ValueError) as e:
                raise DatasetError(f"cannot extract zip entry {info.filename!r} from {path}: {e}") from None


def _safe_entry_parts(info: zipfile.ZipInfo, path: Path) -> tuple[str, ...]:
    name = info.filename
    if _is_absolute(name):
        raise DatasetError(f"zip entry {name!r} in {path} has an absolute path; entries must be relative")
    # zips made on Windows may use backslashes as separators
    parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    if ".." in parts:
        raise DatasetError(f"zip entry {name!r} in {path} uses '..' to escape the archive's folder; remove it")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DatasetError(f"zip entry {name!r} in {path} is a symlink; store the image itself instead")
    if any(_is_junk(p) for p in parts):
        return ()  # __MACOSX/ resource forks, .DS_Store and the like: never extracted
    return parts


def _dataset_root(dest: Path) -> Path:
    """Step into wrapper folders: a zip of `data/` holds `data/manifest.csv` or `data/<class>/`."""
    root = dest
    while not (root / MANIFEST).is_file():
        entries = [e for e in root.iterdir() if not _is_junk(e.name)]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        root = entries[0]
    return root
