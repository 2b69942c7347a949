"""Charts of ``pymemtrace.process`` logs: the SVG chart of RSS over time,
and the gnuplot and SVG files per pid of ``python -m pymemtrace.process LOG OUTDIR``."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Tuple

from pymemtrace import _output
from pymemtrace.analyses.process import Series
from pymemtrace.reporters import gnuplot, svg_chart
from pymemtrace.snapshots.process_log import KEY_ELAPSED_TIME, KEY_LABEL, KEY_MEMORY_INFO, KEY_PROCESS_ID

X_LABEL = "time since process start (s)"
Y_LABEL = "RSS (MiB)"


def chart(points: Sequence[Tuple[float, float]], markers: Sequence[Tuple[float, str]],
          title: str) -> str:
    """An SVG chart of (elapsed s, RSS bytes) points, labels marked."""
    return svg_chart.line_chart(
        [(t, rss / 2**20) for t, rss in points],
        title=title, x_label=X_LABEL, y_label=Y_LABEL, markers=markers,
    )


def rss_chart(records: Sequence[Dict[str, Any]], title: str = "RSS over time") -> str:
    """An SVG chart of RSS (MiB) against elapsed time, labels marked."""
    points = [(float(r[KEY_ELAPSED_TIME]), r[KEY_MEMORY_INFO]["rss"]) for r in records]
    markers = [(float(r[KEY_ELAPSED_TIME]), str(r[KEY_LABEL]))
               for r in records if r.get(KEY_LABEL) is not None]
    return chart(points, markers, title)


def series_chart(series: Series, labels: Sequence[Tuple[float, str]], title: str) -> str:
    """The chart of a bounded :class:`~pymemtrace.analyses.process.Series`."""
    return chart(series.points(), labels, title)


def write_plots(records: Sequence[Dict[str, Any]], log_path: str, outdir: str) -> List[str]:
    """gnuplot .dat/.plt and an SVG chart per pid in ``outdir``; returns the paths."""
    os.makedirs(outdir, exist_ok=True)
    by_pid: Dict[int, List[Dict[str, Any]]] = {}
    for record in records:
        by_pid.setdefault(record[KEY_PROCESS_ID], []).append(record)
    written = []
    base = os.path.basename(log_path) or "process"
    for pid, recs in by_pid.items():
        name = f"{base}_{pid}"
        dat = os.path.join(outdir, name + ".dat")
        plt = os.path.join(outdir, name + ".plt")
        svg = os.path.join(outdir, name + ".svg")
        gnuplot.write_process_dat(dat, recs)
        gnuplot.write_process_plt(plt, name, recs)
        _output.write_file(svg, rss_chart(recs, title=f"RSS of pid {pid} ({base})"))
        written += [dat, plt, svg]
    return written
