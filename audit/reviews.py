"""Review decisions on an audit's samples, and training without the ones marked `exclude`.

An auditor looks at flagged or under-represented samples and records one
decision per sample:

- `reviewed`: looked at, no verdict yet (or nothing to act on);
- `keep`: looked at, belongs in the data (e.g. a genuine rare case);
- `exclude`: leave it out of training (mislabelled, out of scope, broken).

The service stores decisions per audit; the CLI reads them from a CSV with at
least `index,decision` columns (the service's export, or written by hand).
Training without the excluded samples is a subset of the dataset taken before
training (`Exclusion.apply`), recorded in the model directory
(`exclusion.json`, and `exclusion` in config.json) so that the model says
what it was not trained on.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import write_json
from .dataset import ImageDataset
from .errors import DebiasError

DECISIONS = ("reviewed", "keep", "exclude")
EXCLUDE = "exclude"
RECORD_FILE = "exclusion.json"
MAX_REVIEWS_BYTES = 64 << 20   # a reviews CSV: ~300 bytes a row for 200k samples
_INDEX = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True)
class Exclusion:
    """Sample indices (of the whole dataset, in input order) to leave out of training, and where they came from."""

    indices: np.ndarray     # sorted, unique, int64
    source: str             # a reviews CSV path, or "audit N" in the service

    @classmethod
    def of(cls, indices, source: str) -> Exclusion:
        idx = np.unique(np.asarray(list(indices), dtype=np.int64))
        if idx.size == 0:
            raise DebiasError(f"{source} marks no sample {EXCLUDE}; there is nothing to leave out of training")
        if idx[0] < 0:
            raise DebiasError(f"{source} names sample {int(idx[0])}; sample indices start at 0")
        return cls(idx, source)

    def check_fits(self, dataset: ImageDataset) -> None:
        """Refuse indices past the dataset's end, and an exclusion that empties a class."""
        n = len(dataset)
        if self.indices[-1] >= n:
            raise DebiasError(f"{self.source} excludes sample {int(self.indices[-1])} but the training data has "
                              f"{n} samples (0-{n - 1}); the decisions are of another dataset's audit")
        labels = np.asarray(dataset.labels)
        left = np.ones(n, dtype=bool)
        left[self.indices] = False
        for cls, name in ((1, "positive (label 1)"), (0, "negative (label 0)")):
            if not (left & (labels == cls)).any():
                raise DebiasError(f"{self.source} excludes every {name} sample; training needs both classes: "
                                  f"mark fewer samples {EXCLUDE}")

    def apply(self, dataset: ImageDataset) -> ImageDataset:
        """The dataset without the excluded samples (a copy of the kept images, in input order)."""
        self.check_fits(dataset)
        keep = np.setdiff1d(np.arange(len(dataset)), self.indices, assume_unique=True)
        return dataset.subset(keep)

    def record(self, n_total: int) -> dict:
        return {"source": self.source, "n_total": int(n_total), "n_excluded": int(self.indices.size),
                "n_trained": int(n_total - self.indices.size)}


# ------------------------------------------------------------------ the model directory's record
def write_record(model_dir: str | Path, exclusion: Exclusion, n_total: int) -> None:
    """exclusion.json: what was left out (every index), written before training starts."""
    write_json(Path(model_dir) / RECORD_FILE, {**exclusion.record(n_total), "excluded": exclusion.indices})


