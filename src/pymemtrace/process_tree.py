"""Watch the memory of a process and of every process it starts.

``python -m pymemtrace.process_tree -p PID`` (or ``pymemtrace tree -p PID``,
or ``pymemtrace tree -- CMD ARGS`` to run a command and watch it) prints, at
each interval, one row per process of the tree rooted at PID, indented by
depth, each metric with its change since that process's previous sample.
Processes that start are marked ``new``; processes that end are shown once
as ``exited``; metrics the system refuses to give are shown as ``denied``.
Monitoring ends when the root process exits (or after ``--count`` samples or
``--duration`` seconds, or at Ctrl-C).

``--json PATH`` also writes JSON Lines: one object per line, each line
written with a single ``write()`` call, so the file stays valid whatever
moment the monitor is killed at (even by ``kill -9``, which leaves it
under its temporary name ``.PATH.XXXXXXXX.tmp``; a monitor that ends
normally, on Ctrl-C or on SIGTERM renames it to PATH).  See
``docs/process_tree.md`` for the schema.

This module is the seed-named front end: it re-exports the names it had
before the layers were split out (probe: ``probes/process_tree.py``;
snapshots: ``snapshots/process_tree.py``; analysis:
``analyses/process_tree.py``; table: ``reporters/process_tree_text.py``;
command line and loop: ``cli/tree.py``).

The monitor's own cost is kept low: one :class:`psutil.Process` per process
kept across samples (so ``cpu_percent`` compares against the previous
sample) and every process read inside ``oneshot()``.
"""
from __future__ import annotations

import sys

from pymemtrace._child import exit_status as _returncode_status
from pymemtrace.analyses.process_tree import _Tracked, changes
from pymemtrace.cli.tree import (
    ProcessTreeMonitor,
    _ALL_FLAGS,
    _FLAG_METRICS,
    EXAMPLE,
    FORWARD_GRACE,
    MAX_COUNT,
    MAX_INTERVAL,
    MIN_INTERVAL,
    PROG,
    STOP_GRACE,
    Config,
    add_arguments,
    build_parser,
    config_from_args,
    main,
    run,
    select_metrics,
)
from pymemtrace.probes.process_tree import (
    METRICS,
    Metric,
    _cmdline,
    _ctx_switches,
    _net_connections,
    _page_faults,
    _Unsupported,
    is_zombie as _is_zombie,
)
from pymemtrace.probes.process_tree import create_time as _create_time
from pymemtrace.reporters.process_tree_text import (
    TableWriter,
    format_bytes_delta,
    format_delta,
    format_value,
)
from pymemtrace.snapshots.process_tree import (
    SCHEMA,
    STATES,
    JsonLinesWriter,
    ProcessRow,
    Sample,
    _clean,
    _finite,
    _iso,
)

__all__ = [
    "SCHEMA",
    "METRICS",
    "Metric",
    "ProcessRow",
    "Sample",
    "ProcessTreeMonitor",
    "TableWriter",
    "JsonLinesWriter",
    "add_arguments",
    "run",
    "main",
]

# Names this module had before the split, still importable from here.
_REEXPORTED = (_ALL_FLAGS, _FLAG_METRICS, EXAMPLE, FORWARD_GRACE, MAX_COUNT, MAX_INTERVAL,
               MIN_INTERVAL, PROG, STOP_GRACE, STATES, Config, _Tracked, _Unsupported,
               _clean, _cmdline, _create_time, _ctx_switches, _finite, _is_zombie, _iso,
               _net_connections, _page_faults, _returncode_status, build_parser, changes,
               config_from_args, format_bytes_delta, format_delta, format_value,
               select_metrics)


if __name__ == "__main__":
    sys.exit(main())
