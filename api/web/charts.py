"""Charts as inline SVG, drawn server-side: they show in the pages, in print and in a downloaded report.

Every function returns `Markup` (text inside is escaped) for an `<svg role="img">`
whose aria-label says what the chart shows; sizes are in viewBox units, so the
CSS scales them to the width available (1280px or 390px alike).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 400             # viewBox width: text stays legible when scaled down to a 390px screen
ROW = 24                 # height of one bar row
FONT = 14
PALETTE = ("#2563eb", "#d97706", "#059669", "#9333ea", "#dc2626", "#0891b2")
CLASS_COLORS = {"positive": "#2563eb", "negative": "#d97706"}
BASELINE_COLOR, MODEL_COLOR = "#6b7280", "#2563eb"
# Shapes tell series (and classes) apart without colour: print in grey, colour-blind readers.
SHAPES = ("circle", "square", "triangle", "diamond")
CLASS_SHAPES = {"positive": "circle", "negative": "triangle"}
CHAR_W = 0.62           # a character's width in em, generous for the fonts a browser falls back to


def _number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for people: integers as such, others to `digits` significant figures; '–' for no number."""
    if not _number(x):
        return "–"
    if float(x).is_integer() and abs(x) < 1e9:
        return str(int(x))
    return f"{x:.{digits}g}"


def pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if _number(x) else "–"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def text_width(s: str, size: int = FONT) -> float:
    return CHAR_W * size * len(s)


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2 or 5 x 10^k, about `n` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    if integer:
        step = max(1.0, round(step))
    first = math.floor(lo / step + 1e-9) * step
    out, v = [], first
    while len(out) < 50:
        out.append(round(v, 12))
        if v >= hi - step * 1e-9:
            break
        v += step
    return out


def marker(shape: str, cx: float, cy: float, color: str, r: float = 4.0, title: str = "") -> str:
    """A point drawn as `shape` (circle, square, triangle, diamond), with a tooltip when `title` is given."""
    t = f"<title>{escape(title)}</title>" if title else ""
    if shape == "square":
        return f'<rect x="{cx - r:.1f}" y="{cy - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" fill="{color}">{t}</rect>'
    if shape in ("triangle", "diamond"):
        pts = ([(cx, cy - r * 1.2), (cx + r * 1.1, cy + r * 0.9), (cx - r * 1.1, cy + r * 0.9)] if shape == "triangle"
               else [(cx, cy - r * 1.3), (cx + r * 1.3, cy), (cx, cy + r * 1.3), (cx - r * 1.3, cy)])
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        return f'<polygon points="{path}" fill="{color}">{t}</polygon>'
    return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{color}">{t}</circle>'


def _svg(height: float, label: str, body: list[str], width: int = WIDTH) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height:.0f}" role="img" '
                  f'aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet" '
                  f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>{"".join(body)}</svg>')


def _text(x: float, y: float, s: str, anchor: str = "start", cls: str = "", size: int = FONT) -> str:
    c = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{c}>'
            f"{escape(s)}</text>")


def _legend(items: Sequence[tuple[str, str]], y: float, x0: float = 0, shapes: Sequence[str] | None = None,
            width: int = WIDTH) -> tuple[list[str], float]:
    """Keys from (x0, y), wrapping onto more lines when needed; returns them and the y below them.

    With `shapes`, each key is that series' marker shape (so the legend reads without colour)."""
    out, x = [], x0
    for i, (name, color) in enumerate(items):
        name = _clip(name, int((width - x0 - 20) / (CHAR_W * FONT)))
        w = 18 + text_width(name) + 14
        if x > x0 and x + w > width:
            x, y = x0, y + 20
        if shapes:
            out.append(marker(shapes[i % len(shapes)], x + 6, y - 5, color, 5))
        else:
            out.append(f'<rect x="{x:.1f}" y="{y - 11:.1f}" width="12" height="12" fill="{color}"/>')
        out.append(_text(x + 18, y, name))
        x += w
    return out, y + 12


def _class_of(color: str) -> str | None:
    return next((c for c, col in CLASS_COLORS.items() if col == color), None)


