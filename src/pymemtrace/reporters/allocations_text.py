"""Allocation snapshot -> a human-readable report (top sites, human sizes)."""

from __future__ import annotations

from pymemtrace.analyses.allocations import group_sites
from pymemtrace.reporters._units import format_bytes


def _where(site) -> str:
    if not site.stack:
        return "<no Python frame>"
    f = site.stack[0]
    if f.line:
        return (
            f"{f.file}:{f.line} ({f.function})" if f.function else f"{f.file}:{f.line}"
        )
    return f"{f.file} ({f.function})" if f.function else f.file


def _frame(f) -> str:
    return f"{f.file}:{f.line} ({f.function})" if f.function else f"{f.file}:{f.line}"


def _table(title: str, total: int, sites, top: int, key: str = "line") -> list[str]:
    lines = [f"{title}: {format_bytes(total)} in {len(sites)} site(s)"]
    for i, site in enumerate(sites[:top], 1):
        head = f"  {i:>3}. {format_bytes(site.bytes):>10} {site.blocks:>9} blocks  "
        lines.append(head + _where(site))
        if key == "stack":
            # The whole stack, innermost first, each caller under its callee.
            lines.extend(" " * len(head) + _frame(f) for f in site.stack[1:])
    if len(sites) > top:
        rest = sum(s.bytes for s in sites[top:])
        lines.append(
            f"       {format_bytes(rest):>10} in {len(sites) - top} more site(s)"
        )
    return lines


def render(
    snapshot, top: int = 10, key: str = "line", live_title: str = "live now"
) -> str:
    return render_groups(
        snapshot,
        group_sites(snapshot.sites, key),
        group_sites(snapshot.peak_sites, key),
        top=top,
        key=key,
        live_title=live_title,
    )


def render_groups(
    header, live, peak, top: int = 10, key: str = "line", live_title: str = "live now"
) -> str:
    """The report of sites already grouped by ``key`` (``live``, ``peak``);
    ``header`` has the snapshot's scalar fields (mode, depth, sample_bytes,
    bytes, peak_bytes, stats) as attributes."""
    mode = header.mode
    if mode == "sampled":
        mode += f", one sample per {format_bytes(header.sample_bytes)} (estimates)"
    lines = [f"allocations ({mode}, stacks of {header.depth} frames, by {key})"]
    lines += _table(live_title, header.bytes, live, top, key)
    lines += _table("live at peak", header.peak_bytes, peak, top, key)
    dropped = {k: v for k, v in header.stats.items() if k.startswith("dropped") and v}
    if dropped:
        lines.append(
            "warning: tables full, not recorded: "
            + ", ".join(f"{k.split('_', 1)[1]} {v}" for k, v in dropped.items())
        )
    memory = header.stats.get("memory")
    if memory:
        lines.append(f"tracker memory: {format_bytes(memory)}")
    outside = outside_note(header)
    if outside:
        lines.append(outside)
    return "\n".join(lines) + "\n"


#: RSS growth beyond Python's allocators below this is not worth a word
#: (the interpreter's own caches, a thread's stack, the loader).
OUTSIDE_FLOOR = 8 << 20


def outside_note(header) -> str | None:
    """One line when the RSS grew (``stats`` rss_start, rss_end, written by
    ``pymemtrace run``) well beyond what Python's allocators hold live and
    what the tracker itself takes: the rest was taken below them."""
    start, end = header.stats.get("rss_start"), header.stats.get("rss_end")
    if start is None or end is None:
        return None
    grown = end - start
    outside = grown - header.bytes - header.stats.get("memory", 0)
    if outside < max(OUTSIDE_FLOOR, grown // 4):
        return None
    return (f"RSS grew {format_bytes(grown)} during the run; Python's allocators hold "
            f"{format_bytes(header.bytes)} of it live, so {format_bytes(outside)} is outside them "
            "(malloc or mmap in C code, or free pages an allocator keeps): "
            "`pymemtrace native -- python SCRIPT` shows where")
