"""Figures for an audit report, written as PNG files.

Pure functions: numpy arrays in, one PNG out, its `Path` returned.  Each
figure is a `matplotlib.figure.Figure` on its own Agg canvas (no pyplot, no
global backend switch), so the functions need no display and may run in
worker threads.  Every file is written under a temporary name in the target
folder and moved into place with `os.replace`, so a reader never sees half a
PNG.

Images are uint8 arrays (N,H,W,3); (N,H,W) and (N,H,W,1) greyscale are drawn
as grey.  Small images are drawn larger with nearest-neighbour so every pixel
stays visible.
"""
from __future__ import annotations

import math
import os
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from .errors import DebiasError

DPI = 100
MAX_GRID_IMAGES = 100     # image_grid draws at most this many images
MAX_PAIRS = 12            # reconstructions draws at most this many pairs
MAX_PANELS = 12           # latent_histograms draws at most this many panels

_MARGIN = 0.2             # inches around the content
_GAP = 0.5                # inches between side-by-side blocks
_PAD = 0.06               # inches between cells of a grid
_TITLE_PT, _NOTE_PT, _HEADER_PT, _LABEL_PT, _CAPTION_PT = 13, 9, 10, 9, 7
_POSITIVE, _NEGATIVE = "#4C72B0", "#DD8452"
_BAR, _HIGHLIGHT, _RARE = "#4C72B0", "#C44E52", "#F2C14E"
_CLASS_COLOURS = {"positive": _POSITIVE, "negative": _NEGATIVE}


# --------------------------------------------------------------------------- public API

def image_grid(images: np.ndarray, path, ncols: int = 8, captions: list[str] | None = None,
               title: str = "") -> Path:
    """A grid of images, `ncols` wide, with an optional caption under each."""
    imgs = _as_images(images, "images")
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise DebiasError(f"ncols must be a positive integer, got {ncols!r}")
    if captions is not None:
        _check_length(captions, "captions", len(imgs), "images")
    shown = imgs[:MAX_GRID_IMAGES]
    notes = [f"first {len(shown)} of {len(imgs)} images"] if len(imgs) > len(shown) else []
    grid = _Grid(list(shown), ncols=min(int(ncols), len(shown)),
                 captions=None if captions is None else [str(c) for c in captions[: len(shown)]])
    return _save(_layout([_Block(grid)], title, notes), path)


