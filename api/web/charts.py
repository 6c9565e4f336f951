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


def _svg(height: float, label: str, body: list[str], width: int = WIDTH) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height:.0f}" role="img" '
                  f'aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet" '
                  f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>{"".join(body)}</svg>')


def _text(x: float, y: float, s: str, anchor: str = "start", cls: str = "", size: int = FONT) -> str:
    c = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{c}>'
            f"{escape(s)}</text>")


def _legend(items: Sequence[tuple[str, str]], y: float, x0: float = 0) -> tuple[list[str], float]:
    """Colour keys from (x0, y), wrapping onto more lines when needed; returns them and the y below them."""
    out, x = [], x0
    for name, color in items:
        w = 16 + 0.58 * FONT * len(name) + 14
        if x > x0 and x + w > WIDTH:
            x, y = x0, y + 20
        out.append(f'<rect x="{x:.1f}" y="{y - 11:.1f}" width="12" height="12" fill="{color}"/>')
        out.append(_text(x + 16, y, name))
        x += w
    return out, y + 12


def bar_chart(items: Sequence[tuple[str, float]], label: str, *, value_format=fmt, max_value: float | None = None,
              reference: float | None = None, reference_label: str = "", color: str = PALETTE[0],
              colors: Sequence[str] | None = None, legend: Sequence[tuple[str, str]] = ()) -> Markup:
    """Horizontal bars, one row per (name, value), the value printed after each bar.

    `reference` draws a dashed vertical line at that value (e.g. 1.0 = uniform sampling weight);
    `legend` names what the `colors` mean.
    """
    items = list(items)
    label_w, value_w = 130, 52
    body, top = _legend(legend, 16) if legend else ([], 0)
    top += 8 + (18 if reference is not None and reference_label else 0)
    plot_w = WIDTH - label_w - value_w
    vmax = max([v for _, v in items] + [reference or 0, max_value or 0, 1e-12])
    scale = plot_w / vmax
    for i, (name, value) in enumerate(items):
        y = top + i * ROW
        bar_color = colors[i % len(colors)] if colors else color
        body.append(f'<g><title>{escape(name)}: {escape(value_format(value))}</title>')
        body.append(_text(label_w - 6, y + 17, _clip(str(name), 16), "end"))
        body.append(f'<rect x="{label_w}" y="{y + 4}" width="{max(value * scale, 0.5):.1f}" height="{ROW - 8}" '
                    f'fill="{bar_color}" rx="2"/>')
        body.append(_text(label_w + max(value, 0) * scale + 4, y + 17, value_format(value)))
        body.append("</g>")
    height = top + len(items) * ROW + 8
    if reference is not None:
        x = label_w + reference * scale
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{height - 4}" stroke="#111827" '
                    f'stroke-dasharray="4 3" stroke-width="1"/>')
        if reference_label:
            body.append(_text(min(x, WIDTH - 50), top - 12, reference_label, "middle", size=12))
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