def bar_chart(items: Sequence[tuple[str, float]], label: str, *, value_format=fmt, max_value: float | None = None,
              reference: float | None = None, reference_label: str = "", color: str = PALETTE[0],
              colors: Sequence[str] | None = None, legend: Sequence[tuple[str, str]] = ()) -> Markup:
    """Horizontal bars, one row per (name, value), the value printed after each bar.

    `reference` draws a dashed vertical line at that value (e.g. 1.0 = uniform sampling weight);
    `legend` names what the `colors` mean. Bars in class colours also get the class's shape before
    their name (and in the legend): the class reads without colour.
    """
    items = list(items)
    row_colors = [colors[i % len(colors)] if colors else color for i in range(len(items))]
    classes = [_class_of(c) for c in row_colors]
    by_class = bool(colors) and all(classes)
    label_w, value_w = 130, 56
    shapes = [CLASS_SHAPES[_class_of(c)] for _, c in legend] if by_class and legend and all(
        _class_of(c) for _, c in legend) else None
    body, top = _legend(legend, 16, shapes=shapes) if legend else ([], 0)
    top += 8 + (18 if reference is not None and reference_label else 0)
    plot_w = WIDTH - label_w - value_w
    vmax = max([v for _, v in items] + [reference or 0, max_value or 0, 1e-12])
    scale = plot_w / vmax
    for i, (name, value) in enumerate(items):
        y = top + i * ROW
        body.append(f'<g><title>{escape(name)}{" (" + classes[i] + " class)" if by_class else ""}: '
                    f'{escape(value_format(value))}</title>')
        body.append(_text(label_w - (18 if by_class else 6), y + 17, _clip(str(name), 14 if by_class else 16), "end"))
        if by_class:
            body.append(marker(CLASS_SHAPES[classes[i]], label_w - 8, y + 12, row_colors[i], 4.5))
        body.append(f'<rect x="{label_w}" y="{y + 4}" width="{max(value * scale, 0.5):.1f}" height="{ROW - 8}" '
                    f'fill="{row_colors[i]}" rx="2"/>')
        body.append(_text(label_w + max(value, 0) * scale + 4, y + 17, value_format(value)))
        body.append("</g>")
    height = top + len(items) * ROW + 8
    if reference is not None:
        x = label_w + reference * scale
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{height - 4}" stroke="#111827" '
                    f'stroke-dasharray="4 3" stroke-width="1"/>')
        if reference_label:
            half = text_width(reference_label, 12) / 2
            body.append(_text(min(max(x, half), WIDTH - half), top - 10, reference_label, "middle", size=12))
    return _svg(height, label, body)