def subgroup_grid(central: np.ndarray, others: np.ndarray, path, title: str = "") -> Path:
    """One subgroup's members: the row nearest its centre over a row of other members drawn at random.

    Either row may be empty (a subgroup of a few samples has no others), not both.
    """
    rows = [(_as_images(imgs, name), label) for imgs, name, label in
            ((central, "central", "nearest centre"), (others, "others", "random members")) if len(imgs)]
    if not rows:
        raise DebiasError("central and others are both empty; pass at least one member image")
    if len(rows) == 2 and rows[0][0].shape[1:3] != rows[1][0].shape[1:3]:
        raise DebiasError(f"central images are {rows[0][0].shape[1]}x{rows[0][0].shape[2]} but others are "
                          f"{rows[1][0].shape[1]}x{rows[1][0].shape[2]}; pass images of one size")
    ncols = min(max(len(r) for r, _ in rows), MAX_GRID_IMAGES // 2)
    cells: list[np.ndarray | None] = []
    for imgs, _ in rows:
        shown = list(imgs[:ncols])
        cells += shown + [None] * (ncols - len(shown))
    grid = _Grid(cells, ncols=ncols, row_labels=[label for _, label in rows])
    return _save(_layout([_Block(grid)], title, []), path)


def sampling_extremes(images: np.ndarray, sampling_weight: np.ndarray, path, n: int = 25,
                      title: str = "") -> Path:
    """The paper's Fig. 4: the `n` least and the `n` most up-weighted samples, side by side.

    Left: lowest sampling probability (the most common kind of sample);
    right: highest (the most under-represented).  Each grid is as square as
    `n` allows; the weight of every sample is printed under it.  With fewer
    than `n` images all are shown on each side.
    """
    imgs = _as_images(images, "images")
    weight = _as_vector(sampling_weight, "sampling_weight", len(imgs), "images")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DebiasError(f"n must be a positive integer, got {n!r}")
    k = min(int(n), len(imgs))
    order = np.argsort(weight, kind="stable")
    blocks = []
    for idx, head, sub in ((order[:k], "Most common", "lowest sampling probability"),
                           (order[::-1][:k], "Most under-represented", "highest sampling probability")):
        w = weight[idx]
        text = _fmt_all(np.concatenate([w, [w.min(), w.max()]]))
        grid = _Grid(list(imgs[idx]), ncols=math.ceil(math.sqrt(k)), captions=text[:-2])
        header = [(head, _HEADER_PT + 1, "bold"), (sub, _HEADER_PT, "normal"),
                  (f"sampling probability {text[-2]} to {text[-1]}", _CAPTION_PT + 1, "normal")]
        blocks.append(_Block(grid, header))
    notes = []
    if len(imgs) < 2 * k:
        notes.append(f"only {len(imgs)} images: the two sides share some")
    return _save(_layout(blocks, title, notes), path)


def traversal_strips(strips: list[np.ndarray], labels: list[str], values: list[np.ndarray], path,
                     title: str = "") -> Path:
    """One row per latent feature, decoded as its value moves from low (left) to high (right).

    `strips[k]` is uint8 (steps,H,W,3), `labels[k]` names the row (e.g.
    "latent 37 (rank 1)"), `values[k]` (steps,) are the latent values, printed
    under the images.
    """
    if strips is None or len(strips) == 0:
        raise DebiasError("strips is empty; pass one (steps,H,W,3) array per latent feature")
    _check_length(labels, "labels", len(strips), "strips")
    _check_length(values, "values", len(strips), "strips")
    rows = [_as_images(s, f"strips[{k}]") for k, s in enumerate(strips)]
    vals = [_as_vector(v, f"values[{k}]", len(s), f"strips[{k}]") for k, (v, s) in enumerate(zip(values, rows))]
    shape = rows[0].shape[1:3]
    for k, s in enumerate(rows):
        if s.shape[1:3] != shape:
            raise DebiasError(f"strips[{k}] has images of size {s.shape[1]}x{s.shape[2]} but strips[0] "
                              f"has {shape[0]}x{shape[1]}; decode every strip at the same size")
    ncols = max(len(s) for s in rows)
    cells: list[np.ndarray | None] = []
    captions: list[str | None] = []
    for s, v in zip(rows, vals):
        pad = ncols - len(s)
        cells += list(s) + [None] * pad
        captions += [_fmt(x) for x in v] + [None] * pad
    grid = _Grid(cells, ncols=ncols, captions=captions, row_labels=[str(x) for x in labels])
    notes = ["each row: one latent feature from low (left) to high (right); its value under each image"]
    return _save(_layout([_Block(grid)], title, notes), path)


def reconstructions(images: np.ndarray, recons: np.ndarray, path, errors: np.ndarray | None = None,
                    title: str = "") -> Path:
    """Inputs on the top row, their reconstructions below; up to 12 pairs, L1 error under each."""
    imgs = _as_images(images, "images")
    recs = _as_images(recons, "recons")
    if recs.shape != imgs.shape:
        raise DebiasError(f"recons has shape {recs.shape} but images has {imgs.shape}; "
                          "pass one reconstruction per image, at the same size")
    err = None if errors is None else _as_vector(errors, "errors", len(imgs), "images")
    k = min(MAX_PAIRS, len(imgs))
    captions = None
    if err is not None:
        captions = [None] * k + [f"L1 {_fmt(e)}" for e in err[:k]]
    grid = _Grid(list(imgs[:k]) + list(recs[:k]), ncols=k, captions=captions,
                 row_labels=["input", "reconstruction"])
    notes = []
    if len(imgs) > k:
        notes.append(f"first {k} of {len(imgs)} pairs")
    if err is not None:
        notes.append(f"mean L1 error {_fmt(err.mean())} over {len(err)} images")
    return _save(_layout([_Block(grid)], title, ["; ".join(notes)] if notes else []), path)


def counterfactual_pairs(directions: list[tuple[str, np.ndarray, np.ndarray, list[str]]], path, title: str = "",
                         notes: list[str] = ()) -> Path:
    """Side by side per direction (header, originals, translations, a caption per translation): originals on
    the top row, their translations below, up to MAX_PAIRS // 2 pairs each."""
    blocks = []
    for header, originals, translated, captions in directions:
        imgs, outs = _as_images(originals, "originals"), _as_images(translated, "translated")
        if outs.shape != imgs.shape:
            raise DebiasError(f"translated has shape {outs.shape} but originals has {imgs.shape}; "
                              "pass one translation per original, at the same size")
        _check_length(captions, "captions", len(imgs), "originals")
        k = min(MAX_PAIRS // 2, len(imgs))
        if k:
            grid = _Grid(list(imgs[:k]) + list(outs[:k]), ncols=k, captions=[None] * k + list(captions[:k]),
                         row_labels=["original", "translated"])
            blocks.append(_Block(grid, [(header, _HEADER_PT, "bold")]))
    if not blocks:
        raise DebiasError("no pairs to draw: every direction is empty")
    return _save(_layout(blocks, title, list(notes)), path)


def latent_histograms(histograms: list[dict], path, title: str = "") -> Path:
    """Small multiples, one panel per latent dimension: counts per class, rare range shaded.

    Each dict has "dimension" (int), "edges" (bins+1 floats) and "counts"
    {"positive": [...], "negative": [...]} (either class may be missing);
    optional "rank" (int) and "rare_range" [lo, hi].  Other keys are ignored.
    Classes are overlaid with transparency; a panel whose non-zero counts span
    more than 100x gets a log y axis.  At most 12 panels are drawn.
    """
    if histograms is None or len(histograms) == 0:
        raise DebiasError("histograms is empty; pass at least one histogram dict")
    panels = [_check_histogram(h, i) for i, h in enumerate(histograms)]
    shown = panels[:MAX_PANELS]
    ncols = min(4, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig = _new_figure((3.1 * ncols + 0.3, 2.3 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    used_classes: list[str] = []
    any_rare = False
    for ax, p in zip(axes.flat, shown):
        nonzero = np.concatenate([c[c > 0] for c in p["counts"].values()] or [np.empty(0)])
        log = nonzero.size > 0 and nonzero.max() / nonzero.min() > 100
        base = 0.5 if log else 0.0
        if p["rare_range"] is not None:
            lo, hi = np.clip(p["rare_range"], p["edges"][0], p["edges"][-1])
            ax.axvspan(lo, hi, color=_RARE, alpha=0.3, lw=0, zorder=0)
            any_rare = True
        for cls, counts in p["counts"].items():
            shown_counts = np.maximum(counts, base) if log else counts
            colour = _CLASS_COLOURS[cls]
            ax.stairs(shown_counts, p["edges"], baseline=base, fill=True, color=colour, alpha=0.35, zorder=1)
            ax.stairs(shown_counts, p["edges"], baseline=base, color=colour, lw=1.2, zorder=2)
            if cls not in used_classes:
                used_classes.append(cls)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(bottom=base)
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlim(p["edges"][0], p["edges"][-1])
        name = p["name"] or f"latent {p['dimension']}"
        name += f" (rank {p['rank']})" if p["rank"] is not None else ""
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("latent value" if p["name"] is None else "projection", fontsize=8)
        ax.set_ylabel("count (log)" if log else "count", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", alpha=0.3, lw=0.5)
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    handles = [Patch(facecolor=_CLASS_COLOURS[c], alpha=0.6, label=c) for c in used_classes]
    if any_rare:
        handles.append(Patch(facecolor=_RARE, alpha=0.4, label="rare range"))
    heading = title
    if len(panels) > len(shown):
        heading = f"{title} (first {len(shown)} of {len(panels)})" if title else \
            f"first {len(shown)} of {len(panels)} latent dimensions"
    if heading:
        fig.suptitle(heading, fontsize=_TITLE_PT, fontweight="bold")
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    return _save(fig, path)


def bar_chart(values: dict[str, float], path, title: str = "", xlabel: str = "",
              highlight_min: bool = True) -> Path:
    """Horizontal bars in the dict's order, top to bottom, the value printed at each bar's end.

    With `highlight_min` the smallest bar(s) are drawn in another colour (not
    when every value is equal).
    """
    if not isinstance(values, dict) or len(values) == 0:
        raise DebiasError("values is empty; pass a dict of at least one {label: number}")
    names = [str(k) for k in values]
    try:
        v = np.array([float(x) for x in values.values()])
    except (TypeError, ValueError) as exc:
        raise DebiasError(f"values must be numbers: {exc}") from None
    bad = [names[i] for i in np.flatnonzero(~np.isfinite(v))]
    if bad:
        raise DebiasError(f"values for {', '.join(map(repr, bad))} are not finite; drop them or give a number")
    label_w = max(len(s) for s in names) * _LABEL_PT * 0.6 / 72
    fig = _new_figure((max(6.4, 4.5 + label_w), 1.3 + 0.32 * len(v) + (0.4 if title else 0)),
                      layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(v))
    lowest = (v == v.min()) if highlight_min and v.min() < v.max() else np.zeros(len(v), bool)
    ax.barh(y, v, height=0.7, color=np.where(lowest, _HIGHLIGHT, _BAR))
    lo, hi = min(0.0, v.min()), max(0.0, v.max())
    span = (hi - lo) or 1.0
    for yi, vi, low in zip(y, v, lowest):
        text = _fmt(vi) + ("  (lowest)" if low else "")
        ax.text(vi + (0.01 if vi >= 0 else -0.01) * span, yi, text, va="center",
                ha="left" if vi >= 0 else "right", fontsize=8,
                color=_HIGHLIGHT if low else "0.15", fontweight="bold" if low else "normal")
    ax.set_xlim(lo - (0.25 * span if lo < 0 else 0), hi + (0.25 * span if hi > 0 else 0.02 * span))
    if v.min() >= 0 and v.max() <= 1:         # fractions (accuracies): no ticks past 1
        ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_yticks(y, names, fontsize=_LABEL_PT)
    ax.invert_yaxis()
    ax.set_ylim(len(v) - 0.5, -0.5)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.grid(axis="x", alpha=0.3, lw=0.5)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    if xlabel:
        ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=_TITLE_PT - 1, fontweight="bold")
    return _save(fig, path)


# --------------------------------------------------------------------------- validation

def _as_images(images, name: str) -> np.ndarray:
    """uint8 (N,H,W,3); greyscale (N,H,W) or (N,H,W,1) is repeated to 3 channels."""
    arr = np.asarray(images)
    if arr.size == 0:
        raise DebiasError(f"{name} is empty (shape {arr.shape}); pass at least one image")
    if arr.dtype != np.uint8:
        raise DebiasError(f"{name} has dtype {arr.dtype}; pass uint8 images (N,H,W,3), e.g. "
                          "(x * 255).clip(0, 255).astype(np.uint8) for floats in [0, 1]")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise DebiasError(f"{name} has shape {arr.shape}; pass images as (N,H,W,3) or (N,H,W)")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def _as_vector(x, name: str, n: int, other: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise DebiasError(f"{name} must be numbers, one per item of {other}") from None
    if arr.ndim != 1:
        raise DebiasError(f"{name} has shape {arr.shape}; pass a 1-D array, one value per item of {other}")
    if len(arr) != n:
        raise DebiasError(f"{name} has {len(arr)} values but {other} has {n}; pass one value per item")
    if not np.isfinite(arr).all():
        raise DebiasError(f"{name} has {int((~np.isfinite(arr)).sum())} NaN or infinite values; "
                          "pass finite numbers")
    return arr


def _check_length(seq, name: str, n: int, other: str) -> None:
    try:
        m = len(seq)
    except TypeError:
        raise DebiasError(f"{name} must be a list, one per item of {other}") from None
    if m != n:
        raise DebiasError(f"{name} has {m} entries but {other} has {n}; pass one per item")


def _check_histogram(h, i: int) -> dict:
    where = f"histograms[{i}]"
    if not isinstance(h, dict):
        raise DebiasError(f"{where} is a {type(h).__name__}; pass a dict with dimension, edges and counts")
    missing = [k for k in ("dimension", "edges", "counts") if k not in h]
    if missing:
        raise DebiasError(f"{where} lacks {', '.join(missing)}; each histogram needs dimension, edges, counts")
    edges = _as_vector(h["edges"], f"{where}['edges']", len(np.atleast_1d(h["edges"])), "bins + 1")
    if len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise DebiasError(f"{where}['edges'] must be at least 2 increasing values, got {edges.tolist()}")
    counts = h["counts"]
    if not isinstance(counts, dict) or not counts:
        raise DebiasError(f"{where}['counts'] must be a dict with 'positive' and/or 'negative'")
    unknown = set(counts) - set(_CLASS_COLOURS)
    if unknown:
        raise DebiasError(f"{where}['counts'] has unknown classes {sorted(unknown)}; "
                          "use 'positive' and/or 'negative'")
    checked = {}
    for cls in _CLASS_COLOURS:           # fixed order: positive drawn first
        if cls in counts:
            c = _as_vector(counts[cls], f"{where}['counts']['{cls}']", len(edges) - 1, "edges minus one")
            if (c < 0).any():
                raise DebiasError(f"{where}['counts']['{cls}'] has negative counts")
            checked[cls] = c
    rare = h.get("rare_range")
    if rare is not None:
        rare = _as_vector(rare, f"{where}['rare_range']", 2, "[lo, hi]") if np.ndim(rare) == 1 else None
        if rare is None or rare[0] > rare[1]:
            raise DebiasError(f"{where}['rare_range'] must be [lo, hi] with lo <= hi, got {h['rare_range']!r}")
    name = h.get("name")
    return {"dimension": h["dimension"], "name": None if name is None else str(name), "rank": h.get("rank"),
            "edges": edges, "counts": checked, "rare_range": rare}


# --------------------------------------------------------------------------- layout

def _fmt(x: float) -> str:
    return f"{float(x):.3g}"


def _fmt_all(values: np.ndarray) -> list[str]:
    """One style for a set of numbers: plain when all are moderate, else all in e-notation."""
    mags = np.abs(values[values != 0])
    if mags.size and (mags.min() < 1e-3 or mags.max() >= 1e4):
        return [f"{v:.2e}" for v in values]
    return [_fmt(v) for v in values]


def _text_w(s: str, pt: float) -> float:
    """Rough width in inches of a line of text (DejaVu Sans averages ~0.6 em per character)."""
    return len(s) * pt * 0.6 / 72


def _display_px(size: int) -> int:
    """Displayed edge in pixels: small images enlarged by a whole factor, big ones capped."""
    return int(np.clip(size * max(1, 96 // size), 64, 128))


@dataclass
class _Grid:
    """Images in row-major cells (None leaves a cell blank), optional captions and row labels.

    Columns widen (up to 1.7 cells) when captions would not fit under an
    image; a row with no caption takes no caption space.
    """
    cells: list
    ncols: int
    captions: list | None = None
    row_labels: list[str] | None = None
    cell_w: float = field(init=False)
    cell_h: float = field(init=False)

    def __post_init__(self) -> None:
        h, w = next(c for c in self.cells if c is not None).shape[:2]
        px = _display_px(max(h, w))
        self.cell_w, self.cell_h = px * w / max(h, w) / DPI, px * h / max(h, w) / DPI
        self.interpolation = "nearest" if px >= max(h, w) else "antialiased"   # no aliasing when shrunk
        self.nrows = math.ceil(len(self.cells) / self.ncols)
        captions = [c for c in (self.captions or []) if c]
        longest = max([_text_w(c, _CAPTION_PT) for c in captions] or [0.0])
        self.col_w = min(max(self.cell_w, longest + 0.1), 1.7 * self.cell_w)
        per_line = max(4, int((self.col_w - 0.08) * 72 / (_CAPTION_PT * 0.6)))
        self.lines = [_wrap(c, per_line) if c else None for c in (self.captions or [])]
        self.caption_h = []
        for r in range(self.nrows):
            row = self.lines[r * self.ncols:(r + 1) * self.ncols]
            n_lines = max([len(x) for x in row if x] or [0])
            self.caption_h.append(n_lines * _CAPTION_PT * 1.25 / 72 + (0.06 if n_lines else 0))
        self.label_w = max(_text_w(s, _LABEL_PT) for s in self.row_labels) + 0.15 if self.row_labels else 0.0

    @property
    def width(self) -> float:
        return self.label_w + self.ncols * self.col_w + (self.ncols - 1) * _PAD

    @property
    def height(self) -> float:
        return self.nrows * self.cell_h + sum(self.caption_h) + (self.nrows - 1) * _PAD

    def draw(self, fig: Figure, left: float, top: float) -> None:
        """All cells as one picture on one axes: an axes per image made big grids take seconds."""
        W, H = fig.get_size_inches()
        row_top = np.concatenate([[0.0], np.cumsum([self.cell_h + c + _PAD for c in self.caption_h])]) + top
        mosaic = np.full((round(self.height * DPI), round(self.width * DPI), 3), 255, np.uint8)
        cw, ch = round(self.cell_w * DPI), round(self.cell_h * DPI)
        for i, img in enumerate(self.cells):
            r, c = divmod(i, self.ncols)
            centre = left + self.label_w + c * (self.col_w + _PAD) + self.col_w / 2
            x, y = centre - self.cell_w / 2, row_top[r]
            if img is not None:
                px, py = round((x - left) * DPI), round((y - top) * DPI)
                cell = mosaic[py:py + ch, px:px + cw]
                cell[:] = _fit_cell(img, cell.shape[1], cell.shape[0], self.interpolation == "nearest")
                cell[[0, -1], :] = cell[:, [0, -1]] = 178   # a light grey frame, as axes spines drew
            if i < len(self.lines) and self.lines[i]:
                fig.text(centre / W, 1 - (y + self.cell_h + 0.03) / H, "\n".join(self.lines[i]),
                         ha="center", va="top", fontsize=_CAPTION_PT, color="0.25", linespacing=1.1)
        ax = fig.add_axes((left / W, 1 - (top + self.height) / H, self.width / W, self.height / H))
        ax.imshow(mosaic, interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        for r, label in enumerate(self.row_labels or []):
            fig.text((left + self.label_w - 0.1) / W, 1 - (row_top[r] + self.cell_h / 2) / H, label,
                     ha="right", va="center", fontsize=_LABEL_PT)


def _fit_cell(img: np.ndarray, w: int, h: int, nearest: bool) -> np.ndarray:
    """An image (H,W[,1|3]) resized to (h, w, 3) uint8: nearest when enlarging, smooth when shrinking."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    pil = Image.fromarray(np.ascontiguousarray(img))
    pil = pil.resize((w, h), Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS)
    return np.asarray(pil.convert("RGB"))


def _wrap(text: str, width: int, max_lines: int = 3) -> list[str]:
    lines = textwrap.wrap(text, width) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 1] + "\u2026"
    return lines


@dataclass
class _Block:
    """A grid with header lines (text, points, weight) centred above it."""
    grid: _Grid
    header: list[tuple[str, float, str]] = field(default_factory=list)

    @property
    def header_h(self) -> float:
        return sum(pt * 1.35 / 72 for _, pt, _ in self.header) + (0.1 if self.header else 0)

    @property
    def width(self) -> float:
        return max([self.grid.width] + [_text_w(t, pt) for t, pt, _ in self.header])


def _layout(blocks: list[_Block], title: str, notes: list[str]) -> Figure:
    """Title, note lines, then the blocks side by side, every size in inches."""
    title_h = 0.45 if title else 0.0
    notes_h = len(notes) * _NOTE_PT * 1.5 / 72 + (0.1 if notes else 0)
    header_h = max(b.header_h for b in blocks)
    content_w = sum(b.width for b in blocks) + _GAP * (len(blocks) - 1)
    W = max([3.0, content_w + 2 * _MARGIN, _text_w(title, _TITLE_PT) + 2 * _MARGIN]
            + [_text_w(s, _NOTE_PT) + 2 * _MARGIN for s in notes])
    H = _MARGIN + title_h + notes_h + header_h + max(b.grid.height for b in blocks) + _MARGIN
    fig = _new_figure((W, H))
    y = _MARGIN
    if title:
        fig.text(0.5, 1 - (y + title_h / 2 - 0.05) / H, title, ha="center", va="center",
                 fontsize=_TITLE_PT, fontweight="bold")
        y += title_h
    for s in notes:
        fig.text(0.5, 1 - (y + _NOTE_PT * 0.75 / 72) / H, s, ha="center", va="center",
                 fontsize=_NOTE_PT, color="0.3")
        y += _NOTE_PT * 1.5 / 72
    y += 0.1 if notes else 0.0
    x = (W - content_w) / 2
    for b in blocks:
        centre = x + b.width / 2
        hy = y
        for text, pt, weight in b.header:
            fig.text(centre / W, 1 - hy / H, text, ha="center", va="top", fontsize=pt, fontweight=weight)
            hy += pt * 1.35 / 72
        b.grid.draw(fig, centre - b.grid.width / 2, y + header_h)
        x += b.width + _GAP
    return fig


def _new_figure(size: tuple[float, float], layout: str | None = None) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def image_strip(images: np.ndarray, path, min_px: int = 64, gap: int = 2) -> Path:
    """Images side by side, enlarged (nearest neighbour) to at least `min_px`, `gap` white pixels apart.

    No axes or text: a picture to place in a page, one per latent traversal.
    """
    imgs = _as_images(images, "images")
    scale = max(1, -(-min_px // imgs.shape[1]))
    h, w = imgs.shape[1] * scale, imgs.shape[2] * scale
    strip = np.full((h, len(imgs) * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for k, img in enumerate(imgs):
        strip[:, k * (w + gap):k * (w + gap) + w] = np.kron(img, np.ones((scale, scale, 1), dtype=np.uint8))
    return _save_rgb(strip, path)


def _save(fig: Figure, path) -> Path:
    """Render `fig` and write it as a PNG (see _save_rgb)."""
    fig.set_facecolor("white")
    fig.canvas.draw()
    return _save_rgb(np.asarray(fig.canvas.buffer_rgba())[..., :3], path)  # opaque: RGB is smaller than RGBA


def _save_rgb(rgb: np.ndarray, path) -> Path:
    """Write an RGB array as PNG to a temporary file beside `path`, then move it into place."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise DebiasError(f"figure path {str(path)!r} must end in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(rgb).save(fh, format="PNG", compress_level=6, dpi=(DPI, DPI))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
