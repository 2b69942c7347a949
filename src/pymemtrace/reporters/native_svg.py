"""The flame graph of native captures (``pymemtrace report OUTDIR --svg``):
memory live at exit (or at the peak) of every process, by native stack, in
the allocation report's flame graph (reporters/flamegraph_svg.py).  A box's
file and line are the frame's source where debug information gives them,
else its library (line 0); a Python frame's are its own."""
from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple

from pymemtrace.analyses.native import ProcessReport
from pymemtrace.reporters import flamegraph_svg


class _Frame(NamedTuple):
    function: str
    file: str
    line: int


class _Site(NamedTuple):
    bytes: int
    blocks: int
    stack: Tuple[_Frame, ...]


def allocation_sites(reports: Sequence[ProcessReport], section: str = "leaked") -> List[_Site]:
    """The sites of ``section`` ("leaked": live at exit, or "peak") of every
    process, in the shape the allocation report's renderers read."""
    return [
        _Site(site.bytes, site.blocks,
              tuple(_Frame(f.function, f.file or f.library or "", f.line or 0) for f in site.frames))
        for report in reports
        for site in getattr(report, section).sites
    ]


def render(reports: Sequence[ProcessReport], section: str = "leaked") -> str:
    """``section``: "leaked" (live at exit) or "peak"."""
    what = "live at exit" if section == "leaked" else "at the peak"
    count = len(reports)
    title = f"Native memory {what} ({count} process{'es' if count != 1 else ''})"
    return flamegraph_svg.render(allocation_sites(reports, section), title=title)
