"""gnuplot files for process records: a ``.dat`` table and a ``.plt`` script.

``gnuplot NAME.plt`` (run in the directory of the files) draws
``NAME.gnuplot.svg``: RSS (MiB, left axis) and CPU use (%, right axis)
against the time since the process started, with the labels marked.
Nothing here needs gnuplot installed.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence

from pymemtrace import _output

COLUMNS = ("t(s)", "RSS(bytes)", "RSS(MiB)", "user(s)", "system(s)",
           "mean_CPU%", "inst_CPU%", "timestamp", "pid", "label")

PLT_TEMPLATE = """\
# gnuplot script written by pymemtrace: gnuplot {name}.plt
set grid
set title "{title}" noenhanced font ",14"
set xlabel "Time since process start (s)"
set ylabel "RSS (MiB)"
set y2label "CPU (%)"
set y2tics
set ytics nomirror
set key left top
set datafile separator "\\t"
set datafile missing "NaN"
set terminal svg size 1000,600 dynamic
set output "{name}.gnuplot.svg"
{labels}
plot "{name}.dat" using 1:3 axes x1y1 title "RSS (MiB)" with lines lt 1 lw 2, \\
     "{name}.dat" using 1:6 axes x1y2 title "mean CPU (%)" with lines lt 2 lw 1, \\
     "{name}.dat" using 1:7 axes x1y2 title "instantaneous CPU (%)" with lines lt 3 lw 1
"""


def _gnuplot_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def process_rows(records: Sequence[Dict[str, Any]]) -> List[List[str]]:
    """Rows of the .dat table, one per record (header not included)."""
    rows = []
    prev_t = prev_cpu = None
    for record in records:
        t = float(record["elapsed_time"])
        rss = int(record["memory_info"]["rss"])
        cpu = record.get("cpu_times") or {}
        user = float(cpu.get("user", 0.0))
        system = float(cpu.get("system", 0.0))
        total = user + system
        mean = 100.0 * total / t if t > 0 else float("nan")
        if prev_t is not None and t > prev_t:
            inst = 100.0 * (total - prev_cpu) / (t - prev_t)
        else:
            inst = float("nan")
        label = str(record.get("label", "")).replace("\t", " ").replace("\n", " ")
        rows.append([
            f"{t:.4f}", str(rss), f"{rss / 2**20:.3f}", f"{user:.4f}", f"{system:.4f}",
            f"{mean:.2f}" if mean == mean else "NaN",
            f"{inst:.2f}" if inst == inst else "NaN",
            str(record.get("timestamp", "")).replace(" ", "T"),
            str(record["pid"]),
            "# " + label if label else "",
        ])
        prev_t, prev_cpu = t, total
    return rows


def write_process_dat(path: str, records: Sequence[Dict[str, Any]]) -> None:
    with _output.atomic_open(path) as stream:
        stream.write("#" + "\t".join(COLUMNS) + "\n")
        for row in process_rows(records):
            stream.write("\t".join(row) + "\n")


def write_process_plt(path: str, name: str, records: Sequence[Dict[str, Any]]) -> None:
    lines = []
    for record in records:
        label = record.get("label")
        if label is None:
            continue
        t = float(record["elapsed_time"])
        lines.append(f"set arrow from first {t:.4f}, graph 0 to first {t:.4f}, graph 1 "
                     "nohead lt 0 lw 1")
        lines.append(f'set label "{_gnuplot_string(str(label))}" at first {t:.4f}, graph 0.98 '
                     "rotate by 90 right noenhanced front font \",9\"")
    text = PLT_TEMPLATE.format(
        name=_gnuplot_string(os.path.basename(name)),
        title=_gnuplot_string(f"Memory and CPU of {name}"),
        labels="\n".join(lines),
    )
    with _output.atomic_open(path) as stream:
        stream.write(text)
