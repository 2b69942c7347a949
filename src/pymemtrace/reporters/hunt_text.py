"""Hunt result -> the text summary of ``pymemtrace hunt``.

Its first four lines answer the questions in order: the verdict (with its
confidence), how often (frequency), how badly (severity) and the top
culprit; the details follow.  A pure function of the result.
"""

from __future__ import annotations

from pymemtrace.reporters._units import format_bytes

__all__ = ["render", "culprit"]

VERDICT_WORDS = {"leak": "LEAK", "no-leak": "no leak", "inconclusive": "inconclusive"}


def _rate(bytes_per_call: float, seconds_per_call: float) -> str:
    if seconds_per_call <= 0:
        return ""
    calls = 1.0 / seconds_per_call
    return f", {format_bytes(bytes_per_call * calls * 3600)} per hour at {calls:,.0f} calls/s"


def _frame(frame) -> str:
    file, line, function = frame
    where = f"{file}:{line}" if line else file
    return f"{where} in {function}" if function else where


def culprit(result) -> str:
    """The one-line top culprit: a site, else a type, else what has no owner."""
    if result.verdict == "no-leak":
        return "none"
    if result.sites:
        site = result.sites[0]
        return f"{_frame(site.stack[0])} ({format_bytes(site.bytes_per_call)} per call)"
    if result.types:
        t = result.types[0]
        return f"{t.qualname} objects ({t.per_call:+.2f} per call)"
    if result.unowned_bytes_per_call > 0:
        return (f"memory with no owning object "
                f"({format_bytes(result.unowned_bytes_per_call)} per call)")
    if result.refcount:
        row = result.refcount[0]
        return (f"{row['refs_per_call']:g} extra reference(s) per call on {row['repr']} "
                f"({row['type']}): a reference leak in C code")
    return "unknown"


def _frequency(result) -> str:
    f = result.frequency
    if result.verdict != "leak" or f <= 0:
        return "never seen"
    return f"1 call in {max(1, round(1 / f)):,} ({f:.3f} of the calls judged)"


def render(result, top: int = 5) -> str:
    per = result.per_call
    lines = [
        f"pymemtrace hunt: {VERDICT_WORDS.get(result.verdict, result.verdict)} "
        f"(confidence {result.confidence:.1%}) in {result.target or 'the target'}",
    ]
    lines.append(f"  frequency: {_frequency(result)}")
    if result.verdict == "leak":
        size = result.leak_bytes_per_call
        lines.append(f"  severity:  {format_bytes(size)} per call"
                     f"{_rate(size, result.seconds_per_call)}")
    else:
        lines.append(f"  severity:  none ({format_bytes(per['bytes'], signed=True)} per call "
                     "in Python's allocators)")
    lines.append(f"  culprit:   {culprit(result)}")
    lines.append(f"why: {result.reason}")
    judged = result.calls_judged
    extra = ""
    if per.get("malloc_bytes") is not None:
        extra += f", malloc {format_bytes(per['malloc_bytes'], signed=True)}"
    if per.get("native_bytes") is not None:
        extra += f", native {format_bytes(per['native_bytes'], signed=True)}"
    lines.append(
        f"per call (last {judged} of {result.iterations} calls, after {result.warmup} "
        f"warm-up): {format_bytes(per['bytes'], signed=True)} in "
        f"{per['blocks']:+.2f} blocks of Python's allocators, {per['objects']:+.2f} objects, "
        f"RSS {format_bytes(per['rss_bytes'], signed=True)}{extra}"
    )
    if result.unowned_bytes_per_call > 0:
        lines.append(f"with no owning object: {format_bytes(result.unowned_bytes_per_call)} "
                     "per call")
    if result.types:
        lines.append("types that grew (objects per call, bytes per call):")
        for t in result.types[:top]:
            lines.append(f"  {t.per_call:+8.2f}  {format_bytes(t.bytes_per_call, signed=True):>10}"
                         f"  {t.qualname}")
    if result.sites:
        lines.append("where the memory kept was allocated (per call):")
        for site in result.sites[:top]:
            lines.append(f"  {format_bytes(site.bytes_per_call):>10}  {site.blocks_per_call:6.2f} "
                         f"blocks  {_frame(site.stack[0])}")
            for frame in site.stack[1:4]:
                lines.append(f"{'':32}from {_frame(frame)}")
    if result.holders:
        lines.append("held by (referrer chains from a root to the new objects):")
    for holder in result.holders[:top]:
        text = holder.get("text") or " -> ".join(holder.get("chain", []))
        count = holder.get("count")
        lines.append(f"  {holder.get('type', '?')}: {text}"
                     + (f"  ({count} objects)" if count else ""))
    if result.refcount:
        lines.append("reference counts that grew (refs per call):")
        for row in result.refcount[:top]:
            lines.append(f"  {row['refs_per_call']:+8.2f}  {row['type']}  {row['repr']}")
    for note in result.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"
