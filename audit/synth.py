"""Procedurally drawn synthetic "biased faces": the demo and test data.

Faces (label 1) and non-faces (label 0) are drawn with PIL at 2x-4x the output
size and downsampled with LANCZOS, so they stay recognisable from 64x64 down to
16x16. Every attribute value is stored as a str column; a column that does not
apply to a sample holds "n/a". By default the data are deliberately biased
(few dark-skinned faces, few with glasses, few non-frontal poses, ...), which is
what an audit must find; ``balanced=True`` gives the uniform test set.
``planted_latents`` gives latent means with a planted minority cluster, for the
audit's tests and bench/subgroup_split.py.
"""
from __future__ import annotations

import itertools
import math
import os
import tempfile
from statistics import NormalDist

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from .dataset import ImageDataset
from .errors import DebiasError

NA = "n/a"
_SHARED = {"lighting": ("bright", "dim"), "background": ("plain", "cluttered")}
FACE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "skin_tone": ("light", "medium", "dark"),
    "hair": ("none", "short", "long"),
    "glasses": ("no", "yes"),
    "pose": ("frontal", "left", "right"),
    **_SHARED,
}
NONFACE_ATTRIBUTES: dict[str, tuple[str, ...]] = {"kind": ("scene", "texture", "object"), **_SHARED}
ALL_ATTRIBUTES: dict[str, tuple[str, ...]] = {**FACE_ATTRIBUTES, **NONFACE_ATTRIBUTES}
DEFAULT_PREVALENCE: dict[str, dict[str, float]] = {
    "skin_tone": {"light": 0.55, "medium": 0.40, "dark": 0.05},
    "hair": {"none": 0.15, "short": 0.50, "long": 0.35},
    "glasses": {"no": 0.9, "yes": 0.1},
    "pose": {"frontal": 0.8, "left": 0.1, "right": 0.1},
    "lighting": {"bright": 0.85, "dim": 0.15},
    "background": {"plain": 0.7, "cluttered": 0.3},
    "kind": {"scene": 0.475, "texture": 0.475, "object": 0.05},
}
_NOISE = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)  # byte -> N(0, 1)
SKIN = {"light": (252, 228, 212), "medium": (198, 142, 98), "dark": (78, 48, 32)}
HAIR = [(22, 18, 16), (58, 36, 22), (105, 66, 38), (214, 178, 108), (158, 70, 32), (168, 168, 172)]
_SKIES = [(110, 165, 230), (175, 205, 240), (240, 165, 105), (145, 148, 165)]
_GROUNDS = [(70, 140, 60), (120, 95, 60), (210, 190, 140), (90, 110, 80)]


# ----------------------------------------------------------------- prevalence
def _check_probs(attr: str, probs: dict[str, float]) -> dict[str, float]:
    """Validate one attribute's value -> probability map; return it normalised."""
    if attr not in ALL_ATTRIBUTES:
        raise DebiasError(f"unknown attribute {attr!r}; valid attributes: {', '.join(ALL_ATTRIBUTES)}")
    valid = ALL_ATTRIBUTES[attr]
    if not isinstance(probs, dict):
        raise DebiasError(f"prevalence for {attr!r} must map values to probabilities, got {probs!r}")
    for value, p in probs.items():
        if value not in valid:
            raise DebiasError(f"unknown value {value!r} for attribute {attr!r}; valid values: {', '.join(valid)}")
        if not isinstance(p, (int, float)) or not math.isfinite(p) or p < 0:
            raise DebiasError(f"probability of {attr}={value} must be a finite number >= 0, got {p!r}")
    total = float(sum(probs.values()))
    if total <= 0:
        raise DebiasError(f"probabilities for {attr!r} are all zero; give at least one value a positive weight")
    return {v: float(probs.get(v, 0.0)) / total for v in valid}