def read_record(model_dir: str | Path) -> dict | None:
    path = Path(model_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        record["excluded"] = np.asarray(record["excluded"], dtype=np.int64)
        return record
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DebiasError(f"{path} is unreadable ({exc}); train the model again") from None


def check_resume(model_dir: str | Path, exclusion: Exclusion | None) -> None:
    """A resumed run must leave out exactly what the run it continues left out (its error set and
    epochs were computed on that subset)."""
    record = read_record(model_dir)
    before = record["excluded"] if record else np.empty(0, dtype=np.int64)
    now = exclusion.indices if exclusion else np.empty(0, dtype=np.int64)
    if not np.array_equal(before, now):
        was = f"left out {before.size} samples ({record['source']})" if record else "left out nothing"
        raise DebiasError(f"{model_dir} was trained with an exclusion that differs from this one (it {was}); "
                          f"resume with the same --exclude-from or choose a new --out")


def mark_config(model_dir: str | Path, exclusion: Exclusion, n_total: int) -> None:
    """Add `exclusion` (source and counts) to config.json, beside the training options it completes."""
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config["exclusion"] = exclusion.record(n_total)
    write_json(path, config)


def expand_flags(flags: np.ndarray, record: dict | None, n: int) -> np.ndarray | None:
    """Per-sample flags of the trained subset spread back over all `n` samples (0 where excluded);
    None when they do not come from this dataset's exclusion."""
    if record is None or record.get("n_total") != n or flags.shape != (n - record["excluded"].size,):
        return None
    full = np.zeros(n, dtype=flags.dtype)
    keep = np.ones(n, dtype=bool)
    keep[record["excluded"]] = False
    full[keep] = flags
    return full


# ------------------------------------------------------------------ reviews.csv
def read_reviews_csv(path: str | Path, labels: np.ndarray | None = None) -> Exclusion:
    """The samples a reviews CSV marks `exclude`.

    Columns: `index` and `decision` (one of DECISIONS), any others ignored except `label`, which when
    present must match `labels` (a check that the reviews are of this dataset). The file is untrusted:
    its size is bounded before it is read, and each bad row is refused, naming its line.
    """
    path = Path(path)
    if not path.is_file():
        raise DebiasError(f"no such reviews file: {path}; export one with GET /v1/audits/ID/reviews?format=csv "
                          f"or write index,decision rows")
    if path.stat().st_size > MAX_REVIEWS_BYTES:
        raise DebiasError(f"{path} is over {MAX_REVIEWS_BYTES >> 20} MiB; a reviews CSV holds one short row "
                          f"per reviewed sample")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DebiasError(f"{path} is not UTF-8 text; save the reviews CSV as UTF-8") from None
    rows = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    missing = {"index", "decision"} - set(rows.fieldnames or [])
    if missing:
        raise DebiasError(f"{path} has no {' or '.join(sorted(missing))} column; a reviews CSV starts with the "
                          f"header index,decision")
    decided: dict[int, str] = {}
    try:
        for row in rows:
            where = f"{path} line {rows.line_num}"
            index, decision = _parse_row(row, where)
            if decided.setdefault(index, decision) != decision:
                raise DebiasError(f"{where}: sample {index} is marked both {decided[index]} and {decision}; "
                                  f"keep one decision per sample")
            if labels is not None and (row.get("label") or "").strip() not in ("", None):
                _check_label(row["label"].strip(), index, labels, where)
    except csv.Error as exc:
        raise DebiasError(f"{path} line {rows.line_num} is not valid CSV ({exc})") from None
    return Exclusion.of((i for i, d in decided.items() if d == EXCLUDE), str(path))


def _parse_row(row: dict, where: str) -> tuple[int, str]:
    raw_index, decision = (row.get("index") or "").strip(), (row.get("decision") or "").strip()
    if not _INDEX.fullmatch(raw_index):
        raise DebiasError(f"{where}: index {raw_index[:40]!r} is not a sample index (a whole number from 0)")
    if decision not in DECISIONS:
        raise DebiasError(f"{where}: decision {decision[:40]!r} is not one of {', '.join(DECISIONS)}")
    return int(raw_index), decision


def _check_label(raw: str, index: int, labels: np.ndarray, where: str) -> None:
    if index >= len(labels):
        raise DebiasError(f"{where}: sample {index} is past the end of the training data ({len(labels)} samples); "
                          f"the reviews are of another dataset's audit")
    if raw not in ("0", "1") or int(raw) != int(labels[index]):
        raise DebiasError(f"{where}: sample {index} has label {raw[:10]!r} in the reviews but {int(labels[index])} "
                          f"in the training data; the reviews are of another dataset's audit")


def check_audit_folder(reviews_path: str | Path, labels: np.ndarray) -> None:
    """When the reviews CSV sits in a `debias audit` folder, that audit's samples.csv must list this dataset:
    as many samples, the same labels in the same order."""
    samples = Path(reviews_path).parent / "samples.csv"
    if not samples.is_file():
        return
    try:
        with samples.open(newline="") as f:
            reader = csv.DictReader(f)
            audited = [row["label"] for row in reader]
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return  # not an audit's samples.csv: the reviews' own checks still apply
    labels = np.asarray(labels)
    same = len(audited) == len(labels) and all(a.strip() == str(int(b)) for a, b in zip(audited, labels))
    if not same:
        raise DebiasError(f"{samples} lists {len(audited)} samples that do not match the training data "
                          f"({len(labels)} samples, labels in input order); --exclude-from must name the "
                          f"reviews of an audit of this dataset")
