"""The text of ``pymemtrace tree``: an aligned table, or separated values.

Sizes go through the one byte formatter
(:func:`pymemtrace.reporters._units.format_bytes`): binary units, one
decimal, no thousands separators (a value below 1024 of its unit never
needs one).
"""
from __future__ import annotations

from typing import IO, Any, List, Sequence, Tuple

from pymemtrace.reporters._units import format_bytes
from pymemtrace.snapshots.process_tree import ProcessRow, Sample

# A metric is a probes.process_tree.Metric; a reporter uses only its
# key, header and kind, and imports no probe, not even for a type.
Metric = Any


def format_bytes_delta(delta: int) -> str:
    """``+1.2 MiB``, ``-4.0 KiB``, ``+0 B``: the signed byte format."""
    return format_bytes(delta, signed=True)


def format_value(metric: Metric, value: Any) -> str:
    kind = metric.kind
    if kind == "bytes":
        return format_bytes(value)
    if kind == "count":
        return f"{value:,d}"
    if kind == "seconds":
        return f"{value:,.2f}s"
    if kind == "percent":
        return f"{value:.1f}%"
    return str(value)


def format_delta(metric: Metric, delta: Any) -> str:
    kind = metric.kind
    if kind == "bytes":
        text = format_bytes_delta(delta)
    elif kind == "count":
        text = f"{delta:+,d}"
    elif kind == "seconds":
        text = f"{delta:+,.2f}s"
    elif kind == "percent":
        text = f"{delta:+.1f}%"
    else:
        text = f"was {delta}"
    return f"({text})"


# Widths of typical values and changes of each kind, so that the header is
# rarely printed again because a column had to widen.
_TYPICAL_WIDTHS = {
    "bytes": (len("1023.9 MiB"), len("(+999.9 KiB)")),
    "count": (len("99,999"), len("(+9,999)")),
    "seconds": (len("999.99s"), len("(+9.99s)")),
    "percent": (len("100.0%"), 0),
    "text": (len("sleeping"), len("(was sleeping)")),
}

_NOTES = {"new": "new", "running": "", "exited": "exited",
          "left": "left the tree"}


class TableWriter:
    """Aligned text table, or ``sep``-separated values when ``sep`` is set.

    Table mode: the header is printed before the first sample and again
    whenever a column has to widen; the time (seconds since the monitor
    started) is shown on the root row of each sample.
    """

    def __init__(self, out: IO[str], metrics: Sequence[Metric], sep: str = "") -> None:
        self.out = out
        self.sep = sep
        self.metrics = list(metrics)
        # cmdline is free text: always the last, unaligned column.
        self._aligned = [m for m in self.metrics if m.key != "cmdline"]
        self._cmdline = any(m.key == "cmdline" for m in self.metrics)
        self._widths: List[int] = []
        self._specs: List[Tuple[str, str, str, int]] = []
        self._header_done = False

    # -- table mode ---------------------------------------------------------

    def _columns(self) -> List[Tuple[str, str, str, int]]:
        """(header, alignment, separator before, minimum width) per column."""
        columns = [("time(s)", ">", "", 7), ("pid", "<", "  ", 7),
                   ("name", "<", "  ", 15)]
        for m in self._aligned:
            value_width, delta_width = _TYPICAL_WIDTHS[m.kind]
            columns.append((m.header, ">", "  ", value_width))
            if m.delta:
                # The change sits right after its value: "1.0 MiB (+4.0 KiB)".
                columns.append(("", "<", " ", delta_width))
        columns.append(("note", "<", "  ", 0))
        return columns

    def _cells(self, sample: Sample, row: ProcessRow, first: bool) -> List[str]:
        indent = "  " * row.depth
        cells = [f"{sample.elapsed:.1f}" if first else "", f"{indent}{row.pid}",
                 row.name]
        for m in self._aligned:
            if m.key in row.values:
                cells.append(format_value(m, row.values[m.key]))
                if m.delta:
                    d = row.deltas.get(m.key)
                    cells.append("" if d is None else format_delta(m, d))
            else:
                cells.append("denied" if m.key in row.denied else
                             "n/a" if m.key in row.unsupported else "")
                if m.delta:
                    cells.append("")
        note = _NOTES[row.state]
        if row.state in ("new", "running") and row.denied and not row.values:
            note = "access denied"
        cells.append(note)
        return cells

    def _line(self, cells: List[str]) -> str:
        parts = []
        for cell, width, (_, align, sep, _) in zip(cells, self._widths, self._specs):
            parts.append(sep)
            parts.append(cell.rjust(width) if align == ">" else cell.ljust(width))
        return "".join(parts).rstrip()

    def _table(self, sample: Sample) -> str:
        if not self._widths:
            self._specs = self._columns()
            self._widths = [spec[3] for spec in self._specs]
        header = [spec[0] for spec in self._specs]
        body = [self._cells(sample, row, i == 0) for i, row in enumerate(sample.rows)]
        widths = [max(len(c) for c in column) for column in zip(header, *body)]
        lines = []
        # The last column (the note) is free to grow: it needs no new header.
        widths[-1] = 0
        if not self._header_done or any(w > old for w, old in zip(widths, self._widths)):
            self._widths = [max(w, old) for w, old in zip(widths, self._widths)]
            lines.append(self._line(header))
            self._header_done = True
        for cells, row in zip(body, sample.rows):
            line = self._line(cells)
            if self._cmdline and "cmdline" in row.values:
                # One row per process: control characters are escaped.
                text = row.values["cmdline"].encode("unicode_escape").decode("ascii")
                line = f"{line}  {text}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    # -- separated-values mode ----------------------------------------------

    def _quote(self, value: Any) -> str:
        text = "" if value is None else str(value)
        if self.sep in text or '"' in text or "\n" in text:
            text = '"' + text.replace('"', '""') + '"'
        return text

    def _separated(self, sample: Sample) -> str:
        lines = []
        if not self._header_done:
            names = ["time", "pid", "ppid", "depth", "name", "state"]
            for m in self.metrics:
                names.append(m.key)
                if m.delta:
                    names.append(f"{m.key}_delta")
            lines.append(self.sep.join(names))
            self._header_done = True
        for row in sample.rows:
            cells = [f"{sample.elapsed:.3f}", row.pid, row.ppid, row.depth,
                     row.name, row.state]
            for m in self.metrics:
                if m.key in row.values:
                    cells.append(row.values[m.key])
                else:
                    cells.append("denied" if m.key in row.denied else "")
                if m.delta:
                    cells.append(row.deltas.get(m.key))
            lines.append(self.sep.join(self._quote(c) for c in cells))
        return "\n".join(lines) + "\n"

    def write(self, sample: Sample) -> None:
        self.out.write(self._separated(sample) if self.sep else self._table(sample))
        self.out.flush()