def histogram(edges: Sequence[float], counts: dict[str, Sequence[int]], label: str, *,
              highlight: Sequence[float] | None = None, height: int = 180) -> Markup:
    """Counts per bin for each series (side by side within a bin); `highlight` shades a [lo, hi] value range."""
    left, bottom = 30, 38
    body, top = _legend([(n, CLASS_COLORS.get(n, PALETTE[i % len(PALETTE)])) for i, n in enumerate(counts)], 16, left)
    plot_w, plot_h = WIDTH - left - 8, height - top - bottom
    nbins = len(edges) - 1
    names = list(counts)
    cmax = max([max(c) for c in counts.values() if len(c)] + [1])
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1.0

    def xpos(v: float) -> float:
        return left + (v - lo) / span * plot_w

    if highlight is not None:
        a, b = max(highlight[0], lo), min(highlight[1], hi)
        if b > a:
            body.append(f'<rect x="{xpos(a):.1f}" y="{top}" width="{xpos(b) - xpos(a):.1f}" height="{plot_h}" '
                        f'fill="#fde68a" opacity="0.7"><title>rare range {fmt(highlight[0])} to '
                        f'{fmt(highlight[1])}</title></rect>')
            body.append(_text((xpos(a) + xpos(b)) / 2, top + 12, "rare", "middle", size=12))
    bin_w = plot_w / max(nbins, 1)
    bar_w = (bin_w - 2) / max(len(names), 1)
    for j, name in enumerate(names):
        color = CLASS_COLORS.get(name, PALETTE[j % len(PALETTE)])
        for i, c in enumerate(counts[name]):
            h = c / cmax * plot_h
            x = left + i * bin_w + 1 + j * bar_w
            body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                        f'fill="{color}"><title>{escape(name)}: {c} in [{fmt(edges[i])}, '
                        f'{fmt(edges[i + 1])})</title></rect>')
    body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#111827"/>')
    body.append(_text(left - 6, top + 10, str(cmax), "end", size=12))
    body.append(_text(left - 6, top + plot_h, "0", "end", size=12))
    body.append(_text(left, height - 18, fmt(lo), "start", size=12))
    body.append(_text(left + plot_w, height - 18, fmt(hi), "end", size=12))
    body.append(_text(left + plot_w / 2, height - 4, "latent value", "middle", size=12))
    return _svg(height, label, body)


def line_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], label: str, *, y_label: str = "",
               x_label: str = "epoch", height: int = 200, y_format=fmt,
               colors: Sequence[str] | None = None,
               y_bounds: tuple[float | None, float | None] = (None, None)) -> Markup:
    """One line (with points) per series of (x, y); axes from the data, never past `y_bounds`.

    The padding around the data stops at the bounds: an accuracy axis ends at 100%, a loss axis at 0.
    """
    left, bottom, right = 64, 38, 16
    colors = list(colors or PALETTE)
    body, top = _legend([(n, colors[i % len(colors)]) for i, (n, _) in enumerate(series)], 16, 0)
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    points = [p for _, pts in series for p in pts if p[1] is not None and math.isfinite(p[1])]
    if not points:
        body.append(_text(WIDTH / 2, height / 2, "no data", "middle"))
        return _svg(height, label, body)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5 * (abs(y0) or 1), y1 + 0.5 * (abs(y1) or 1)
    pad = (y1 - y0) * 0.08
    y0, y1 = y0 - pad, y1 + pad
    lo_bound, hi_bound = y_bounds
    if lo_bound is not None and min(ys) >= lo_bound:
        y0 = max(y0, lo_bound)
    if hi_bound is not None and max(ys) <= hi_bound:
        y1 = min(y1, hi_bound)

    def xy(x: float, y: float) -> tuple[float, float]:
        fx = 0.5 if x1 == x0 else (x - x0) / (x1 - x0)
        return left + fx * plot_w, top + (1 - (y - y0) / (y1 - y0)) * plot_h

    body.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#d1d5db"/>')
    for i, (name, pts) in enumerate(series):
        color = colors[i % len(colors)]
        pts = [p for p in pts if p[1] is not None and math.isfinite(p[1])]
        coords = [xy(x, y) for x, y in pts]
        if len(coords) > 1:
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for (x, y), (cx, cy) in zip(pts, coords):
            body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{color}"><title>{escape(name)}, '
                        f'{escape(x_label)} {fmt(x)}: {escape(y_format(y))}</title></circle>')
    body.append(_text(left - 6, top + 10, y_format(y1), "end", size=12))
    body.append(_text(left - 6, top + plot_h, y_format(y0), "end", size=12))
    body.append(_text(left, height - 18, fmt(x0), "start", size=12))
    if x1 != x0:
        body.append(_text(left + plot_w, height - 18, fmt(x1), "end", size=12))
    body.append(_text(left + plot_w / 2, height - 4, x_label, "middle", size=12))
    if y_label:
        body.append(f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
                    f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(y_label)}</text>')
    return _svg(height, label, body)
