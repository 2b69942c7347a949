"""Text of ``pymemtrace.process``: the per-pid summary table, the summary
lines of ``pymemtrace process`` and its live lines."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from pymemtrace.analyses.process import ProcessSummary
from pymemtrace.reporters._units import format_bytes


def _labels_cell(labels: List[Tuple[float, str]], width: int = 40,
                 count: Optional[int] = None) -> str:
    if not labels:
        return "-"
    text = ", ".join(label for _, label in labels)
    if len(text) > width:
        text = text[: width - 3] + "..."
    return f"{max(count or 0, len(labels))}: {text}"


def format_summary(summaries: Dict[int, ProcessSummary], skipped: int = 0) -> str:
    """The per-pid table printed by ``python -m pymemtrace.process LOG``."""
    header = ("pid", "samples", "first RSS", "last RSS", "min RSS", "max RSS",
              "growth", "rate", "duration", "labels")
    rows = [header]
    for s in summaries.values():
        rows.append(
            (
                str(s.pid),
                str(s.samples),
                format_bytes(s.first_rss),
                format_bytes(s.last_rss),
                format_bytes(s.min_rss),
                format_bytes(s.max_rss),
                format_bytes(s.growth, signed=True),
                format_bytes(s.rate, signed=True) + "/s",
                f"{s.duration:.2f} s",
                _labels_cell(s.labels, count=s.label_count),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i in (0, len(row) - 1) else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if not summaries:
        lines.append("(no records)")
    if skipped:
        lines.append(f"skipped {skipped} unreadable line{'s' if skipped != 1 else ''}")
    return "\n".join(lines)


def summary_lines(summaries: Dict[int, ProcessSummary]) -> str:
    """The table, then one sentence per pid (``pymemtrace process``'s end)."""
    lines = [format_summary(summaries)]
    for s in summaries.values():
        lines.append(
            f"pid {s.pid}: RSS {format_bytes(s.first_rss)} -> "
            f"{format_bytes(s.last_rss)}, "
            f"growth {format_bytes(s.growth, signed=True)} in {s.duration:.2f} s "
            f"({format_bytes(s.rate, signed=True)}/s), "
            f"peak {format_bytes(s.max_rss)}"
        )
    return "\n".join(lines)


def live_line(t: float, rss: int, delta: int, event: str, label: Optional[str]) -> str:
    """One live line: time since the first record, RSS, change, event and label."""
    tag = {"START": "start", "STOP": "stop"}.get(event, "")
    text = f"  [{label}]" if label is not None else ""
    return (f"{t:9.2f} s  RSS {format_bytes(rss):>10}  "
            f"{format_bytes(delta, signed=True):>11}  {tag}{text}").rstrip()
