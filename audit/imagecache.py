"""Pixels: decode image files and arrays to uint8 RGB squares, and keep them.

Every format goes through `fit_image` (centre-crop to a square, resize with
PIL's antialiased bilinear filter, grayscale to RGB), so the same pictures give
the same array whatever file they came in.

Decoded images live in RAM, in a temporary memory-mapped file (when larger
than IN_MEMORY_LIMIT_BYTES), or in a reusable cache. Decoding a folder of
images is the slow part of loading a dataset, so the decoded uint8 array can
be kept in a cache folder (`cache_dir` or the DEBIAS_CACHE_DIR environment
variable) and memory-mapped on the next load.
Each entry is two files named by a key that changes whenever the input or the
decoding options change:

    <key>.images.npy   uint8 (N, S, S, 3), opened with mmap_mode="r"
    <key>.meta.npz     labels, attribute columns and problems (no pickles)

Both are written under temporary names and renamed into place, meta last, so a
reader that finds the meta file can trust the images file, and a failed load
leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import tempfile
import uuid
import weakref
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from .dataset import ImageDataset
from .errors import DatasetError, DebiasError

CACHE_ENV = "DEBIAS_CACHE_DIR"
# Bump when the decoding changes, so old entries are not reused.
CACHE_FORMAT_VERSION = 1
# Without a cache, arrays larger than this are decoded into a temporary
# memory-mapped file instead of RAM, so memory stays bounded.
IN_MEMORY_LIMIT_BYTES = 1 << 30
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # never let PIL try its other decoders on user files
ARRAY_CHUNK_BYTES = 64 << 20  # how much of an .npz/.h5 image array is converted at once
DECODE_BATCH = 64  # image files per thread-pool task


# Mapped pages of a memory-mapped image array count in the process's resident memory until unmapped: an
# epoch over a million 32px images maps all 2.9 GiB. Readers let go of them after about this much.
MAPPED_PAGES_BUDGET_BYTES = 256 << 20


class MappedPages:
    """Lets go of a memory-mapped array's pages (MADV_DONTNEED) after each MAPPED_PAGES_BUDGET_BYTES read in
    order (forward passes, the cache's writer; scattered rows are read with RowReader).

    The pages stay in the kernel's page cache, shared and reclaimable, and the next read maps them again
    without touching the disk: resident memory stays flat in N. For an array in RAM it does nothing.
    """

    def __init__(self, images: np.ndarray, budget_bytes: int = MAPPED_PAGES_BUDGET_BYTES):
        mapped = getattr(images, "_mmap", None)
        self._mapped = mapped if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_DONTNEED") else None
        self._row_bytes = int(np.prod(images.shape[1:])) * images.itemsize if self._mapped is not None else 0
        self._budget, self._read = budget_bytes, 0

    def read(self, n_rows: int) -> None:
        """Count n_rows just read (or written) in order; past the budget, unmap every page of the array."""
        if self._mapped is None:
            return
        self._read += n_rows * self._row_bytes
        if self._read >= self._budget:
            self._mapped.madvise(mmap.MADV_DONTNEED)
            self._read = 0


class RowReader:
    """images[indices] for scattered rows; from a memory-mapped .npy by positioned reads (os.preadv).

    A read maps nothing, so the rows' pages never count in the process's memory: on a million-image cache
    indexing the mapping faulted in whole large folios, ~400 KB for each 3 KB row, and an epoch of random
    batches kept 1.5-2 GiB mapped whatever MappedPages let go of. Any other array is indexed as usual.
    """

    def __init__(self, images: np.ndarray):
        self.images, self._fd = images, None
        whole_file = isinstance(images, np.memmap) and isinstance(images.base, mmap.mmap) and images.filename
        if whole_file and images.flags.c_contiguous and len(images):
            self._fd = os.open(images.filename, os.O_RDONLY)
            self._finalizer = weakref.finalize(self, os.close, self._fd)
            self._row, self._offset = images.strides[0], images.offset

    def take(self, indices: np.ndarray) -> np.ndarray:
        """images[indices] as a new array (indices in any order; sorted ones read the file forwards)."""
        if self._fd is None:
            return self.images[indices]
        out = np.empty((len(indices), *self.images.shape[1:]), dtype=self.images.dtype)
        view = memoryview(out.reshape(len(indices), -1)).cast("B")
        for j, i in enumerate(np.asarray(indices, dtype=np.int64).tolist()):
            if os.preadv(self._fd, [view[j * self._row:(j + 1) * self._row]], self._offset + i * self._row) \
                    != self._row:
                raise DatasetError(f"{self.images.filename} ended before image {i}; the cache file is truncated")
        return out


def resolve_cache_dir(cache_dir: str | Path | None) -> Path | None:
    """The cache folder to use: the argument, else $DEBIAS_CACHE_DIR, else None."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or None
    return None if chosen is None else Path(chosen).expanduser()


def cache_key(path: Path, image_size: int, positive: str | None) -> str:
    """sha256 of the input's identity and the options that shape the decoded array.

    Files are identified by size and mtime; folders by the listing of every
    file under them (relative path, size, mtime), so adding, removing or
    touching an image gives a new key.
    """
    h = hashlib.sha256()
    resolved = path.resolve()
    h.update(f"v{CACHE_FORMAT_VERSION}\0{resolved}\0{image_size}\0{positive!r}\0".encode())
    if resolved.is_dir():
        for dirpath, dirnames, filenames in os.walk(resolved):
            dirnames.sort()  # os.walk honours the in-place sort: a stable listing order
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                    stamp = f"{st.st_size}\0{st.st_mtime_ns}"
                except OSError:  # a dangling symlink: decoding will report it
                    stamp = "unreadable"
                h.update(f"{os.path.relpath(full, resolved)}\0{stamp}\n".encode())
    else:
        st = resolved.stat()
        h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _entry_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"{key}.images.npy", cache_dir / f"{key}.meta.npz"


def load_cached(cache_dir: Path, key: str, image_size: int, source: str) -> ImageDataset | None:
    """The cached dataset for `key`, or None when there is no usable entry."""
    images_path, meta_path = _entry_paths(cache_dir, key)
    if not meta_path.is_file() or not images_path.is_file():
        return None
    try:
        with np.load(meta_path, allow_pickle=False) as meta:
            labels = meta["labels"]
            attributes = _attributes_from_arrays(meta)
            problems = [str(p) for p in meta["problems"]]
        images = np.load(images_path, mmap_mode="r")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged entry is decoded again and overwritten
    if images.dtype != np.uint8 or images.shape != (len(labels), image_size, image_size, 3):
        return None
    return ImageDataset(images=images, labels=labels, attributes=attributes, source=source, problems=problems)


class ImageStore:
    """A writable (N, S, S, 3) uint8 array to decode into, published by `commit`.

    Used as a context manager: leaving the block with an exception removes
    every file the store created, so a failed load leaves no cache entry and
    no temporary file.
    """

    def __init__(self, n: int, image_size: int, cache_dir: Path | None = None, key: str | None = None) -> None:
        shape = (n, image_size, image_size, 3)
        self._tmp: Path | None = None  # file being written, removed on failure
        self._published: list[Path] = []  # cache files already renamed into place
        self._cache: tuple[Path, Path] | None = None
        if cache_dir is not None and key is not None:
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DebiasError(
                    f"cannot create cache folder {cache_dir}: {e.strerror or e}; "
                    f"pass a writable cache_dir or set {CACHE_ENV}"
                ) from None
            self._cache = _entry_paths(cache_dir, key)
            self._tmp = _temp_name(self._cache[0])
            self.images: np.ndarray = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=np.uint8, shape=shape)
        elif int(np.prod(shape)) > IN_MEMORY_LIMIT_BYTES:
            fd, name = tempfile.mkstemp(prefix="debias-images-", suffix=".npy")
            os.close(fd)
            self._tmp = Path(name)
            self.images = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=np.uint8, shape=shape)
        else:
            self.images = np.empty(shape, dtype=np.uint8)

    def __enter__(self) -> "ImageStore":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()

    def commit(
        self, labels: np.ndarray, attributes: pd.DataFrame, source: str, problems: list[str]
    ) -> ImageDataset:
        """Validate, publish (cache) or detach (temp file), and return the dataset."""
        ds = ImageDataset(images=self.images, labels=labels, attributes=attributes, source=source, problems=problems)
        if self._tmp is None:
            return ds  # plain in-memory array
        if isinstance(self.images, np.memmap):
            self.images.flush()
        if self._cache is None:
            # Temporary memmap: reopen read-only and unlink at once; the mapping
            # keeps the data alive and the disk space is freed with the array.
            images = np.load(self._tmp, mmap_mode="r")
            _unlink(self._tmp)
            self._tmp = None
        else:
            images_path, meta_path = self._cache
            meta_tmp = _temp_name(meta_path)
            try:
                with open(meta_tmp, "wb") as fh:  # a file object, so numpy adds no ".npz" suffix
                    np.savez(fh, **_meta_arrays(ds))
                os.replace(self._tmp, images_path)
                self._tmp = None
                self._published.append(images_path)
                os.replace(meta_tmp, meta_path)  # meta last: its presence marks a complete entry
                self._published.append(meta_path)
            finally:
                _unlink(meta_tmp)
            images = np.load(images_path, mmap_mode="r")
        self.images = images
        return ImageDataset(images=images, labels=ds.labels, attributes=ds.attributes, source=source, problems=problems)

    def abort(self) -> None:
        """Remove every file this store wrote."""
        self.images = np.empty((0, 1, 1, 3), dtype=np.uint8)  # drop our reference to the mapping
        for path in [self._tmp, *self._published]:
            if path is not None:
                _unlink(path)
        self._tmp, self._published = None, []