def parse_prevalence(spec: str) -> tuple[str, dict[str, float]]:
    """Parse "skin_tone=light:0.5,medium:0.45,dark:0.05" into (attribute, {value: p}).

    Values left out get probability 0; the rest are normalised to sum to 1.
    """
    example = "e.g. skin_tone=light:0.5,medium:0.45,dark:0.05"
    attr, sep, body = spec.partition("=")
    attr = attr.strip()
    if not sep or not attr or not body.strip():
        raise DebiasError(f"bad prevalence {spec!r}: expected ATTRIBUTE=VALUE:P,VALUE:P,... ({example})")
    probs: dict[str, float] = {}
    for item in body.split(","):
        value, sep, p = (s.strip() for s in item.partition(":"))
        if not sep or not value:
            raise DebiasError(f"bad prevalence item {item.strip()!r} in {spec!r}: expected VALUE:P ({example})")
        try:
            prob = float(p)
        except ValueError:
            raise DebiasError(f"bad probability {p!r} for {attr}={value} in {spec!r}: expected a number") from None
        if value in probs:
            raise DebiasError(f"value {value!r} appears twice in {spec!r}; give each value once")
        probs[value] = prob
    return attr, _check_probs(attr, probs)


def _allocate(probs: dict[str, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified draw: counts are p*n rounded by largest remainder (sum n), shuffled."""
    values = list(probs)
    exact = np.array([probs[v] for v in values]) * n
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    return np.repeat(np.array(values, dtype=object), counts)[rng.permutation(n)]


# ------------------------------------------------------------- drawing helpers
def _c(rgb) -> tuple[int, int, int]:
    return tuple(min(255, max(0, int(v + 0.5))) for v in rgb)


def _shade(rgb, f: float) -> tuple[int, int, int]:
    return _c(v * f for v in rgb)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return _c(u * (1 - t) + v * t for u, v in zip(a, b))


def _rand_colour(rng, lo: int = 20, hi: int = 236) -> tuple[int, int, int]:
    return tuple(rng.integers(lo, hi, 3).tolist())


def _box(x: float, y: float, rx: float, ry: float) -> tuple[float, float, float, float]:
    return (x - rx, y - ry, x + rx, y + ry)


def _clutter(d: ImageDraw.ImageDraw, rng, S: int, n: int) -> None:
    u = (rng.uniform(size=(n, 5)) * [1.2, 1.2, 0.18, 1.2, 4] + [-0.1, -0.1, 0.04, 0.4, 0]).tolist()
    cols = rng.integers(20, 236, (n, 3)).tolist()
    for (x, y, r, q, shape), col in zip(u, cols):
        x, y, r, col, shape = x * S, y * S, r * S, tuple(col), int(shape)
        if shape == 0:
            d.ellipse(_box(x, y, r, r * q), fill=col)
        elif shape == 1:
            d.rectangle(_box(x, y, r, r * q), fill=col)
        elif shape == 2:
            d.line([(x - r, y - r * q), (x + r, y + r * q)], fill=col, width=max(2, int(S * 0.03)))
        else:
            d.polygon([(x, y - r), (x - r, y + r * q), (x + r, y + r)], fill=col)


def _background(d, rng, S: int, kind: str) -> None:
    d.rectangle((0, 0, S, S), fill=_rand_colour(rng, 30, 230))
    if kind == "cluttered":
        _clutter(d, rng, S, int(rng.integers(10, 18)))


# ---------------------------------------------------------------------- faces
def _hair(d, cx, cy, hw, hh, dx, col, back: bool) -> None:
    if back:  # long hair falls behind the head onto the shoulders
        d.rounded_rectangle((cx - 1.22 * hw, cy - 1.1 * hh, cx + 1.22 * hw, cy + 1.45 * hh), radius=hw, fill=col)
    else:  # the cap on top of the head, parted towards where the face turns
        d.chord(_box(cx + 0.15 * dx, cy - 0.12 * hh, 1.08 * hw, 1.02 * hh), 192, 348, fill=col)


def _head(d, cx, cy, hw, hh, skin, side) -> None:
    d.rectangle((cx - 0.42 * hw, cy + 0.5 * hh, cx + 0.42 * hw, cy + 1.2 * hh), fill=_shade(skin, 0.85))  # neck
    for s in (-1, 1):  # ears; when turned, only the far-side one shows
        if side == 0 or s == -side:
            d.ellipse(_box(cx + s * hw * 0.97, cy, 0.16 * hw, 0.2 * hh), fill=_shade(skin, 0.9))
    d.ellipse(_box(cx, cy, hw, hh), fill=skin)


def _eyes(d, rng, fx, ey, hw, hh, side, glasses, skin, hair_c, lw) -> None:
    ew, eh = 0.17 * hw, 0.095 * hh
    iris = HAIR[int(rng.integers(3))] if rng.random() < 0.7 else _c((60, 110, 150))
    frame, roundness = _c(rng.integers(0, 45, 3)), rng.uniform(0.6, 2.1)  # 2.1: round lenses
    brow = _shade(hair_c, 0.7) if hair_c is not None else (50, 35, 25)
    for s in (-1, 1):
        w = ew * (0.72 if s == side else 1.0)  # the eye turned away is foreshortened
        ex = fx + s * 0.4 * hw * (0.85 if side else 1.0)
        if glasses:
            d.ellipse(_box(ex, ey, 1.6 * w, 2.1 * eh), fill=_mix(skin, (205, 225, 240), 0.3))
        d.ellipse(_box(ex, ey, w, eh), fill=(245, 245, 240))
        px = ex + side * 0.3 * w
        d.ellipse(_box(px, ey, 0.55 * w, 0.95 * eh), fill=iris)
        d.ellipse(_box(px, ey, 0.25 * w, 0.45 * eh), fill=(10, 8, 8))
        d.line([(ex - 1.15 * w, ey - 2.3 * eh), (ex + 1.15 * w, ey - 2.6 * eh - s * 0.3 * eh)],
               fill=brow, width=max(2, int(0.06 * hh)))
        if glasses:
            box, radius = _box(ex, ey, 1.6 * w, 2.1 * eh), eh * roundness
            if radius + 2 < min(1.6 * w, 2.1 * eh):  # else round lenses (avoids a Pillow corner case)
                d.rounded_rectangle(box, radius=radius, outline=frame, width=lw)
            else:
                d.ellipse(box, outline=frame, width=lw)
            d.line([(ex + s * 1.6 * w, ey - eh), (fx + s * 0.97 * hw, ey - 1.3 * eh)], fill=frame, width=lw)
    if glasses:
        d.line([(fx - 0.4 * hw + 1.6 * ew * 0.8, ey - eh), (fx + 0.4 * hw - 1.6 * ew * 0.8, ey - eh)],
               fill=frame, width=lw)


def _nose_mouth(d, rng, fx, cy, hw, hh, side, skin, lw) -> None:
    nx, ny = fx + side * 0.12 * hw, cy + 0.26 * hh
    if side:
        d.line([(fx + side * 0.05 * hw, cy + 0.02 * hh), (nx + side * 0.1 * hw, ny)], fill=_shade(skin, 0.8), width=lw)
    d.arc(_box(nx, ny, 0.15 * hw, 0.07 * hh), 10, 170, fill=_shade(skin, 0.62), width=lw)
    mx, my, mw = fx + side * 0.05 * hw, cy + 0.55 * hh, 0.32 * hw * (0.85 if side else 1.0)
    if rng.random() < 0.5:  # smile: open mouth with teeth
        d.chord(_box(mx, my - 0.03 * hh, mw, 0.15 * hh), 0, 180, fill=(75, 22, 28))
        d.chord(_box(mx, my - 0.03 * hh, 0.8 * mw, 0.06 * hh), 0, 180, fill=(238, 236, 228))
    else:
        d.ellipse(_box(mx, my, 0.85 * mw, 0.045 * hh), fill=_mix(_shade(skin, 0.6), (130, 30, 45), 0.45))


def _face(img: Image.Image, rng, a: dict[str, str], S: int) -> Image.Image:
    skin = _c(np.asarray(SKIN[a["skin_tone"]]) * rng.uniform(0.94, 1.05) + rng.normal(0, 4, 3))
    hair_c = HAIR[int(rng.integers(len(HAIR)))]
    k = S * rng.uniform(0.88, 1.06)
    shape = int(rng.integers(3))  # round, oval, wide
    hw, hh = k * (0.245, 0.215, 0.27)[shape], k * (0.285, 0.31, 0.265)[shape]
    cx, cy = S * (0.5 + rng.uniform(-0.05, 0.05)), S * (0.46 + rng.uniform(-0.04, 0.04))
    side = {"frontal": 0, "left": -1, "right": 1}[a["pose"]]
    dx = side * hw * rng.uniform(0.2, 0.28)
    angle = -side * rng.uniform(7, 14) + rng.uniform(-4, 4)
    lw = max(2, round(S * 0.03))
    layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    d.ellipse(_box(cx, cy + 1.8 * hh, 1.9 * hw, 0.8 * hh), fill=_rand_colour(rng))  # shoulders
    if a["hair"] == "long":
        _hair(d, cx, cy, hw, hh, dx, hair_c, back=True)
    _head(d, cx, cy, hw, hh, skin, side)
    if a["hair"] != "none":
        _hair(d, cx, cy, hw, hh, dx, hair_c, back=False)
    fx = cx + dx
    _eyes(d, rng, fx, cy - 0.05 * hh, hw, hh, side, a["glasses"] == "yes", skin,
          hair_c if a["hair"] != "none" else None, lw)
    _nose_mouth(d, rng, fx, cy, hw, hh, side, skin, lw)
    # NEAREST is enough at 2x-4x supersampling, and 15x faster than BILINEAR
    layer = layer.rotate(angle, Image.Resampling.NEAREST, center=(cx, cy))
    img.paste(layer, mask=layer)
    return img


# ------------------------------------------------------------------ non-faces
def _scene(d, rng, S: int, cluttered: bool) -> None:
    sky = _mix(_SKIES[int(rng.integers(4))], _rand_colour(rng), 0.15)
    horizon = S * rng.uniform(0.45, 0.75)
    for j in range(8):
        d.rectangle((0, horizon * j / 8, S, horizon * (j + 1) / 8 + 1), fill=_mix(sky, (255, 255, 255), j / 14))
    ground = _mix(_GROUNDS[int(rng.integers(4))], _rand_colour(rng), 0.15)
    d.rectangle((0, horizon, S, S), fill=ground)
    if rng.random() < 0.7:
        d.ellipse(_box(*(rng.uniform(0.1, 0.9, 2) * (S, horizon * 0.7)), *[S * rng.uniform(0.04, 0.09)] * 2),
                  fill=(255, 236, 140))
    for _ in range(int(rng.integers(5, 10) if cluttered else rng.integers(1, 4))):
        x, s, what = rng.uniform(0, 1) * S, S * rng.uniform(0.06, 0.16), rng.integers(4)
        y = horizon + rng.uniform(0, 0.15) * S
        if what == 0:  # tree
            d.rectangle((x - 0.15 * s, y - s, x + 0.15 * s, y), fill=(90, 60, 35))
            d.ellipse(_box(x, y - 1.4 * s, 0.7 * s, 0.8 * s), fill=_mix((40, 120, 45), _rand_colour(rng), 0.2))
        elif what == 1:  # house
            wall = _rand_colour(rng, 90, 240)
            d.rectangle((x - s, y - 1.3 * s, x + s, y), fill=wall)
            d.polygon([(x - 1.2 * s, y - 1.3 * s), (x, y - 2.2 * s), (x + 1.2 * s, y - 1.3 * s)],
                      fill=_rand_colour(rng, 60, 180))
            d.rectangle(_box(x - 0.45 * s, y - 0.8 * s, 0.22 * s, 0.22 * s), fill=(60, 70, 90))
        elif what == 2:  # mountain
            d.polygon([(x - 2.5 * s, horizon), (x, horizon - 2 * s), (x + 2.5 * s, horizon)],
                      fill=_mix(ground, (120, 120, 130), 0.6))
        else:  # cloud
            cy = horizon * rng.uniform(0.15, 0.6)
            for o in (-0.6, 0, 0.6):
                d.ellipse(_box(x + o * s, cy - (o == 0) * 0.2 * s, 0.6 * s, 0.4 * s), fill=(245, 245, 250))


def _texture(img: Image.Image, rng, S: int) -> None:
    kind, c1, c2 = int(rng.integers(3)), _rand_colour(rng), _rand_colour(rng)
    T = int(S * 1.5)
    tile = Image.new("RGB", (T, T), c1)
    d = ImageDraw.Draw(tile)
    period = S * rng.uniform(0.07, 0.2)
    if kind == 0:  # stripes
        for x in np.arange(0, T, period):
            d.rectangle((x, 0, x + period * rng.uniform(0.3, 0.6), T), fill=c2)
    elif kind == 1:  # checks
        steps = list(enumerate(np.arange(0, T, period)))
        for (i, x), (j, y) in itertools.product(steps, steps):
            if (i + j) % 2:
                d.rectangle((x, y, x + period, y + period), fill=c2)
    else:  # noise blobs
        m = int(rng.integers(30, 60))
        for (x, y, r, q), col in zip(rng.uniform(size=(m, 4)).tolist(), rng.integers(20, 236, (m, 3)).tolist()):
            r = S * (0.02 + 0.1 * r)
            d.ellipse(_box(x * T, y * T, r, r * (0.5 + q)), fill=tuple(col))
    tile = tile.rotate(rng.uniform(0, 180), Image.Resampling.NEAREST)
    off = (T - S) // 2
    img.paste(tile.crop((off, off, off + S, off + S)))


def _object(d, rng, S: int) -> None:
    x, y, r = S * (0.5 + rng.uniform(-0.06, 0.06)), S * (0.48 + rng.uniform(-0.05, 0.05)), S * rng.uniform(0.22, 0.3)
    skin = list(SKIN.values())[int(rng.integers(3))]  # half are skin-coloured: face-like hard negatives
    col = _shade(skin, rng.uniform(0.9, 1.05)) if rng.random() < 0.5 else _rand_colour(rng)
    what, lw = int(rng.integers(4)), max(2, round(S * 0.03))
    if what == 0:  # ball with seams
        d.ellipse(_box(x, y, r, r), fill=col)
        seam = (240, 240, 240) if sum(col) < 400 else (40, 40, 40)
        d.arc(_box(x - 1.3 * r, y, r, 1.2 * r), -50, 50, fill=seam, width=lw)
        d.arc(_box(x + 1.3 * r, y, r, 1.2 * r), 130, 230, fill=seam, width=lw)
    elif what == 1:  # fruit with stem and leaf
        d.ellipse(_box(x, y, r, r * rng.uniform(0.85, 1.1)), fill=col)
        d.line([(x, y - 0.85 * r), (x + 0.1 * r, y - 1.2 * r)], fill=(90, 60, 30), width=lw)
        d.ellipse(_box(x + 0.3 * r, y - 1.1 * r, 0.25 * r, 0.1 * r), fill=(60, 140, 50))
    elif what == 2:  # clock
        d.ellipse(_box(x, y, r, r), fill=_mix(col, (250, 248, 235), 0.5), outline=(30, 30, 30), width=2 * lw)
        ray = lambda t, f: (x + f * r * math.cos(t), y + f * r * math.sin(t))  # noqa: E731
        for h in range(12):  # hour ticks, then two hands
            d.line([ray(h * math.pi / 6, 0.75), ray(h * math.pi / 6, 0.88)], fill=(30, 30, 30), width=lw)
        for length, t in zip((0.5, 0.75), rng.uniform(0, 2 * math.pi, 2)):
            d.line([(x, y), ray(t, length)], fill=(20, 20, 20), width=lw)
    else:  # plate, maybe with food
        d.ellipse(_box(x, y, 1.15 * r, 0.85 * r), fill=col, outline=_shade(col, 0.7), width=lw)
        d.ellipse(_box(x, y, 0.75 * r, 0.55 * r), fill=_shade(col, 1.1))
        for _ in range(int(rng.integers(0, 3))):
            d.ellipse(_box(*(np.array([x, y]) + rng.uniform(-0.3, 0.3, 2) * r), 0.2 * r, 0.15 * r),
                      fill=_rand_colour(rng))


# ------------------------------------------------------------------ rendering
def _light(images: np.ndarray, lighting: np.ndarray, rng) -> None:
    """In place: multiply by a brightness gradient (dim: darker, steeper), add mild noise."""
    n, size = len(images), images.shape[1]
    dim = lighting == "dim"
    level = np.where(dim, rng.uniform(0.4, 0.58, n), rng.uniform(0.95, 1.08, n)).astype(np.float32)
    slope = np.where(dim, rng.uniform(0.15, 0.35, n), rng.uniform(0.0, 0.12, n)).astype(np.float32)
    theta, sigma = rng.uniform(0, 2 * math.pi, n), rng.uniform(1.5, 4.0, n).astype(np.float32)
    cos, sin = np.cos(theta).astype(np.float32)[:, None, None], np.sin(theta).astype(np.float32)[:, None, None]
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    for s in range(0, n, 256):  # chunked: vectorised but bounded memory
        k = slice(s, s + 256)
        tilt = ramp[None, None, :] * cos[k] + ramp[None, :, None] * sin[k]  # (b, H, W) in [-1.4, 1.4]
        gain = level[k, None, None] * (1 + slope[k, None, None] * tilt)
        chunk = images[k]
        noise = _NOISE[np.frombuffer(rng.bytes(chunk.size), np.uint8)].reshape(chunk.shape)
        out = chunk * gain[..., None] + noise * sigma[k, None, None, None] + np.float32(0.5)
        images[k] = np.clip(out, 0, 255).astype(np.uint8)


def _render(rng, a: dict[str, str], label: int, size: int) -> np.ndarray:
    S = size * (4 if size <= 32 else 2)
    img = Image.new("RGB", (S, S))
    d = ImageDraw.Draw(img)
    if label == 1:
        _background(d, rng, S, a["background"])
        img = _face(img, rng, a, S)
    elif a["kind"] == "scene":
        _scene(d, rng, S, a["background"] == "cluttered")
    elif a["kind"] == "texture":
        _texture(img, rng, S)
        if a["background"] == "cluttered":
            _clutter(d, rng, S, int(rng.integers(4, 9)))
    else:
        _background(d, rng, S, a["background"])
        _object(d, rng, S)
    return np.asarray(img.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0))


def make_synthetic(n_faces: int, n_nonfaces: int, image_size: int = 64, seed: int = 0,
                   prevalence: dict[str, dict[str, float]] | None = None,
                   balanced: bool = False) -> ImageDataset:
    """Draw a shuffled dataset of `n_faces` faces (label 1) and `n_nonfaces` non-faces.

    prevalence: per attribute, value -> probability within the class(es) having it;
    overrides the biased defaults (or the uniform ones when `balanced`). Values are
    assigned by a stratified draw, so realised counts are p*n rounded.
    Same arguments -> byte-identical images.
    """
    for name, n in (("n_faces", n_faces), ("n_nonfaces", n_nonfaces)):
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise DebiasError(f"{name} must be an integer >= 1, got {n!r}")
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise DebiasError(f"image_size must be an integer >= 8, got {image_size!r}")
    probs = {a: ({v: 1.0 for v in vals} if balanced else DEFAULT_PREVALENCE[a]) for a, vals in ALL_ATTRIBUTES.items()}
    probs = {a: _check_probs(a, p) for a, p in {**probs, **(prevalence or {})}.items()}

    rng = np.random.default_rng(seed)
    n = n_faces + n_nonfaces
    labels = np.r_[np.ones(n_faces, np.int64), np.zeros(n_nonfaces, np.int64)][rng.permutation(n)]
    cols = {a: np.full(n, NA, dtype=object) for a in ALL_ATTRIBUTES}
    for label, attrs in ((1, FACE_ATTRIBUTES), (0, NONFACE_ATTRIBUTES)):
        idx = np.flatnonzero(labels == label)
        for a in attrs:
            cols[a][idx] = _allocate(probs[a], len(idx), rng)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    for i in range(n):
        images[i] = _render(rng, {a: cols[a][i] for a in cols}, int(labels[i]), int(image_size))
    _light(images, cols["lighting"], rng)
    return ImageDataset(images=images, labels=labels, attributes=pd.DataFrame(cols),
                        source=f"synthetic(seed={seed}{', balanced' if balanced else ''})")


def planted_latents(rng: np.random.Generator, n: int = 1000, dim: int = 16, share: float = 0.03,
                    distance: float = 8.0, spread: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(n latent means around one centre (sd 1), the mask of the `share` of them planted `distance` away in a
    random direction with sd `spread`)."""
    rare = np.zeros(n, bool)
    rare[rng.choice(n, round(share * n), replace=False)] = True
    mu = rng.normal(size=(n, dim))
    direction = rng.normal(size=dim)
    mu[rare] = spread * mu[rare] + distance * direction / np.linalg.norm(direction)
    return mu, rare


def save_npz(ds: ImageDataset, path) -> None:
    """Write images, labels and attr_<name> (unicode str arrays) atomically to `path`."""
    path = os.fspath(path)
    arrays = {"images": np.asarray(ds.images), "labels": np.asarray(ds.labels)}
    for name in ds.attributes.columns:
        arrays[f"attr_{name}"] = np.asarray(ds.attributes[name].astype(str).to_numpy(), dtype=str)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
