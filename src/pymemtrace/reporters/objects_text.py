"""Type growth as text, the way objgraph's ``show_growth`` prints it."""

from __future__ import annotations

from pymemtrace.reporters._units import format_bytes


def growth_lines(rows) -> list:
    """One line per :class:`~pymemtrace.analyses.objects.Growth` row::

        Handler     1000     +1000   +56.6 KiB

    The bare type name, or the qualified one where two rows share it.
    """
    if not rows:
        return []
    seen: dict = {}
    for row in rows:
        seen[row.name] = seen.get(row.name, 0) + 1
    names = [row.qualname if seen[row.name] > 1 else row.name for row in rows]
    width = max(len(name) for name in names)
    count_width = max(len(str(row.count)) for row in rows)
    delta_width = max(len(f"{row.delta:+d}") for row in rows)
    return [
        f"{name:<{width}} {row.count:>{count_width}} {row.delta:>+{delta_width}d}"
        f"  {format_bytes(row.bytes_delta, signed=True)}"
        for name, row in zip(names, rows)
    ]
