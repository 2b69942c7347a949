"""``pymemtrace objects`` as text: what each call leaves behind, who holds
it, the reference-count leaks, and the gc experiment's sentence."""

from __future__ import annotations

from pymemtrace.analyses.object_growth import also_cyclic, outside_allocators
from pymemtrace.reporters._units import format_bytes
from pymemtrace.snapshots.object_growth import CYCLIC, RETAINED, GcExperiment, ObjectGrowthReport


def gc_sentence(verdict: str, modes) -> str:
    """One sentence saying what the gc experiment found."""
    by_name = {m.mode: m for m in modes}
    collect, disabled = by_name["collect"], by_name["disabled"]
    if verdict == RETAINED:
        text = (f"retained: {format_bytes(collect.bytes_per_call)} and "
                f"{collect.objects_per_call:.3g} objects per call stay even with "
                "gc.collect() after every call; something keeps them alive")
        if also_cyclic(modes):
            text += (f"; besides, {format_bytes(disabled.collected_bytes_per_call)} per call "
                     "is cyclic garbage the gc frees late")
        return text
    if verdict == CYCLIC:
        return (f"cyclic garbage, collected late: {format_bytes(disabled.collected_bytes_per_call)}"
                f" and {disabled.collected_objects_per_call:.3g} objects per call pile up while "
                "the gc is off, and gc.collect() frees them; reference cycles make memory "
                "peak between collections (break them, or use weakref), but nothing leaks")
    return "no growth: nothing stays per call, with the gc on, off, or collecting after every call"


def gc_lines(exp: GcExperiment) -> list:
    lines = [f"gc experiment ({exp.iterations} calls per mode): {exp.text}"]
    width = max(len(m.mode) for m in exp.modes)
    for m in exp.modes:
        lines.append(
            f"  {m.mode:<{width}}  {format_bytes(m.bytes_per_call, signed=True)}/call"
            f"  {m.objects_per_call:+.3g} objects/call"
            f"  then gc.collect() freed {format_bytes(m.collected_bytes_per_call)}/call")
    return lines


def _per_call(value: float) -> str:
    return f"{value:.3g}" if value < 10 else f"{value:,.0f}"


def report_lines(report: ObjectGrowthReport, top: int = 10) -> list:
    """The text report, its first line the answer."""
    mem = report.memory
    beyond = outside_allocators(mem)
    grew = bool(report.types or report.refcount or mem.unowned_bytes_per_call or beyond)
    head = (f"pymemtrace objects {report.target}: {report.iterations} calls "
            f"after {report.warmup} warm-up calls")
    if not grew:
        lines = [head, "no growth: no type, reference count or buffer grew steadily per call"]
    else:
        total = sum(t.per_call for t in report.types)
        lines = [head, f"per call: {_per_call(total)} objects, "
                       f"{format_bytes(mem.heap_bytes_per_call, signed=True)} in Python's "
                       f"allocators, {format_bytes(mem.rss_bytes_per_call, signed=True)} RSS"]
    if report.types:
        shown = report.types[:top]
        names = [t.type for t in shown]
        width = max(max(len(n) for n in names), len("type"))
        lines.append("")
        lines.append("types that grew in both halves of the run:")
        lines.append(f"  {'type':<{width}}  {'per call':>10}  {'bytes/call':>12}")
        for name, t in zip(names, shown):
            lines.append(f"  {name:<{width}}  {_per_call(t.per_call):>10}  "
                         f"{format_bytes(t.bytes_per_call):>12}")
        if len(report.types) > top:
            lines.append(f"  ... and {len(report.types) - top} more types")
    if report.holders:
        lines.append("")
        lines.append("who holds them:")
        for h in report.holders:
            count = getattr(h, "count", None)
            suffix = f"  ({count} objects)" if count else ""
            lines.append(f"  {h.type}: {h.text}{suffix}")
    if report.refcount:
        lines.append("")
        lines.append("reference-count leaks:")
        for leak in report.refcount:
            lines.append(f"  {leak.refs_per_call:.3g} extra references per call on "
                         f"object {leak.repr} of type {leak.type}")
    if mem.unowned_bytes_per_call:
        lines.append("")
        lines.append(f"memory no object owns: {format_bytes(mem.unowned_bytes_per_call)} per call "
                     "stays in Python's allocators beyond the objects that grew "
                     "(a buffer from PyMem_Malloc or PyMem_RawMalloc that C code keeps)")
    if beyond:
        lines.append("")
        lines.append(f"RSS grew {format_bytes(beyond)} per call beyond Python's allocators: "
                     "memory C code took with malloc or mmap (`pymemtrace native` shows where)")
    if report.gc is not None:
        lines.append("")
        lines.extend(gc_lines(report.gc))
    return lines
