"""Measure a tool's cost as a ratio against the bare workload, in one run.

Tools are declared in ``benchmarks/bench_<area>.py`` modules as a list
``TOOLS`` of :class:`Tool` (a context manager wrapped around a workload) or
:class:`Pair` (two callables compared head to head, for probes such as
``rss()`` against the seed's fopen/fscanf read).  Runs alternate between
bare and tooled so drift on a noisy machine hits both; the ratio reported
is median(tooled) / median(bare) over at least 5 rounds.

Workload length (a harness-wide rule): every tool runs a workload at the
same scale, chosen once per workload and process so that the bare run
takes at least ``MIN_BARE_SECONDS`` (0.1 s).  At scale 1 some workloads
run for 1.5 ms, where a tool's fixed cost per run (opening a log file,
starting a thread) and timer noise would swamp its cost per event.  The
scale is shown beside the workload name (``call_heavy x64``).
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, List, Optional, Sequence

from benchmarks.workloads import WORKLOADS

ALL_WORKLOADS = tuple(WORKLOADS)
MIN_BARE_SECONDS = 0.1
_SCALES: Dict[str, int] = {}


def scale_for(workload: str, min_seconds: float = MIN_BARE_SECONDS) -> int:
    """The scale at which the bare workload takes at least min_seconds.

    Measured once per workload and process (the fastest of three timed
    runs, so a noisy neighbour does not make it smaller), then reused by
    every tool so their rows compare the same work.
    """
    if workload not in _SCALES:
        run = WORKLOADS[workload]
        run(1)  # warm caches and lazy imports
        fastest = min(_timed(lambda: run(1)) for _ in range(3))
        _SCALES[workload] = max(1, math.ceil(min_seconds / max(fastest, 1e-6)))
    return _SCALES[workload]


@dataclass
class Tool:
    """A tool measured around whole workloads.

    ``wrap`` returns a fresh context manager for one run; ``target`` is the
    ratio the issue asks for (None: report only); ``after`` is called after
    each tooled run, outside the timing (e.g. to delete the run's log: at
    the scales the harness picks, a log of every event is ~1 GB).
    """

    name: str
    wrap: Callable[[], ContextManager]
    workloads: Sequence[str] = ALL_WORKLOADS
    target: Optional[float] = None
    available: Callable[[], Optional[str]] = lambda: None  # reason if not
    # Workload scale factor; None: the harness-wide rule (scale_for).  A
    # tool that acts on a period (a sampler) may pin a larger one so runs
    # are much longer than its period.
    scale: Optional[int] = None
    after: Callable[[], None] = lambda: None


@dataclass
class Pair:
    """Two callables doing the same job; ratio = candidate / baseline."""

    name: str
    baseline: Callable[[], object]
    candidate: Callable[[], object]
    calls: int = 20_000
    target: Optional[float] = None
    available: Callable[[], Optional[str]] = lambda: None


@dataclass
class Result:
    tool: str
    workload: str
    bare: float
    tooled: float
    target: Optional[float]
    note: str = ""
    rounds: int = 0
    samples: List[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.tooled / self.bare if self.bare else float("nan")

    @property
    def verdict(self) -> str:
        if self.note:
            return "skipped"
        if self.target is None:
            return ""
        return "ok" if self.ratio <= self.target else "OVER"


def _timed(func: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def measure_tool(tool: Tool, workload: str, rounds: int = 7, scale: Optional[int] = None) -> Result:
    """One tool on one workload; scale None: the harness-wide rule (scale_for)."""
    run = WORKLOADS[workload]
    reason = tool.available()
    if reason:
        return Result(tool.name, workload, 0.0, 0.0, tool.target, note=reason)
    if scale is None:
        scale = scale_for(workload)

    def tooled():
        with tool.wrap():
            run(scale)

    run(scale)  # warm caches and lazy imports
    tooled()
    tool.after()
    bare_times, tooled_times = [], []
    for i in range(rounds):
        # Alternate the order too, so neither side always runs second.
        if i % 2:
            tooled_times.append(_timed(tooled))
            tool.after()
            bare_times.append(_timed(lambda: run(scale)))
        else:
            bare_times.append(_timed(lambda: run(scale)))
            tooled_times.append(_timed(tooled))
            tool.after()
    return Result(
        tool.name,
        f"{workload} x{scale}",
        statistics.median(bare_times),
        statistics.median(tooled_times),
        tool.target,
        rounds=rounds,
        samples=[t / b for t, b in zip(tooled_times, bare_times)],
    )


def measure_pair(pair: Pair, rounds: int = 7) -> Result:
    reason = pair.available()
    if reason:
        return Result(pair.name, "-", 0.0, 0.0, pair.target, note=reason)

    def loop(func):
        def run():
            for _ in range(pair.calls):
                func()

        return run

    base, cand = loop(pair.baseline), loop(pair.candidate)
    base()
    cand()
    base_times, cand_times = [], []
    for i in range(rounds):
        if i % 2:
            cand_times.append(_timed(cand))
            base_times.append(_timed(base))
        else:
            base_times.append(_timed(base))
            cand_times.append(_timed(cand))
    return Result(
        pair.name,
        f"{pair.calls} calls",
        statistics.median(base_times),
        statistics.median(cand_times),
        pair.target,
        rounds=rounds,
    )


def format_table(results: List[Result]) -> str:
    header = ("tool", "workload", "bare s", "tooled s", "ratio", "target", "")
    rows = [header]
    for r in results:
        if r.note:
            rows.append((r.tool, r.workload, "-", "-", "-", "-", "skipped: " + r.note))
            continue
        rows.append(
            (
                r.tool,
                r.workload,
                f"{r.bare:.4f}",
                f"{r.tooled:.4f}",
                f"{r.ratio:.3f}",
                f"{r.target:g}" if r.target is not None else "",
                r.verdict,
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def run_all(tools: List[object], rounds: int = 7, only: Optional[str] = None) -> List[Result]:
    results = []
    for tool in tools:
        if only and only not in tool.name:
            continue
        if isinstance(tool, Pair):
            results.append(measure_pair(tool, rounds))
        else:
            for workload in tool.workloads:
                results.append(measure_tool(tool, workload, rounds, tool.scale))
    return results


def discover() -> Dict[str, list]:
    """TOOLS of every benchmarks/bench_*.py module, by module name."""
    import importlib
    import pkgutil

    import benchmarks

    found = {}
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda i: i.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"benchmarks.{info.name}")
            found[info.name] = list(getattr(module, "TOOLS", []))
    return found
