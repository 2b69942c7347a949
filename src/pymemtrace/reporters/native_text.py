"""The text of ``pymemtrace report OUTDIR`` for native captures: per process,
memory live at exit (the leaks) and at the peak, the largest sites first,
each with its innermost frames."""
from __future__ import annotations

import os
import shlex
from typing import List, Sequence

from pymemtrace.analyses.native import ProcessReport, Section
from pymemtrace.reporters._units import format_bytes

FRAMES_SHOWN = 6


def _frame_text(frame) -> str:
    where = f" ({os.path.basename(frame.library)})" if frame.library else ""
    line = f" {frame.file}:{frame.line}" if frame.file else ""
    return f"{frame.function}{line}{where}"


def _section(lines: List[str], title: str, section: Section, top: int) -> None:
    lines.append(f"  {title}: {format_bytes(section.bytes)} in {section.blocks:,} blocks, {len(section.sites):,} sites")
    for site in section.sites[:top]:
        lines.append(f"    {format_bytes(site.bytes):>10} {site.blocks:>9,} blocks")
        for frame in site.frames[:FRAMES_SHOWN]:
            lines.append(f"        {_frame_text(frame)}")
        if len(site.frames) > FRAMES_SHOWN:
            lines.append(f"        ... {len(site.frames) - FRAMES_SHOWN} more frames")
    if len(section.sites) > top:
        lines.append(f"    ... {len(section.sites) - top} more sites")


def render(reports: Sequence[ProcessReport], top: int = 10) -> str:
    lines: List[str] = []
    for report in reports:
        command = shlex.join(report.command) if report.command else "?"
        if len(command) > 200:
            command = command[:197] + "..."
        lines.append(f"process {report.pid} (parent {report.ppid}): {command}")
        mode = report.mode if report.mode != "sampled" else f"sampled every {format_bytes(report.sample_bytes)}"
        state = "exited" if report.complete else "no exit snapshot (killed or exec): its last snapshot"
        lines.append(f"  mode {mode}; {state}; {report.allocations:,} allocations, {report.frees:,} frees")
        if report.mode == "count":
            lines.append(f"  {format_bytes(report.bytes_allocated)} allocated (counting mode: no sites)")
        else:
            _section(lines, "live at exit (leaked)" if report.complete else "live at the last snapshot", report.leaked, top)
            _section(lines, "at the peak", report.peak, top)
        if report.drops:
            lines.append(f"  warning: {report.drops:,} allocations not recorded (table full or out of memory)")
        lines.append("")
    return "\n".join(lines).rstrip("\n")
