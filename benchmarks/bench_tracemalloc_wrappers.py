"""Cost of the seed-compatible wrappers trace_malloc and debug_malloc_stats.

Two kinds of figures:

* ``Tool`` rows: one ``TraceMalloc()`` / ``DiffSysDebugMallocStats()``
  around a whole benchmark workload (0.1-0.3 s).  For TraceMalloc this is
  tracemalloc's own tracing cost plus two snapshots; for
  DiffSysDebugMallocStats it is two reports (a fixed cost, no tracing).
* ``Pair`` rows: the seed's own timing examples (ex_trace_malloc.py): a tiny
  block creating 16 strings of 256 B, 1 KiB or 1 MiB, run bare and inside a
  fresh wrapper each time.  Here the fixed cost of starting tracemalloc and
  taking two snapshots (or two reports) dominates, which is where the seed's
  "900x small objects, 6x large" comes from.

No targets: both wrap the standard library (tracemalloc,
sys._debugmallocstats); the figures are for the documentation.
"""

import contextlib
import tracemalloc

from benchmarks.harness import Pair, Tool
from pymemtrace.debug_malloc_stats import DiffSysDebugMallocStats
from pymemtrace.trace_malloc import TraceMalloc

COUNT = 16


def _strings(size):
    def run():
        kept = []
        for _ in range(COUNT):
            kept.append(" " * size)
        return kept

    return run


def _inside(wrapper, func):
    def run():
        with wrapper():
            return func()

    return run


@contextlib.contextmanager
def _bare_tracemalloc(nframes):
    """The reference: tracemalloc itself, started and stopped, no snapshots."""
    tracemalloc.start(nframes)
    try:
        yield
    finally:
        tracemalloc.stop()


TOOLS = [
    Tool(name="tracemalloc.start(1) (reference)", wrap=lambda: _bare_tracemalloc(1)),
    Tool(name="TraceMalloc('lineno')", wrap=lambda: TraceMalloc("lineno")),
    Tool(name="tracemalloc.start(16) (reference)", wrap=lambda: _bare_tracemalloc(16)),
    Tool(
        name="TraceMalloc('traceback', 16 frames)",
        wrap=lambda: TraceMalloc("traceback", nframes=16),
    ),
    Tool(name="DiffSysDebugMallocStats()", wrap=DiffSysDebugMallocStats),
]

for _label, _size, _calls in (
    ("256 B", 256, 500),
    ("1 KiB", 1024, 500),
    ("1 MiB", 1024**2, 100),
):
    TOOLS.append(
        Pair(
            name=f"TraceMalloc('lineno') around 16 x {_label} strings",
            baseline=_strings(_size),
            candidate=_inside(lambda: TraceMalloc("lineno"), _strings(_size)),
            calls=_calls,
        )
    )
    TOOLS.append(
        Pair(
            name=f"DiffSysDebugMallocStats() around 16 x {_label} strings",
            baseline=_strings(_size),
            candidate=_inside(DiffSysDebugMallocStats, _strings(_size)),
            calls=_calls,
        )
    )
