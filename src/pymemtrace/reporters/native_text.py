"""The text of ``pymemtrace report OUTDIR`` for native captures: per process,
memory live at exit (the leaks) and at the peak, the largest sites first,
each with its innermost frames; with ``functions``, allocations and frees
by allocating function, and with ``sizes``, a histogram of allocation sizes
in power-of-two buckets (as DTrace's ``quantize()`` prints them)."""
from __future__ import annotations

import os
import shlex
from typing import List, Sequence

from pymemtrace.analyses.native import FunctionCounts, ProcessReport, Section, SizeBucket
from pymemtrace.reporters._units import format_bytes

FRAMES_SHOWN = 6
BAR_WIDTH = 40


def _frame_text(frame) -> str:
    where = f" ({os.path.basename(frame.library)})" if frame.library else ""
    line = f" {_source_path(frame)}:{frame.line}" if frame.file else ""
    return f"{frame.function}{line}{where}"


def _source_path(frame) -> str:
    """A C frame's source file as its last folder and name (the library is
    named beside it; the JSON keeps the whole path, which is the build's,
    often a temporary folder); a Python frame's file whole."""
    if frame.python or not frame.library:
        return frame.file
    parts = frame.file.replace(os.sep, "/").rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else frame.file


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


def _functions(lines: List[str], rows: Sequence[FunctionCounts], mode: str, top: int) -> None:
    if mode == "count":
        lines.append("  allocations by function: none in counting mode (no stacks)")
        return
    if not rows:
        lines.append("  allocations by function: none recorded")
        return
    estimate = " (estimates from the samples)" if mode == "sampled" else ""
    lines.append(f"  allocations by function{estimate}; frees: of the blocks that function allocated")
    lines.append(f"    {'mallocs':>10} {'frees':>10} {'allocated':>11} {'freed':>11}  function")
    for row in rows[:top]:
        where = f" ({os.path.basename(row.library)})" if row.library else ""
        lines.append(f"    {row.mallocs:>10,} {row.frees:>10,} {format_bytes(row.bytes_allocated):>11} "
                     f"{format_bytes(row.bytes_freed):>11}  {row.function}{where}")
    if len(rows) > top:
        lines.append(f"    ... {len(rows) - top} more functions")


def _sizes(lines: List[str], buckets: Sequence[SizeBucket]) -> None:
    if not buckets:
        lines.append("  allocation sizes: none recorded")
        return
    total = sum(b.count for b in buckets) or 1
    lines.append("  allocation sizes (bytes; every allocation call, in every mode):")
    lines.append(f"    {'value':>20}  {' Distribution '.center(BAR_WIDTH, '-')} count")
    for bucket in buckets:
        bar = "@" * round(BAR_WIDTH * bucket.count / total)
        lines.append(f"    {bucket.bucket_low:>20,} |{bar:<{BAR_WIDTH}} {bucket.count:,}")


def render(reports: Sequence[ProcessReport], top: int = 10, functions: bool = False, sizes: bool = False) -> str:
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
        if functions:
            _functions(lines, report.functions, report.mode, top)
        if sizes:
            _sizes(lines, report.sizes)
        if report.drops:
            lines.append(f"  warning: {report.drops:,} allocations not recorded (table full or out of memory)")
        lines.append("")
    return "\n".join(lines).rstrip("\n")
