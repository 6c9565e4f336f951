"""Bounds on untrusted dataset input, and the normalisation of its free text.

Every loader checks what a file *declares* (array shapes and dtypes, zip
entry sizes) against `Limits` before reading the bytes, so a small hostile
upload cannot make the engine allocate gigabytes or fill the disk; and every
attribute value goes through `clean_attribute` at ingest, so NaN, NUL, bad
UTF-8 and endless strings never reach reports, CSV files or the database.
Each refusal is a DatasetError naming the problem and the fix.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import DatasetError
from .limits import MAX_DECODED_BYTES, MAX_EXPANSION, MAX_PIXELS, MAX_SAMPLES, MAX_ZIP_BYTES, MAX_ZIP_ENTRIES

# Compression ratios are judged only above this size: a tiny array or file
# (all-zero labels, a short CSV) can honestly compress a thousandfold.
EXPANSION_FLOOR_BYTES = 4 << 20
# Label and attribute columns: one value repeated 200k times is honest, tens of MiB and ~1000x compressible;
# their memory is bounded by max_decoded_bytes, so only a much larger column is judged by its ratio.
COLUMN_EXPANSION_FLOOR_BYTES = 64 << 20
MAX_MANIFEST_BYTES = 64 << 20  # manifest.csv: ~300 bytes a row for MAX_SAMPLES rows
MAX_ATTRIBUTE_NAME_CHARS = 256
MAX_ATTRIBUTE_VALUE_CHARS = 1024

Position = Callable[[int], str]  # row index -> how messages name it ("index 3", "line 5")


@dataclass(frozen=True)
class Limits:
    """How much one dataset may hold; see load_dataset for what each bounds."""

    max_pixels: int = MAX_PIXELS
    max_samples: int = MAX_SAMPLES
    max_decoded_bytes: int = MAX_DECODED_BYTES
    max_expansion: float = MAX_EXPANSION
    max_zip_entries: int = MAX_ZIP_ENTRIES
    max_zip_bytes: int = MAX_ZIP_BYTES

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_samples", "max_decoded_bytes", "max_zip_entries", "max_zip_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise DatasetError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        ratio = self.max_expansion
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.number)) or not 1 <= ratio < math.inf:
            raise DatasetError(f"max_expansion must be a finite number >= 1, got {ratio!r}")
        object.__setattr__(self, "max_expansion", float(ratio))

    @property
    def max_image_file_bytes(self) -> int:
        """The largest honest image file: 4 bytes a pixel (an uncompressed RGBA BMP) plus 1 MiB of metadata."""
        return self.max_pixels * 4 + (1 << 20)

    def check_samples(self, n: int, image_size: int, where: str) -> None:
        """n images decoded to image_size squares fit max_samples and max_decoded_bytes."""
        if n > self.max_samples:
            raise DatasetError(
                f"{where} holds {n} samples, more than max_samples={self.max_samples}; "
                f"split the dataset or raise max_samples"
            )
        decoded = n * image_size * image_size * 3
        if decoded > self.max_decoded_bytes:
            raise DatasetError(
                f"{where}: {n} images of {image_size}x{image_size} decode to {decoded} bytes, more than "
                f"max_decoded_bytes={self.max_decoded_bytes}; use a smaller image_size, split the dataset "
                f"or raise max_decoded_bytes"
            )

    def check_pixels(self, height: int, width: int, where: str) -> None:
        if height * width > self.max_pixels:
            raise DatasetError(
                f"{where} are {width}x{height} = {height * width} pixels each, more than "
                f"max_pixels={self.max_pixels}; shrink them or raise max_pixels"
            )

    def check_declared(self, what: str, nbytes: int, where: str) -> None:
        """What one array or file says it will decode to, before it is read."""
        if nbytes > self.max_decoded_bytes:
            raise DatasetError(
                f"{what} in {where} declares {nbytes} bytes, more than max_decoded_bytes={self.max_decoded_bytes}; "
                f"split the dataset or raise max_decoded_bytes"
            )

    def check_expansion(
        self, what: str, declared: int, stored: int, where: str, floor: int = EXPANSION_FLOOR_BYTES
    ) -> None:
        """declared / stored bytes of one array or entry: a decompression bomb expands far beyond any real data."""
        if declared <= floor or declared <= stored * self.max_expansion:
            return
        ratio = f"{declared / stored:.0f}x" if stored > 0 else "no stored data at all"
        raise DatasetError(
            f"{what} in {where} declares {declared} bytes but stores only {stored} ({ratio}, more than "
            f"max_expansion={self.max_expansion:g}): a decompression bomb or a corrupt file; store the data "
            f"uncompressed or with ordinary compression, or raise max_expansion"
        )


# --------------------------------------------------------------------------- attribute text


def check_attribute_name(name: str, where: str) -> None:
    """Names become CSV headers, JSON keys and filters: no control characters, bounded length."""
    if len(name) > MAX_ATTRIBUTE_NAME_CHARS:
        raise DatasetError(
            f"attribute name {name[:40]!r}... in {where} is {len(name)} characters long, more than "
            f"{MAX_ATTRIBUTE_NAME_CHARS}; shorten it"
        )
    if "\x00" in name:
        raise DatasetError(f"attribute name {name!r} in {where} contains a NUL character (\\x00); rename it")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise DatasetError(f"attribute name {name!r} in {where} contains a control character; rename it")


def clean_attribute(what: str, values: np.ndarray | pd.Series, position: Position) -> np.ndarray | pd.Series:
    """One attribute column, checked and normalised at ingest.

    Numbers must be finite (NaN is kept: it is pandas' missing value); bytes
    must be UTF-8 and are decoded; text may hold no NUL and at most
    MAX_ATTRIBUTE_VALUE_CHARS characters. `what` names the column in messages.
    Returns the values, decoded where they were bytes.
    """
    arr = values.to_numpy() if isinstance(values, pd.Series) else values
    kind = arr.dtype.kind
    if kind in "biu":
        return values
    if kind == "f":
        infinite = np.isinf(arr)
        if infinite.any():
            first = int(np.flatnonzero(infinite)[0])
            raise DatasetError(
                f"{what} has an infinite value ({arr[first]}) at {position(first)}; attributes must be finite "
                f"numbers: replace it, or leave the cell empty (NaN) if the value is unknown"
            )
        return values
    if kind == "S":
        return np.array([_text(what, v, i, position) for i, v in enumerate(arr.tolist())], dtype=str)
    if kind == "U":
        # (numpy's own string search cannot look for NUL: it treats NUL as padding)
        for i, v in enumerate(arr.tolist()):
            if "\x00" in v or len(v) > MAX_ATTRIBUTE_VALUE_CHARS:
                _text(what, v, i, position)
        return values
    # object or pandas string columns: text with missing values (None / NaN), or bytes from HDF5
    cleaned = [v if _missing(v) else _text(what, v, i, position) for i, v in enumerate(arr.tolist())]
    if isinstance(values, pd.Series):
        return values if all(isinstance(v, str) or _missing(v) for v in arr.tolist()) else pd.Series(cleaned)
    if any(_missing(v) for v in cleaned):
        return pd.Series(cleaned, dtype=object)
    return np.array(cleaned, dtype=str)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _text(what: str, value: Any, i: int, position: Position) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DatasetError(
                f"{what} is not UTF-8 text at {position(i)} ({e.reason} at byte {e.start}); "
                f"store the values as UTF-8 (e.g. np.array(values, dtype=str))"
            ) from None
    if not isinstance(value, str):
        raise DatasetError(f"{what} has a value of type {type(value).__name__} at {position(i)}; store text or numbers")
    if "\x00" in value:
        raise DatasetError(f"{what} has a NUL character (\\x00) at {position(i)}: {value[:40]!r}; remove it")
    if len(value) > MAX_ATTRIBUTE_VALUE_CHARS:
        raise DatasetError(
            f"{what} has a value of {len(value)} characters at {position(i)}, more than "
            f"{MAX_ATTRIBUTE_VALUE_CHARS}: {value[:40]!r}...; shorten it"
        )
    return value