def _temp_name(final: Path) -> Path:
    # Unique per writer, in the same folder so os.replace is an atomic rename.
    return final.with_name(f"{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # nothing better to do while already handling a failure


def _meta_arrays(ds: ImageDataset) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "labels": np.asarray(ds.labels, dtype=np.int64),
        "problems": np.array(ds.problems, dtype=str),
        "attr_names": np.array([str(c) for c in ds.attributes.columns], dtype=str),
    }
    for i, name in enumerate(ds.attributes.columns):
        values, missing = _column_to_arrays(ds.attributes[name])
        arrays[f"attr_{i}"] = values
        arrays[f"attr_{i}_missing"] = missing
    return arrays


def _column_to_arrays(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values as a numeric or unicode array (never objects) plus a missing-value mask."""
    missing = col.isna().to_numpy(dtype=bool)
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "biuf":
        return col.to_numpy(), missing
    values = col.astype(object).where(~missing, "").astype(str).to_numpy(dtype=str)
    return values, missing


def _attributes_from_arrays(meta: np.lib.npyio.NpzFile) -> pd.DataFrame:
    columns: dict[str, pd.Series] = {}
    for i, name in enumerate(meta["attr_names"]):
        values, missing = meta[f"attr_{i}"], meta[f"attr_{i}_missing"]
        series = pd.Series(values)
        columns[str(name)] = series.where(~missing) if missing.any() else series
    return pd.DataFrame(columns, index=pd.RangeIndex(len(meta["labels"])))


# --------------------------------------------------------------------------- pixels


def rows_per_chunk(row_shape: Sequence[int], itemsize: int = 1) -> int:
    """How many (H, W[, C]) images make about ARRAY_CHUNK_BYTES: the unit arrays are converted in."""
    return max(1, ARRAY_CHUNK_BYTES // max(1, int(np.prod(row_shape)) * itemsize))


def fill_from_array(src: Any, out: np.ndarray, size: int) -> None:
    """Copy uint8 (N, H, W[, 1|3]) `src` (an array or an h5py dataset) into `out`, a chunk at a time."""
    step = rows_per_chunk(src.shape[1:])
    fill_from_chunks((src[start : start + step] for start in range(0, len(out), step)), out, size)


def fill_from_chunks(chunks: Iterable[Any], out: np.ndarray, size: int) -> None:
    """Fill `out` from consecutive uint8 (k, H, W[, 1|3]) chunks, so the source is never all in memory."""
    start = 0
    pages = MappedPages(out)   # written pages go to the file: the cache entry is not held in resident memory
    for chunk in chunks:
        chunk = np.asarray(chunk)
        out[start : start + len(chunk)] = _fit_array_chunk(chunk, size)
        start += len(chunk)
        pages.read(len(chunk))
    if start != len(out):
        raise DatasetError(f"the image array ended after {start} of {len(out)} images; the file is truncated")


def _fit_array_chunk(chunk: np.ndarray, size: int) -> np.ndarray:
    """(k, H, W[, 1|3]) uint8 -> (k, size, size, 3): centre-crop, resize, gray to RGB."""
    if chunk.ndim == 4 and chunk.shape[-1] == 1:
        chunk = chunk[..., 0]
    if chunk.shape[1] != size or chunk.shape[2] != size:
        return np.stack([fit_image(img, size) for img in chunk])
    return _gray_to_rgb(chunk) if chunk.ndim == 3 else chunk


def fit_image(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 -> (size, size, 3). The one resize every format goes through."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[top : top + side, left : left + side]
    if side != size:
        # PIL's bilinear filter widens its support when shrinking, i.e. it antialiases.
        pil = Image.fromarray(np.ascontiguousarray(img))
        img = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
    return _gray_to_rgb(img) if img.ndim == 2 else img


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def decode_files(
    files: Sequence[Path], names: Sequence[str], out: np.ndarray, size: int, max_pixels: int, source: str
) -> None:
    """Decode files[i] into out[i] on a thread pool (PIL releases the GIL while decoding).

    names[i] is how messages call files[i] (relative to the dataset's root).
    """

    def work(start: int, stop: int) -> None:
        for i in range(start, stop):
            out[i] = decode_image(files[i], size, max_pixels, names[i], source)

    batches = [(s, min(s + DECODE_BATCH, len(files))) for s in range(0, len(files), DECODE_BATCH)]
    workers = min(len(batches), _cpu_count())
    if workers <= 1:
        for batch in batches:
            work(*batch)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="debias-decode") as pool:
        futures = [pool.submit(work, *batch) for batch in batches]
        try:
            for future in futures:  # in order, so the first bad file in input order is reported
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def decode_image(path: Path, size: int, max_pixels: int, name: str, source: str) -> np.ndarray:
    """One image file -> (size, size, 3) uint8; DatasetError naming the file if it cannot be read."""
    try:
        with Image.open(path, formats=PIL_FORMATS) as img:
            w, h = img.size  # from the header: nothing is decoded yet
            if w * h > max_pixels:
                raise DatasetError(
                    f"image {name} in {source} is {w}x{h} = {w * h} pixels, more than max_pixels={max_pixels}; "
                    f"shrink it or raise max_pixels"
                )
            img.draft("RGB", (size, size))  # JPEG only: decode at a reduced scale, much faster
            ImageOps.exif_transpose(img, in_place=True)  # phone photos are often stored rotated
            arr = _pil_to_array(img)
    except DatasetError:
        raise
    except Image.DecompressionBombError as e:  # PIL's own guard, in case max_pixels exceeds it
        raise DatasetError(f"image {name} in {source} is too large to decode safely: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # UnidentifiedImageError is an OSError
        # PIL's message names the file by its full path (a temporary folder for zips): say `name` instead.
        why = str(e).replace(str(path), name)
        raise DatasetError(f"cannot read image {name} in {source}: {why}; replace or remove the file") from None
    return fit_image(arr, size)


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """(H, W) for grayscale, else (H, W, 3); alpha is dropped."""
    if img.mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"))
    if img.mode.startswith("I"):  # 16-bit grayscale PNG: keep the top 8 bits
        return (np.asarray(img).astype(np.int64).clip(0, 65535) >> 8).astype(np.uint8)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # what PIL asks for palette images with transparency
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
