"""Native captures -> the one-file HTML report (``pymemtrace report OUTDIR
--html OUT.html``): the allocation report's page (reporters/allocations_html.py),
fed with the native sites of every process, live at exit and at the peak."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence

from pymemtrace.analyses.native import ProcessReport
from pymemtrace.reporters import allocations_html
from pymemtrace.reporters.native_svg import allocation_sites


@dataclass
class _Header:
    """The fields of an allocation snapshot the page shows."""

    sites: List
    peak_sites: List
    bytes: int
    peak_bytes: int
    mode: str
    depth: int
    sample_bytes: int
    stats: dict = field(default_factory=dict)


def render(reports: Sequence[ProcessReport], title: str) -> str:
    sites = allocation_sites(reports, "leaked")
    peak_sites = allocation_sites(reports, "peak")
    modes = sorted({r.mode for r in reports}) or ["exact"]
    depth = max((len(s.stack) for s in sites + peak_sites), default=0)
    header = _Header(sites, peak_sites, sum(r.leaked.bytes for r in reports), sum(r.peak.bytes for r in reports),
                     "/".join(modes), depth, max((r.sample_bytes or 0 for r in reports), default=0))
    return allocations_html.render(header, title=title, live_label="live at exit")
