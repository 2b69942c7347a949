"""The flame graph of native captures (``pymemtrace report OUTDIR --svg``):
memory live at exit (or at the peak) of every process, by native stack, in
the allocation report's flame graph (reporters/flamegraph_svg.py).  A box's
file is the frame's library for a native frame (no line yet: 0), its
source file and line for a Python frame."""
from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple

from pymemtrace.analyses.native import ProcessReport
from pymemtrace.reporters import flamegraph_svg


class _Frame(NamedTuple):
    function: str
    file: str
    line: int


class _Site(NamedTuple):
    bytes: int
    stack: Tuple[_Frame, ...]


def render(reports: Sequence[ProcessReport], section: str = "leaked") -> str:
    """``section``: "leaked" (live at exit) or "peak"."""
    sites = [
        _Site(site.bytes, tuple(_Frame(f.function, (f.file if f.python else f.library) or "", f.line or 0) for f in site.frames))
        for report in reports
        for site in getattr(report, section).sites
    ]
    what = "live at exit" if section == "leaked" else "at the peak"
    count = len(reports)
    title = f"Native memory {what} ({count} process{'es' if count != 1 else ''})"
    return flamegraph_svg.render(sites, title=title)
