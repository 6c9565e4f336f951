"""`.npz` and `.h5` datasets: named arrays `images`, `labels` and `attr_<name>`.

Both are untrusted containers, so nothing is read until what the file
declares has been checked: every array's shape, dtype, size and compression
ratio against `Limits`, and for HDF5 that every object read is stored inside
the uploaded file (no external links, soft links, external raw storage,
virtual datasets or filters that need a plugin). Labels and attributes are
then read whole (they are small and bounded); images stream in chunks.
"""
from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..dataset import ImageDataset
from ..errors import DatasetError
from ..imagecache import fill_from_chunks, rows_per_chunk
from ..untrusted import COLUMN_EXPANSION_FLOOR_BYTES, EXPANSION_FLOOR_BYTES, clean_attribute
from .common import Request, binary_labels, check_attribute, check_before_decoding
from .zips import check_central_directory

_SAVEZ = "np.savez(path, images=..., labels=...)"
_H5_LAYOUT = "datasets 'images' and 'labels' at the file's root"
MAX_ARRAYS = 10_000  # arrays (npz members, HDF5 root links) one file may name: images, labels, attributes
MAX_H5_CHUNK_BYTES = 256 << 20  # HDF5 decompresses a whole chunk to read any part of it
_SAMPLE_VALUES = 1 << 20  # values read from a float image array to suggest the right conversion
_READ_ERRORS = (OSError, ValueError, TypeError, RuntimeError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True)
class _Array:
    """What a file declares about one array, from its header or metadata alone."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    unpacked: int  # bytes the stored form expands to (zip member size / HDF5 dataset size)
    stored: int  # bytes it takes in the file
    text: bool = False  # an HDF5 variable-length string (dtype object, but safe)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: a forged shape cannot overflow


# --------------------------------------------------------------------------- .npz


class _Npz:
    """An .npz opened for header-only inspection, then reading."""

    kind, how = "array", _SAVEZ

    def __init__(self, req: Request) -> None:
        self.source = req.source
        check_central_directory(req.path, MAX_ARRAYS, "arrays")
        try:
            # mmap_mode: a lone .npy named .npz is mapped, not read, before it is refused
            archive = np.load(req.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DatasetError(f"cannot read {req.path} as .npz: {e}; save it with {_SAVEZ}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DatasetError(f"{req.path} holds a single array, not named arrays; save it with {_SAVEZ}")
        self.archive = archive
        self.members = {info.filename.removesuffix(".npy"): info for info in archive.zip.infolist()}
        self.names = list(self.members)

    def close(self) -> None:
        self.archive.close()

    def declared(self, name: str) -> _Array:
        info = self.members[name]
        if not info.filename.endswith(".npy"):
            raise DatasetError(f"{info.filename!r} in {self.source} is not an .npy array; save it with {_SAVEZ}")
        with self._open(name) as fp:
            shape, _, dtype = self._header(name, fp)
        return _Array(name, shape, dtype, info.file_size, info.compress_size)

    def read(self, name: str) -> np.ndarray:
        try:
            return self.archive[name]
        except _READ_ERRORS as e:
            raise DatasetError(f"cannot read array {name!r} from {self.source}: {e}; save it with {_SAVEZ}") from None

    def head(self, name: str) -> np.ndarray:
        with self._open(name) as fp:
            shape, _, dtype = self._header(name, fp)
            count = min(math.prod(shape), _SAMPLE_VALUES)
            return np.frombuffer(self._exact(name, fp, count * dtype.itemsize), dtype)

    def chunks(self, name: str, step: int) -> Iterator[np.ndarray]:
        """The array `step` rows at a time, streamed from the member: never all of it in memory."""
        with self._open(name) as fp:
            shape, fortran, dtype = self._header(name, fp)
            if fortran:  # column-major rows are not contiguous: read it whole (bounded by max_decoded_bytes)
                whole = np.frombuffer(self._exact(name, fp, math.prod(shape) * dtype.itemsize), dtype)
                whole = whole.reshape(shape, order="F")
                for start in range(0, shape[0], step):
                    yield whole[start : start + step]
                return
            row = math.prod(shape[1:]) * dtype.itemsize
            for start in range(0, shape[0], step):
                k = min(step, shape[0] - start)
                yield np.frombuffer(self._exact(name, fp, k * row), dtype).reshape((k, *shape[1:]))

    def _open(self, name: str) -> Any:
        try:
            return self.archive.zip.open(self.members[name])
        except _READ_ERRORS as e:
            raise DatasetError(f"cannot read array {name!r} from {self.source}: {e}; save it with {_SAVEZ}") from None

    def _header(self, name: str, fp: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
        fmt = np.lib.format
        try:
            version = fmt.read_magic(fp)
            if version == (1, 0):
                return fmt.read_array_header_1_0(fp)
            if version == (2, 0):
                return fmt.read_array_header_2_0(fp)
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
        except _READ_ERRORS as e:
            raise DatasetError(
                f"cannot read the header of array {name!r} in {self.source}: {e}; save it with {_SAVEZ}"
            ) from None

    def _exact(self, name: str, fp: Any, size: int) -> bytearray:
        """Exactly `size` bytes from the member, read into one buffer (numpy wraps it without a copy)."""
        buf, got = bytearray(size), 0
        view = memoryview(buf)
        try:
            while got < size and (k := fp.readinto(view[got : got + (16 << 20)])):
                got += k
        except _READ_ERRORS as e:
            raise DatasetError(f"cannot read array {name!r} from {self.source}: {e}; save it with {_SAVEZ}") from None
        if got < size:
            raise DatasetError(
                f"array {name!r} in {self.source} ends {size - got} bytes short of the shape its header declares; "
                f"the file is truncated or corrupt: save it again with {_SAVEZ}"
            )
        return buf


# --------------------------------------------------------------------------- .h5


class _H5:
    """An HDF5 file whose root links are listed without following any of them."""

    kind, how = "dataset", _H5_LAYOUT

    def __init__(self, req: Request) -> None:
        import h5py  # only needed for this format

        self.h5py, self.source = h5py, req.source
        try:
            self.file = h5py.File(req.path, "r")
        except _READ_ERRORS as e:
            raise DatasetError(f"cannot open {req.path} as HDF5: {e}") from None
        try:
            if len(self.file) > MAX_ARRAYS:
                raise DatasetError(
                    f"{req.path} has {len(self.file)} objects at its root, more than {MAX_ARRAYS}; "
                    f"it needs only {_H5_LAYOUT} and attr_<name> datasets"
                )
            # keys() reads link names only; the file's order is creation order if it tracks it, else alphabetical.
            self.names = list(self.file.keys())
        except BaseException:
            self.file.close()
            raise

    def close(self) -> None:
        self.file.close()

    def ignorable(self, name: str) -> bool:
        """An object not read: listed as ignored if it is a dataset stored here; links are never followed."""
        link = self.file.get(name, getlink=True)
        return not isinstance(link, self.h5py.HardLink) or isinstance(self.file.get(name), self.h5py.Dataset)

    def declared(self, name: str) -> _Array:
        ds = self._dataset(name)
        info = self.h5py.check_string_dtype(ds.dtype)
        if ds.shape is None:
            raise DatasetError(f"dataset {name!r} in {self.source} has no data (an empty dataspace)")
        return _Array(name, ds.shape, ds.dtype, _h5_nbytes(ds), ds.id.get_storage_size(),
                      text=info is not None and ds.dtype.kind == "O")

    def read(self, name: str) -> np.ndarray:
        ds = self.file[name]
        try:
            return ds[()]  # variable-length strings come back as bytes objects, decoded by clean_attribute
        except _READ_ERRORS as e:
            raise DatasetError(f"cannot read dataset {name!r} from {self.source}: {_one_line(e)}") from None

    def head(self, name: str) -> np.ndarray:
        ds = self.file[name]
        per_row = math.prod(ds.shape[2:])  # values in one row of one image
        rows = max(1, min(ds.shape[1], _SAMPLE_VALUES // max(1, per_row)))
        cols = max(1, min(ds.shape[2], _SAMPLE_VALUES // max(1, rows * math.prod(ds.shape[3:]))))
        try:
            return np.asarray(ds[0, :rows, :cols]).ravel()
        except _READ_ERRORS as e:
            raise DatasetError(f"cannot read dataset {name!r} from {self.source}: {_one_line(e)}") from None

    def chunks(self, name: str, step: int) -> Iterator[np.ndarray]:
        ds = self.file[name]
        for start in range(0, ds.shape[0], step):
            try:
                chunk = ds[start : start + step]
            except _READ_ERRORS as e:
                raise DatasetError(f"cannot read dataset {name!r} from {self.source}: {_one_line(e)}") from None
            yield chunk

    def _dataset(self, name: str) -> Any:
        """The dataset `name`, after checking every byte of it lives inside this file, before reading any."""
        h5py = self.h5py
        where = f"{name!r} in {self.source}"
        link = self.file.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            kind = "an external link to another file" if isinstance(link, h5py.ExternalLink) else "a soft link"
            raise DatasetError(
                f"{where} is {kind}; links are never followed in an upload: store the data itself in the file"
            )
        ds = self.file.get(name)
        if not isinstance(ds, h5py.Dataset):
            raise DatasetError(f"{where} is a {type(ds).__name__.lower()}, not a dataset; it needs {_H5_LAYOUT}")
        dcpl = ds.id.get_create_plist()
        if ds.is_virtual or dcpl.get_layout() not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
            raise DatasetError(
                f"{where} is a virtual dataset, which reads its data from other files; "
                f"store the data itself in the file"
            )
        if ds.external:
            raise DatasetError(
                f"{where} keeps its data in external file(s) {[e[0] for e in ds.external][:3]}, not in the upload; "
                f"store the data itself in the file"
            )
        for i in range(dcpl.get_nfilters()):
            code, _, _, label = dcpl.get_filter(i)
            if code not in _H5_FILTERS:
                raise DatasetError(
                    f"{where} is compressed with HDF5 filter {code} ({label[:40]!r}), which needs a plugin this "
                    f"server does not load; save it with gzip, lzf or no compression"
                )
        chunks = ds.chunks
        if chunks and math.prod(chunks) * ds.dtype.itemsize > MAX_H5_CHUNK_BYTES:
            raise DatasetError(
                f"{where} is stored in chunks of {chunks}, more than {MAX_H5_CHUNK_BYTES} bytes each "
                f"(each is decompressed whole); save it with smaller chunks, e.g. one image per chunk"
            )
        return ds


# Filters built into HDF5 and h5py (deflate, shuffle, fletcher32, szip, nbit, scaleoffset, lzf): no plugins.
_H5_FILTERS = {1, 2, 3, 4, 5, 6, 32000}


def _h5_nbytes(ds: Any) -> int:
    return math.prod(ds.shape) * ds.dtype.itemsize


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


# --------------------------------------------------------------------------- shared path


def load_npz(req: Request) -> ImageDataset:
    with closing(_Npz(req)) as container:
        return _load(req, container)


def load_h5(req: Request) -> ImageDataset:
    with closing(_H5(req)) as container:
        return _load(req, container)


def _load(req: Request, c: _Npz | _H5) -> ImageDataset:
    """Check everything the file declares, read labels and attributes, then stream the images."""
    for required in ("images", "labels"):
        if required not in c.names:
            found = ", ".join(repr(n) for n in c.names[:10]) + (", ..." if len(c.names) > 10 else "") or "nothing"
            raise DatasetError(f"{req.path} has no {required!r} {c.kind} (found {found}); it needs {c.how}")
    attr_names = [n for n in c.names if n.startswith("attr_")]
    for name in attr_names:
        check_attribute(name[len("attr_"):], req.source)
    images = c.declared("images")
    labels = c.declared("labels")
    attrs = [c.declared(n) for n in attr_names]
    n = _check_images(req, c, images)
    _check_labels(req, labels, n, c.kind)
    for arr in attrs:
        _check_attr(req, arr, n, c.kind)
    limits = req.limits
    for arr in (images, labels, *attrs):
        limits.check_declared(f"{c.kind} {arr.name!r} {arr.shape} of {arr.dtype}", arr.nbytes, req.source)
        floor = EXPANSION_FLOOR_BYTES if arr is images else COLUMN_EXPANSION_FLOOR_BYTES
        limits.check_expansion(f"{c.kind} {arr.name!r}", arr.unpacked, arr.stored, req.source, floor)
    # Labels and attributes are read whole, together: bound their sum too.
    limits.check_declared(f"labels and attributes together ({len(attrs)} attributes)",
                          sum(a.nbytes for a in (labels, *attrs)), req.source)

    labels_arr = binary_labels(c.read("labels"), f"labels in {req.source}")
    columns = {}
    for arr in attrs:
        name = arr.name[len("attr_"):]
        columns[name] = clean_attribute(f"attr_{name} in {req.source}", c.read(arr.name), lambda i: f"index {i}")
    attributes = pd.DataFrame(columns, index=pd.RangeIndex(n))
    ignored = [name for name in c.names if name not in ("images", "labels") and not name.startswith("attr_")
               and (not isinstance(c, _H5) or c.ignorable(name))]
    problems = []
    if ignored:
        listed = ", ".join(ignored[:10]) + (f" and {len(ignored) - 10} more" if len(ignored) > 10 else "")
        problems.append(
            f"ignored {c.kind}s {listed} in {req.source} (only images, labels and attr_<name> are read)"
        )
    check_before_decoding(labels_arr, attributes, req.source)
    step = rows_per_chunk(images.shape[1:])
    with req.store(n) as store:
        fill_from_chunks(c.chunks("images", step), store.images, req.image_size)
        return store.commit(labels_arr, attributes, req.source, problems)


def _check_images(req: Request, c: _Npz | _H5, images: _Array) -> int:
    """Shape, dtype, sample count and pixels of the image array, from its declaration; returns N."""
    shape, source = images.shape, req.source
    looks = "(N, H, W, 3) RGB or (N, H, W) grayscale"
    if any(d < 0 for d in shape):
        raise DatasetError(f"images in {source} declare an impossible shape {shape}; the file is corrupt")
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
    req.limits.check_pixels(shape[1], shape[2], f"images in {source}")
    req.limits.check_samples(shape[0], req.image_size, source)
    if images.dtype != np.uint8:
        if images.dtype.kind == "f" and not images.dtype.fields:
            req.limits.check_declared(f"{c.kind} 'images' {shape} of {images.dtype}", images.nbytes, source)
            req.limits.check_expansion(f"{c.kind} 'images'", images.unpacked, images.stored, source)
            sample = c.head("images")
            top = float(np.nanmax(sample)) if sample.size and not np.isnan(sample).all() else 0.0
            fix = "(images * 255).round()" if top <= 1.0 else "images.round().clip(0, 255)"
            raise DatasetError(
                f"images in {source} are {images.dtype} (max {top:g}); convert them to uint8 0-255 first, "
                f"e.g. {fix}.astype(np.uint8)"
            )
        raise DatasetError(f"images in {source} are {images.dtype}; convert them to uint8 (values 0-255) first")
    return shape[0]


def _check_labels(req: Request, labels: _Array, n: int, kind: str) -> None:
    dtype = labels.dtype
    bad = ("a compound" if dtype.fields is not None else "an object" if dtype.kind == "O" and not labels.text
           else f"a {dtype}" if dtype.kind in "VMmc" else None)
    if bad:
        raise DatasetError(
            f"cannot read labels with {bad} dtype ({dtype}) in {req.source}; "
            f"store labels as a plain integer array of 0 and 1 (1 = positive)"
        )
    length = labels.shape[0] if labels.shape else 1
    if length != n:
        raise DatasetError(
            f"labels in {req.source} has {length} entries but images has {n}; every {kind} needs one entry per image"
        )
    if not (len(labels.shape) == 1 or (len(labels.shape) == 2 and labels.shape[1] == 1)):
        raise DatasetError(f"labels in {req.source} must have shape (N,) or (N, 1), got {labels.shape}")


def _check_attr(req: Request, arr: _Array, n: int, kind: str) -> None:
    where = f"{arr.name} in {req.source}"
    length = arr.shape[0] if arr.shape else 1
    if length != n:
        raise DatasetError(f"{where} has {length} entries but images has {n}; every {kind} needs one entry per image")
    if len(arr.shape) != 1:
        raise DatasetError(f"{where} must hold one value per image, shape (N,), got {arr.shape}")
    if arr.dtype.kind == "O" and not arr.text:
        raise DatasetError(
            f"{kind} {arr.name!r} in {req.source} has dtype object, which cannot be read without pickle; "
            f"store strings as a unicode array, e.g. np.array(values, dtype=str)"
        )
    if arr.dtype.fields is not None or arr.dtype.kind not in "biufSUO":
        raise DatasetError(f"{where} has dtype {arr.dtype}; store strings or integers")