def grouped_bars(groups: Sequence[tuple[str, Sequence[float | None]]], series: Sequence[tuple[str, str]],
                 label: str, *, max_value: float = 1.0, value_format=pct, marked: Sequence[int] = (),
                 intervals: Sequence[Sequence[Sequence[float] | None]] | None = None,
                 notes: Sequence[str] = (), width: int = WIDTH) -> Markup:
    """Per group, its name on a line and one bar per series below (e.g. baseline vs debiased accuracy).

    `intervals[group][series]` draws an error bar [low, high] over the bar and prints it after the value;
    `notes[group]` is a second line under the group's name (e.g. "n=200 · worst of both"). `marked`
    groups get a ★. The legend goes one series per line: names can be long. `width` is the viewBox
    width: 400 reads at 390px, a wider one fills a wide card without oversized type.
    """
    size, value_w, bar_h, name_h = 16, 160 if intervals else 72, 19, 24   # a list more than a chart: larger type
    plot_w = width - value_w
    scale = plot_w / max(max_value, 1e-12)
    body, y = [], 0.0
    for name, color in series:
        body.append(f'<rect x="0" y="{y + 5:.1f}" width="14" height="14" fill="{color}"/>')
        body.append(_text(20, y + 17, _clip(name, 40 * width // WIDTH), size=size))
        y += 24
    if intervals:
        body.append(f'<line x1="0" x2="14" y1="{y + 12:.1f}" y2="{y + 12:.1f}" stroke="#111827" stroke-width="1.5"/>')
        body.append(_text(20, y + 17, "95% interval (Wilson)", size=size - 2))
        y += 24
    y += 6
    top = y
    for i, (name, values) in enumerate(groups):
        if i:
            body.append(f'<line x1="0" x2="{width}" y1="{y - 3:.1f}" y2="{y - 3:.1f}" stroke="#e5e7eb"/>')
        star = "★ " if i in marked else ""
        body.append(_text(0, y + 17, star + _clip(str(name), 40 * width // WIDTH), size=size))
        y += name_h
        if i < len(notes) and notes[i]:
            body.append(_text(0, y + 13, notes[i], cls="chart-note", size=size - 3))
            y += 18
        for j, ((sname, color), v) in enumerate(zip(series, values)):
            ci = intervals[i][j] if intervals else None
            if v is None:
                body.append(_text(0, y + 15, f"{sname}: no value", size=size - 2))
            else:
                ci_text = f" [{value_format(ci[0])}, {value_format(ci[1])}]" if ci else ""
                body.append(f'<g><title>{escape(name)}, {escape(sname)}: {escape(value_format(v) + ci_text)}</title>'
                            f'<rect x="0" y="{y + 2:.1f}" width="{max(v * scale, 0.5):.1f}" height="{bar_h - 4}" '
                            f'fill="{color}" rx="2"/></g>')
                if ci:
                    x0, x1, mid = ci[0] * scale, ci[1] * scale, y + bar_h / 2
                    body.append(f'<g class="error-bar" stroke="#111827" stroke-width="1.5">'
                                f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{mid:.1f}" y2="{mid:.1f}"/>'
                                f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="{mid - 5:.1f}" y2="{mid + 5:.1f}"/>'
                                f'<line x1="{x1:.1f}" x2="{x1:.1f}" y1="{mid - 5:.1f}" y2="{mid + 5:.1f}"/></g>')
                    # The value column is fixed: text never runs into the interval nor off the chart.
                    body.append(_text(plot_w + 6, y + 15, value_format(v), size=size - 2))
                    # Bounds without the unit ("[64.9, 77.3]" for percentages): short enough to share the column.
                    bound = (lambda x: f"{100 * x:.1f}") if value_format is pct else value_format
                    body.append(_text(width, y + 15, f"[{bound(ci[0])}, {bound(ci[1])}]", "end", cls="chart-note",
                                      size=size - 4))
                else:
                    body.append(_text(v * scale + 4, y + 15, value_format(v), size=size - 1))
            y += bar_h
        y += 10
    if intervals:  # the axis ends where the measure does (100% for accuracy)
        body.append(f'<line x1="{plot_w:.1f}" x2="{plot_w:.1f}" y1="{top - 4:.1f}" y2="{y - 6:.1f}" '
                    f'stroke="#9ca3af" stroke-dasharray="3 3"/>')
        body.append(_text(0, y + 10, value_format(0), size=12))
        body.append(_text(plot_w, y + 10, value_format(max_value), "end", size=12))
        y += 16
    return _svg(y, label, body, width)


_HATCH = 0  # a per-process counter: pattern ids must be unique on a page holding many charts


def _hatch(color: str) -> tuple[str, str]:
    """A diagonal-stripe fill in `color`: the negative class's bars differ from the positive's by texture too."""
    global _HATCH
    _HATCH += 1
    pid = f"hatch{_HATCH}"
    return (f'<defs><pattern id="{pid}" width="5" height="5" patternUnits="userSpaceOnUse" '
            f'patternTransform="rotate(45)"><rect width="5" height="5" fill="{color}" opacity="0.35"/>'
            f'<line x1="0" y1="0" x2="0" y2="5" stroke="{color}" stroke-width="3"/></pattern></defs>', f"url(#{pid})")


def _x_ticks(body: list[str], ticks: Sequence[float], xpos, y: float, fmt_tick, min_gap: float = 8) -> None:
    """Tick labels under an axis, dropping any that would touch the one before (or run off the chart)."""
    last_right = -1e9
    for t in ticks:
        x, s = xpos(t), fmt_tick(t)
        w = text_width(s, 12)
        lo = min(max(x - w / 2, 0), WIDTH - w)
        if lo < last_right + min_gap:
            continue
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 14:.1f}" y2="{y - 10:.1f}" stroke="#6b7280"/>')
        body.append(_text(lo + w / 2, y, s, "middle", size=12))
        last_right = lo + w


def _y_ticks(body: list[str], ticks: Sequence[float], ypos, left: float, right: float, fmt_tick) -> None:
    for t in ticks:
        y = ypos(t)
        body.append(f'<line x1="{left:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        body.append(_text(left - 6, y + 4, fmt_tick(t), "end", size=12))


def histogram(edges: Sequence[float], counts: dict[str, Sequence[int]], label: str, *,
              highlight: Sequence[float] | None = None, height: int = 200) -> Markup:
    """Counts per bin for each series (side by side within a bin); `highlight` shades a [lo, hi] value range.

    Classes differ by texture as well as colour (the negative class is hatched); axes carry round ticks."""
    left, bottom = 40, 38
    names = list(counts)
    colors = [CLASS_COLORS.get(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)]
    fills, defs = [], []
    for j, (name, color) in enumerate(zip(names, colors)):
        if name == "negative" or (j and name not in CLASS_COLORS):
            d, f = _hatch(color)
            defs.append(d)
            fills.append(f)
        else:
            fills.append(color)
    keys, top = _legend(list(zip(names, fills)), 16, left)
    body = defs + keys
    top += 20 if highlight is not None else 8   # the "rare" label sits in its own band above the bars
    plot_w, plot_h = WIDTH - left - 12, height - top - bottom
    nbins = len(edges) - 1
    cmax = max([max(c) for c in counts.values() if len(c)] + [1])
    yt = nice_ticks(0, cmax, 4, integer=True)
    ymax = max(yt[-1], 1)
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1.0

    def xpos(v: float) -> float:
        return left + (v - lo) / span * plot_w

    def ypos(c: float) -> float:
        return top + plot_h - c / ymax * plot_h

    _y_ticks(body, yt, ypos, left, left + plot_w, lambda t: str(int(t)))
    if highlight is not None:
        a, b = max(highlight[0], lo), min(highlight[1], hi)
        if b > a:
            body.append(f'<rect x="{xpos(a):.1f}" y="{top}" width="{xpos(b) - xpos(a):.1f}" height="{plot_h}" '
                        f'fill="#fde68a" opacity="0.7"><title>rare range {fmt(highlight[0])} to '
                        f'{fmt(highlight[1])}</title></rect>')
            half = text_width("rare range", 12) / 2
            body.append(_text(min(max((xpos(a) + xpos(b)) / 2, left + half), WIDTH - half), top - 5, "rare range",
                              "middle", size=12))
    bin_w = plot_w / max(nbins, 1)
    bar_w = (bin_w - 2) / max(len(names), 1)
    for j, name in enumerate(names):
        for i, c in enumerate(counts[name]):
            h = c / ymax * plot_h
            x = left + i * bin_w + 1 + j * bar_w
            body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                        f'fill="{fills[j]}" stroke="{colors[j]}" stroke-width="0.5"><title>{escape(name)}: {c} in '
                        f'[{fmt(edges[i])}, {fmt(edges[i + 1])})</title></rect>')
    body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#111827"/>')
    _x_ticks(body, [t for t in nice_ticks(lo, hi, 5) if lo - 1e-9 <= t <= hi + 1e-9], xpos, height - 20,
             lambda t: fmt(t, 2))
    body.append(_text(left + plot_w / 2, height - 4, "latent value (count of samples per bin)", "middle", size=12))
    return _svg(height, label, body)


def line_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], label: str, *, y_label: str = "",
               x_label: str = "epoch", height: int = 200, y_format=fmt,
               colors: Sequence[str] | None = None,
               y_bounds: tuple[float | None, float | None] = (None, None)) -> Markup:
    """One line per series of (x, y), its points drawn in the series' own shape; round ticks on both axes.

    The y axis never passes `y_bounds`: an accuracy axis ends at 100%, a loss axis starts at 0. The
    y label names the quantity above the axis (horizontal text: it never collides with the ticks).
    """
    left, bottom, right = 52, 38, 16
    colors = list(colors or PALETTE)
    body, top = _legend([(n, colors[i % len(colors)]) for i, (n, _) in enumerate(series)], 16, 0, shapes=SHAPES)
    top += 28 if y_label else 12   # room above the top tick's label
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    points = [p for _, pts in series for p in pts if p[1] is not None and math.isfinite(p[1])]
    if not points:
        body.append(_text(WIDTH / 2, top + plot_h / 2, "no data", "middle"))
        return _svg(height, label, body)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5 * (abs(y0) or 1), y1 + 0.5 * (abs(y1) or 1)
    lo_bound, hi_bound = y_bounds
    if lo_bound is not None and min(ys) >= lo_bound:
        y0 = max(y0, lo_bound)
    if hi_bound is not None and max(ys) <= hi_bound:
        y1 = min(y1, hi_bound)
    yt = nice_ticks(y0, y1, 5)
    yt = [t for t in yt if (lo_bound is None or t >= lo_bound - 1e-12) and (hi_bound is None or t <= hi_bound + 1e-12)]
    y0, y1 = min(yt[0], y0), max(yt[-1], y1)

    def xy(x: float, y: float) -> tuple[float, float]:
        fx = 0.5 if x1 == x0 else (x - x0) / (x1 - x0)
        return left + fx * plot_w, top + (1 - (y - y0) / (y1 - y0)) * plot_h

    _y_ticks(body, yt, lambda t: xy(x0, t)[1], left, left + plot_w, y_format)
    body.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#9ca3af"/>')
    for i, (name, pts) in enumerate(series):
        color, shape = colors[i % len(colors)], SHAPES[i % len(SHAPES)]
        pts = [p for p in pts if p[1] is not None and math.isfinite(p[1])]
        coords = [xy(x, y) for x, y in pts]
        if len(coords) > 1:
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for (x, y), (cx, cy) in zip(pts, coords):
            body.append(marker(shape, cx, cy, color, 3.5, f"{name}, {x_label} {fmt(x)}: {y_format(y)}"))
    integer_x = all(float(x).is_integer() for x in xs)
    xt = [t for t in nice_ticks(x0, x1, 6, integer=integer_x) if x0 - 1e-9 <= t <= x1 + 1e-9] if x1 > x0 else [x0]
    _x_ticks(body, xt, lambda t: xy(t, y0)[0], height - 20, fmt)
    body.append(_text(left + plot_w / 2, height - 4, x_label, "middle", size=12))
    if y_label:
        body.append(_text(0, top - 14, y_label, size=12, cls="chart-note"))
    return _svg(height, label, body)
