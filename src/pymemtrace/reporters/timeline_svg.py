"""A small SVG line chart of memory (or live objects) over a log's events.

``timeline_svg(points, title=..., y_label=...)`` takes ``(x, y)`` pairs
and returns a self-contained SVG document: no scripts, no external files.
Pure function, no third-party dependency.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 900, 360
LEFT, RIGHT, TOP, BOTTOM = 90, 20, 40, 50


def _nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten)."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover


def human_bytes(value: float) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.1f} TiB"  # pragma: no cover


def timeline_svg(
    points: Sequence[Tuple[float, float]],
    title: str = "memory over events",
    x_label: str = "event",
    y_label: str = "bytes",
    y_is_bytes: bool = True,
) -> str:
    """SVG text of a step chart through points (sorted by x)."""
    pts: List[Tuple[float, float]] = sorted((float(x), float(y)) for x, y in points)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2:.0f}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    if not pts:
        out.append(f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle">no data</text>')
        out.append("</svg>")
        return "\n".join(out) + "\n"
    x0, x1 = pts[0][0], pts[-1][0]
    ys = [y for _, y in pts]
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - (y - y0) / (y1 - y0) * plot_h

    fmt = human_bytes if y_is_bytes else (lambda v: f"{v:,.0f}")
    # Axes and horizontal grid lines with labels.
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>')
    if y_is_bytes:
        # Round steps in the unit the labels use (1, 2, 5 ... MiB, not 10**6).
        unit = 1
        while unit * 1024 <= (y1 - y0) and unit < 1 << 40:
            unit *= 1024
        step = _nice_step((y1 - y0) / unit) * unit
    else:
        step = _nice_step(y1 - y0)
    tick = (y0 // step + 1) * step
    while tick < y1:
        y = sy(tick)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(tick))}</text>')
        tick += step
    xstep = _nice_step(x1 - x0)
    tick = (x0 // xstep + 1) * xstep
    while tick < x1:
        x = sx(tick)
        out.append(f'<line x1="{x:.1f}" y1="{TOP + plot_h}" x2="{x:.1f}" y2="{TOP + plot_h + 5}" stroke="#888"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{tick:,.0f}</text>')
        tick += xstep
    out.append(
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 10}" text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(
        f'<text x="16" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2:.0f})">{escape(y_label)}</text>'
    )
    # The series as a step line: memory holds its value until the next record.
    path = [f"M{sx(pts[0][0]):.1f},{sy(pts[0][1]):.1f}"]
    for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
        path.append(f"H{sx(xb):.1f}V{sy(yb):.1f}")
    out.append(f'<path d="{"".join(path)}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
