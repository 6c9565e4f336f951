"""A `.zip` holding a manifest or class-folder layout, unpacked only once it is known to be sane.

Everything is checked from the central directory before a byte is written:
the entry count and the size of the directory itself, every name (relative,
no '..', no symlinks, only images and manifest.csv), every declared size (an
image at most Limits.max_image_file_bytes, manifest.csv at most
MAX_MANIFEST_BYTES, all entries together at most max_zip_bytes) and every
compression ratio (max_expansion, per entry and for the whole archive). A
zip bomb is thus refused with nothing unpacked; the bytes actually written
are counted too, in case the directory lies.
"""
from __future__ import annotations

import stat
import tempfile
import zipfile
from pathlib import Path

from ..dataset import ImageDataset
from ..errors import DatasetError
from ..imagecache import IMAGE_SUFFIXES
from ..untrusted import MAX_MANIFEST_BYTES
from .common import MANIFEST, Request, is_absolute, is_junk
from .folders import load_folder

# An honest central-directory record is under 1 KiB (46 bytes, the name, a few extra fields);
# zipfile parses the whole directory into objects, so its size is bounded before it is opened.
_DIRECTORY_BYTES_PER_ENTRY = 1024


def check_central_directory(path: Path, max_entries: int, what: str = "entries") -> None:
    """Refuse a zip (or .npz) whose directory is too big to parse, from its end record alone.

    Files that are not zips pass: the caller's own opener names that problem.
    """
    # The end-record reader zipfile.ZipFile itself uses (zip64 included); private, so guarded.
    read_end = getattr(zipfile, "_EndRecData", None)
    if read_end is None:
        return
    try:
        with open(path, "rb") as fh:
            end = read_end(fh)
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None
    except (zipfile.BadZipFile, ValueError, EOFError):
        return  # malformed: zipfile.ZipFile reports it in its own words
    if end is None:
        return
    entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # noqa: SLF001
    if entries > max_entries:
        raise DatasetError(f"{path} has {entries} {what}, more than the limit of {max_entries}; split the dataset")
    bound = max_entries * _DIRECTORY_BYTES_PER_ENTRY
    if size > bound:
        raise DatasetError(
            f"{path} has a zip directory of {size} bytes for {entries} {what}, more than {bound}; "
            f"the archive is corrupt or hostile"
        )


def load_zip(req: Request) -> ImageDataset:
    check_central_directory(req.path, req.limits.max_zip_entries)
    try:
        archive = zipfile.ZipFile(req.path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DatasetError(f"cannot open {req.path} as a zip file: {e}") from None
    with archive:
        plan = _plan(archive, req)
        with tempfile.TemporaryDirectory(prefix="debias-zip-") as tmp:
            dest = Path(tmp)
            _extract(archive, plan, dest, req)
            return load_folder(_dataset_root(dest), req, display_root=dest)


def _plan(archive: zipfile.ZipFile, req: Request) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Every entry to extract with its path parts, after checking the whole directory."""
    path, limits = req.path, req.limits
    infos = archive.infolist()
    if len(infos) > limits.max_zip_entries:
        raise DatasetError(
            f"{path} has {len(infos)} entries, more than the limit of {limits.max_zip_entries}; split the dataset"
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_zip_bytes:
        raise DatasetError(
            f"{path} unpacks to {declared} bytes, more than the limit of {limits.max_zip_bytes}; split the dataset"
        )
    plan, images = [], 0
    for info in infos:
        parts = _safe_entry_parts(info, path)
        if not parts:
            continue
        plan.append((info, parts))
        if info.is_dir():
            continue
        name = info.filename
        if parts[-1] == MANIFEST:
            bound, allowed = MAX_MANIFEST_BYTES, MANIFEST
        elif Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES:
            bound, allowed = limits.max_image_file_bytes, f"an image of max_pixels={limits.max_pixels}"
            images += 1
        else:
            raise DatasetError(
                f"zip entry {name!r} in {path} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor {MANIFEST}; "
                f"remove it from the archive"
            )
        if info.file_size > bound:
            raise DatasetError(
                f"zip entry {name!r} in {path} unpacks to {info.file_size} bytes, more than the {bound} "
                f"allowed for {allowed}; remove or shrink it"
            )
        limits.check_expansion(f"zip entry {name!r}", info.file_size, info.compress_size, str(path))
    # Many small entries, each under the per-entry floor, can still add up to a bomb.
    limits.check_expansion("the zip's entries together", declared, sum(i.compress_size for i in infos), str(path))
    # Every image is a sample at most: refuse what cannot fit before unpacking it.
    limits.check_samples(images, req.image_size, str(path))
    return plan


def _extract(archive: zipfile.ZipFile, plan: list, dest: Path, req: Request) -> None:
    written, max_bytes = 0, req.limits.max_zip_bytes
    for info, parts in plan:
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
                            f"zip entry {info.filename!r} in {req.path} unpacks to more bytes than it declares; "
                            f"the archive is corrupt or hostile"
                        )
                    dst.write(block)
        except DatasetError:
            raise
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError, ValueError) as e:
            raise DatasetError(f"cannot extract zip entry {info.filename!r} from {req.path}: {e}") from None


def _safe_entry_parts(info: zipfile.ZipInfo, path: Path) -> tuple[str, ...]:
    name = info.filename
    if is_absolute(name):
        raise DatasetError(f"zip entry {name!r} in {path} has an absolute path; entries must be relative")
    # zips made on Windows may use backslashes as separators
    parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    if ".." in parts:
        raise DatasetError(f"zip entry {name!r} in {path} uses '..' to escape the archive's folder; remove it")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DatasetError(f"zip entry {name!r} in {path} is a symlink; store the image itself instead")
    if any(is_junk(p) for p in parts):
        return ()  # __MACOSX/ resource forks, .DS_Store and the like: never extracted
    return parts


def _dataset_root(dest: Path) -> Path:
    """Step into wrapper folders: a zip of `data/` holds `data/manifest.csv` or `data/<class>/`."""
    root = dest
    while not (root / MANIFEST).is_file():
        entries = [e for e in root.iterdir() if not is_junk(e.name)]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        root = entries[0]
    return root
