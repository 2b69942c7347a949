"""Allocation snapshot -> a human-readable report (top sites, human sizes)."""

from __future__ import annotations


def human_size(n: float) -> str:
    """1536 -> '1.5 KiB' (sign kept)."""
    sign = "-" if n < 0 else ""
    n = abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            if unit == "B":
                return f"{sign}{int(n)} B"
            return f"{sign}{n:.1f} {unit}"
        n /= 1024
    return f"{sign}{n:.1f} TiB"  # pragma: no cover


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
    lines = [f"{title}: {human_size(total)} in {len(sites)} site(s)"]
    for i, site in enumerate(sites[:top], 1):
        head = f"  {i:>3}. {human_size(site.bytes):>10} {site.blocks:>9} blocks  "
        lines.append(head + _where(site))
        if key == "stack":
            # The whole stack, innermost first, each caller under its callee.
            lines.extend(" " * len(head) + _frame(f) for f in site.stack[1:])
    if len(sites) > top:
        rest = sum(s.bytes for s in sites[top:])
        lines.append(
            f"       {human_size(rest):>10} in {len(sites) - top} more site(s)"
        )
    return lines


def render(
    snapshot, top: int = 10, key: str = "line", live_title: str = "live now"
) -> str:
    mode = snapshot.mode
    if mode == "sampled":
        mode += f", one sample per {human_size(snapshot.sample_bytes)} (estimates)"
    lines = [f"allocations ({mode}, stacks of {snapshot.depth} frames, by {key})"]
    lines += _table(live_title, snapshot.bytes, snapshot.group_by(key), top, key)
    lines += _table(
        "live at peak", snapshot.peak_bytes, snapshot.group_by(key, peak=True), top, key
    )
    dropped = {k: v for k, v in snapshot.stats.items() if k.startswith("dropped") and v}
    if dropped:
        lines.append(
            "warning: tables full, not recorded: "
            + ", ".join(f"{k.split('_', 1)[1]} {v}" for k, v in dropped.items())
        )
    memory = snapshot.stats.get("memory")
    if memory:
        lines.append(f"tracker memory: {human_size(memory)}")
    return "\n".join(lines) + "\n"
