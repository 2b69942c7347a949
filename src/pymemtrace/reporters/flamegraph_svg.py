"""Sites -> a flame graph of live memory, as one standalone SVG file.

The root (all memory) is at the bottom; each frame sits on its caller and is
as wide as the bytes allocated below it.  Siblings are ordered heaviest
first, so the biggest stack is always on the left.  Hovering a box shows its
function, file, line, bytes and share (an SVG ``<title>``, no script: the
file opens offline in any browser or image viewer).

Same input as the collapsed-stacks export (``collapsed.py``): the sites of
an allocation snapshot, innermost frame first.
"""

from __future__ import annotations

import zlib
from xml.sax.saxutils import escape, quoteattr

from pymemtrace.reporters._units import format_bytes

FONT_SIZE = 12
CHAR_WIDTH = 7.0  # average advance of the 12 px sans-serif font
FRAME_HEIGHT = 18
MARGIN = 10
HEADER = 44
MIN_WIDTH = 0.3  # narrower boxes are not drawn (their callers are)


class _Node:
    __slots__ = ("label", "file", "line", "bytes", "children")

    def __init__(self, label: str, file: str = "", line: int = 0):
        self.label = label
        self.file = file
        self.line = line
        self.bytes = 0
        self.children: dict[tuple, _Node] = {}


def _tree(sites) -> _Node:
    root = _Node("all")
    for site in sites:
        if site.bytes <= 0:
            continue
        root.bytes += site.bytes
        node = root
        keys = [(f.function or "?", f.file, f.line) for f in reversed(site.stack)]
        for key in keys or [("<no Python frame>", "", 0)]:
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = _Node(*key)
            child.bytes += site.bytes
            node = child
    return root


def _depth(node: _Node) -> int:
    return 1 + max((_depth(c) for c in node.children.values()), default=0)


def _colour(file: str, label: str) -> str:
    # Stable across runs: the same file keeps its hue, functions vary the
    # lightness a little so neighbours stay apart.
    hue = 10 + zlib.crc32(file.encode("utf-8", "replace")) % 45
    light = 55 + zlib.crc32(label.encode("utf-8", "replace")) % 15
    return f"hsl({hue},85%,{light}%)"


def _fit(text: str, width: float) -> str:
    room = int((width - 6) / CHAR_WIDTH)
    if room < 3:
        return ""
    return text if len(text) <= room else text[: room - 2] + ".."


def render(
    sites,
    title: str = "Live memory by stack",
    width: int = 1200,
    *,
    data_attrs: bool = False,
) -> str:
    """The flame graph of ``sites`` as SVG text.

    ``data_attrs``: give each box's ``<g>`` its full label and file as
    ``data-name`` / ``data-file`` (the HTML report zooms and searches on
    them; the plain SVG leaves them out to stay small).
    """
    root = _tree(sites)
    levels = _depth(root) if root.bytes else 1
    height = HEADER + levels * FRAME_HEIGHT + 2 * MARGIN
    inner = width - 2 * MARGIN
    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="Verdana, DejaVu Sans, sans-serif" font-size="{FONT_SIZE}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fdfdf6"/>',
        f'<text x="{width / 2:.1f}" y="{MARGIN + 14}" text-anchor="middle" '
        f'font-size="16">{escape(title)}</text>',
    ]
    if not root.bytes:
        out.append(
            f'<text x="{width / 2:.1f}" y="{MARGIN + 34}" text-anchor="middle">'
            "no memory live</text>"
        )
        out.append("</svg>")
        return "\n".join(out) + "\n"
    out.append(
        f'<text x="{MARGIN}" y="{MARGIN + 34}">{escape(format_bytes(root.bytes))} '
        "in all; hover a box for its site, width is bytes</text>"
    )
    scale = inner / root.bytes
    bottom = height - MARGIN

    def draw(node: _Node, x: float, level: int) -> None:
        w = node.bytes * scale
        if w < MIN_WIDTH:
            return
        y = bottom - (level + 1) * FRAME_HEIGHT
        share = 100.0 * node.bytes / root.bytes
        if level == 0:
            tip = f"all: {format_bytes(node.bytes)} (100%)"
            fill = "hsl(0,0%,80%)"
        else:
            tip = (
                f"{node.label} ({node.file}:{node.line}): "
                f"{format_bytes(node.bytes)}, {share:.1f}%"
            )
            fill = _colour(node.file, node.label)
        name = f"{node.label}:{node.line}" if node.file else node.label
        attrs = (
            f" data-name={quoteattr(name)} data-file={quoteattr(node.file)}"
            if data_attrs
            else ""
        )
        out.append(
            f'<g{attrs}><title>{escape(tip)}</title><rect x="{x:.2f}" y="{y}" '
            f'width="{w:.2f}" height="{FRAME_HEIGHT - 1}" fill={quoteattr(fill)} '
            'rx="2"/>'
        )
        # The line tells apart the boxes of one function called from
        # several lines of its caller.
        text = _fit(name, w)
        if text:
            out.append(
                f'<text x="{x + 3:.2f}" y="{y + FRAME_HEIGHT - 5}">{escape(text)}</text>'
            )
        out.append("</g>")
        cx = x
        for child in sorted(node.children.values(), key=lambda c: (-c.bytes, c.label)):
            draw(child, cx, level + 1)
            cx += child.bytes * scale

    draw(root, float(MARGIN), 0)
    out.append("</svg>")
    return "\n".join(out) + "\n"
