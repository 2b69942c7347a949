"""Self-contained SVG charts of memory (or any value) over time or events.

One drawing core (``_draw``: frame, title, axes with round ticks, grid,
human-readable sizes, the series as a polyline, labelled markers, the data
as metadata) serves both public charts:

* ``line_chart(points, title=..., x_label=..., y_label=..., markers=...)``:
  a line through (x, y) samples in the given order, e.g. RSS over time
  (``pymemtrace.process``); a standalone file (XML declaration).
* ``timeline_svg(points, title=..., y_label=..., y_is_bytes=True)``: a step
  line through a log's (event, value) records, sorted by event: a value
  holds until the next record (``pymemtrace.reporters.log_report``); the
  document starts at ``<svg``.

Pure Python, no dependency, no scripts or external files: the output opens
in any browser.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape, quoteattr

from pymemtrace.reporters._units import BYTE_UNITS, format_bytes  # noqa: F401

Point = Tuple[float, float]

#: The old name of the one byte formatter (``1536`` -> ``'1.5 KiB'``), kept
#: for the modules that import it; new code calls ``format_bytes``.
human_bytes = format_bytes


def nice_ticks(lo: float, hi: float, count: int = 6) -> List[float]:
    """About ``count`` round tick values (1, 2 or 5 x 10^k apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("tick range must be finite")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        step = factor * magnitude
        if step >= raw:
            break
    first = math.floor(lo / step) * step
    last = math.ceil(hi / step) * step
    n = int(round((last - first) / step))
    return [round(first + i * step, 12) for i in range(n + 1)]


def byte_ticks(lo: float, hi: float, count: int = 6) -> List[float]:
    """Like nice_ticks, but round in the binary unit the labels use
    (1, 2, 5 ... MiB apart, not 10**6 bytes)."""
    unit = 1
    while unit * 1024 <= max(abs(lo), abs(hi)) and unit < 1 << 40:
        unit *= 1024
    return [t * unit for t in nice_ticks(lo / unit, hi / unit, count)]


def _format_tick(value: float, step: float) -> str:
    if step >= 1 and float(value).is_integer():
        return f"{value:,.0f}"
    decimals = max(0, -int(math.floor(math.log10(step)))) if step > 0 else 2
    return f"{value:,.{decimals}f}"


def downsample(points: Sequence[Point], max_points: int) -> List[Point]:
    """At most about ``max_points`` points keeping each bucket's min and max y."""
    if len(points) <= max_points or max_points < 4:
        return list(points)
    buckets = max_points // 2
    size = len(points) / buckets
    out: List[Point] = []
    for b in range(buckets):
        chunk = points[int(b * size): int((b + 1) * size)]
        if not chunk:
            continue
        low = min(chunk, key=lambda p: p[1])
        high = max(chunk, key=lambda p: p[1])
        out.extend(sorted({low, high}, key=lambda p: p[0]))
    if out[-1] != points[-1]:
        out.append(points[-1])
    return out


def _finite(points: Sequence[Point]) -> List[Point]:
    out = []
    for x, y in points:
        x, y = float(x), float(y)
        if math.isfinite(x) and math.isfinite(y):
            out.append((x, y))
    return out


def _steps(points: Sequence[Point]) -> List[Point]:
    """The corners of a step line: each y holds until the next x."""
    out: List[Point] = list(points[:1])
    for (_, ya), (xb, yb) in zip(points, points[1:]):
        out.append((xb, ya))
        out.append((xb, yb))
    return out


def _draw(
    data: List[Point],
    *,
    title: str,
    x_label: str,
    y_label: str,
    markers: Sequence[Tuple[float, str]] = (),
    width: int,
    height: int,
    subtitle: Optional[str] = None,
    y_is_bytes: bool = False,
    step: bool = False,
    xml_declaration: bool = True,
) -> str:
    """The one drawing core: SVG text of ``data`` (finite points, already
    reduced to what is shown) with axes, ticks, labels and markers."""
    left = 90 if y_is_bytes else 80
    right, top, bottom = 30, 50 if subtitle is None else 66, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    parts: List[str] = []
    add = parts.append
    if xml_declaration:
        add('<?xml version="1.0" encoding="UTF-8"?>')
    add(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
    )
    add(f"<title>{escape(title)}</title>")
    add(f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>')
    add(f'<text x="{width / 2:.1f}" y="24" text-anchor="middle" font-size="16" '
        f'font-weight="bold">{escape(title)}</text>')
    if subtitle:
        add(f'<text x="{width / 2:.1f}" y="44" text-anchor="middle" fill="#555">'
            f"{escape(subtitle)}</text>")
    if not data:
        add(f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">'
            "no data</text>")
        add("</svg>")
        return "\n".join(parts) + "\n"

    markers = sorted((m for m in markers if math.isfinite(m[0])), key=lambda m: m[0])
    xs = [p[0] for p in data] + [m[0] for m in markers]
    ys = [p[1] for p in data]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = (byte_ticks if y_is_bytes else nice_ticks)(min(ys), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    def step_of(ticks: List[float]) -> float:
        return ticks[1] - ticks[0] if len(ticks) > 1 else 1.0

    x_step, y_step = step_of(x_ticks), step_of(y_ticks)
    y_text: Callable[[float], str] = (format_bytes if y_is_bytes
                                      else lambda t: _format_tick(t, y_step))
    # grid, axes, ticks and tick labels
    add('<g class="grid" stroke="#e3e3e3" stroke-width="1">')
    for t in x_ticks:
        add(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{top + plot_h}"/>')
    for t in y_ticks:
        add(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + plot_w}" y2="{py(t):.1f}"/>')
    add("</g>")
    add('<g class="axes" stroke="black" stroke-width="1">')
    add(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>')
    add(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>')
    for t in x_ticks:
        add(f'<line x1="{px(t):.1f}" y1="{top + plot_h}" x2="{px(t):.1f}" y2="{top + plot_h + 5}"/>')
    for t in y_ticks:
        add(f'<line x1="{left - 5}" y1="{py(t):.1f}" x2="{left}" y2="{py(t):.1f}"/>')
    add("</g>")
    add('<g class="tick-labels" fill="black">')
    for t in x_ticks:
        add(f'<text x="{px(t):.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
            f"{_format_tick(t, x_step)}</text>")
    for t in y_ticks:
        add(f'<text x="{left - 8}" y="{py(t) + 4:.1f}" text-anchor="end">'
            f"{escape(y_text(t))}</text>")
    add("</g>")
    add(f'<text class="x-label" x="{left + plot_w / 2:.1f}" y="{height - 14}" '
        f'text-anchor="middle">{escape(x_label)}</text>')
    add(f'<text class="y-label" x="18" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 18 {top + plot_h / 2:.1f})">{escape(y_label)}</text>')

    # markers: a dashed vertical line and the label, rotated (labels of
    # close markers are moved right so they do not overlap; a halo keeps
    # them legible where they cross the series)
    if markers:
        add('<g class="markers">')
        last_text_x = -math.inf
        for x, text in markers:
            mx = px(x)
            tx = max(mx + 4, last_text_x + 13)
            last_text_x = tx
            add(f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + plot_h}" '
                'stroke="#c0392b" stroke-width="1" stroke-dasharray="4 3"/>')
            add(f'<text x="{tx:.1f}" y="{top + 4}" fill="#c0392b" font-size="11" '
                'stroke="#ffffff" stroke-width="3" paint-order="stroke" '
                f'transform="rotate(90 {tx:.1f} {top + 4})" data-x={quoteattr(repr(x))}>'
                f"{escape(text)}</text>")
        add("</g>")

    # the series
    corners = _steps(data) if step else data
    coords = " ".join(f"{px(x):.2f},{py(y):.2f}" for x, y in corners)
    add(f'<polyline class="series" fill="none" stroke="#1f77b4" stroke-width="1.5" '
        f'points="{coords}"/>')
    # the data itself (not the step corners), so the chart can be checked or re-plotted
    values = " ".join(f"{x:.6g},{y:.6g}" for x, y in data)
    add(f'<metadata id="data" data-x-label={quoteattr(x_label)} '
        f'data-y-label={quoteattr(y_label)}>{values}</metadata>')
    add("</svg>")
    return "\n".join(parts) + "\n"


def line_chart(
    points: Sequence[Point],
    *,
    title: str,
    x_label: str,
    y_label: str,
    markers: Sequence[Tuple[float, str]] = (),
    width: int = 900,
    height: int = 480,
    max_points: int = 5000,
    subtitle: Optional[str] = None,
    y_is_bytes: bool = False,
) -> str:
    """SVG text of a line chart of ``points`` (x, y), with labelled vertical markers."""
    return _draw(
        downsample(_finite(points), max_points),
        title=title, x_label=x_label, y_label=y_label, markers=markers,
        width=width, height=height, subtitle=subtitle, y_is_bytes=y_is_bytes,
    )


def timeline_svg(
    points: Sequence[Point],
    title: str = "memory over events",
    x_label: str = "event",
    y_label: str = "bytes",
    y_is_bytes: bool = True,
    markers: Sequence[Tuple[float, str]] = (),
    max_points: int = 5000,
) -> str:
    """SVG text of a step chart through points (sorted by x)."""
    return _draw(
        downsample(sorted(_finite(points)), max_points),
        title=title, x_label=x_label, y_label=y_label, markers=markers,
        width=900, height=360, y_is_bytes=y_is_bytes, step=True,
        xml_declaration=False,
    )
