"""A process tree followed over time: states, changes, tree order.

:class:`TreeMonitor` asks the probe it is given (the front ends give
:mod:`pymemtrace.probes.process_tree`) for the tree and each process's
metrics, and turns the readings into snapshot rows
(:mod:`pymemtrace.snapshots.process_tree`): which processes are new,
which exited or left the tree, how each metric changed since that
process's previous sample, and the depth-first order of the tree.  It
keeps one psutil.Process per live process (so ``cpu_percent`` compares
against the previous sample) and nothing per sample.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pymemtrace.snapshots.process_tree import ProcessRow, Sample

# The probe is handed in (see TreeMonitor): an analysis imports none.
Metric = Any


class _Tracked:
    """A process followed across samples (one psutil.Process kept alive)."""

    __slots__ = ("proc", "ppid", "name", "depth", "previous")

    def __init__(self, proc) -> None:
        self.proc = proc
        self.ppid: Optional[int] = None
        self.name = "?"
        self.depth = 0
        # metric key -> value at the previous sample (None before the first)
        self.previous: Optional[Dict[str, Any]] = None


def changes(metrics: Sequence[Metric], values: Dict[str, Any],
            previous: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Change of each metric since ``previous`` (a text metric: its old value)."""
    deltas: Dict[str, Any] = {}
    if previous is None:
        return deltas
    for metric in metrics:
        key = metric.key
        if not metric.delta or key not in values or key not in previous:
            continue
        old, value = previous[key], values[key]
        if metric.kind == "text":
            if value != old:
                deltas[key] = old
        else:
            deltas[key] = value - old
    return deltas


class TreeMonitor:
    """Samples a process and all its descendants.

    Raises :class:`PymemtraceError` ("no process with pid N") when ``pid``
    does not exist.  ``sample()`` never raises psutil's NoSuchProcess,
    ZombieProcess or AccessDenied: they become ``exited`` rows and
    ``denied`` metrics.  ``probe`` is the module (or object) that reads
    processes: ``open_root``, ``read_process``, ``descendants``,
    ``create_time``, ``is_zombie``, ``still_running`` and ``NoSuchProcess``.
    """

    def __init__(self, pid: int, metrics: Sequence[Metric], probe: Any) -> None:
        self._probe = probe
        root = probe.open_root(pid)
        self.pid = pid
        self.metrics = list(metrics)
        self._root = _Tracked(root)
        # pid -> _Tracked for the descendants followed at the last sample.
        self._children: Dict[int, _Tracked] = {}
        # (pid, create_time) of zombies already reported as exited, so that
        # they are not reported again while their parent has not reaped them.
        self._dead: set = set()
        self._t0 = time.monotonic()
        self._index = 0
        #: True once the root process has exited (reported in a sample).
        self.root_exited = False

    # -- one process --------------------------------------------------------

    def _read(self, tracked: _Tracked, state: str) -> ProcessRow:
        """Read one process; NoSuchProcess/ZombieProcess propagate."""
        try:
            reading = self._probe.read_process(tracked.proc, self.metrics,
                                         (tracked.name, tracked.ppid))
        except self._probe.NoSuchProcess as exc:
            if getattr(exc, "name", None):
                tracked.name = exc.name
            if getattr(exc, "ppid", None) is not None:
                tracked.ppid = exc.ppid
            raise
        tracked.name = reading.name if reading.name is not None else tracked.name
        tracked.ppid = reading.ppid
        deltas = changes(self.metrics, reading.values, tracked.previous)
        tracked.previous = reading.values
        return ProcessRow(tracked.proc.pid, tracked.ppid, tracked.depth, tracked.name,
                          state, reading.values, deltas, reading.denied, reading.unsupported)

    def _gone(self, tracked: _Tracked, state: str = "exited") -> ProcessRow:
        depth = 0 if tracked is self._root else max(tracked.depth, 1)
        return ProcessRow(tracked.proc.pid, tracked.ppid, depth, tracked.name, state)

    def descendants(self) -> List[Any]:
        """The processes of the tree below the root at the last sample."""
        return [tracked.proc for tracked in self._children.values()]

    # -- the tree -----------------------------------------------------------

    def sample(self) -> Sample:
        """Read the whole tree once."""
        now = time.time()
        elapsed = time.monotonic() - self._t0
        index = self._index
        self._index += 1
        root = self._root
        try:
            root_row = self._read(root, "new" if index == 0 else "running")
        except self._probe.NoSuchProcess:  # includes ZombieProcess
            root_row = self._gone(root)
            self.root_exited = True

        gone: List[ProcessRow] = []
        current: Dict[int, _Tracked] = {}
        live = set()
        for proc in ([] if self.root_exited else self._probe.descendants(root.proc)):
            tracked = self._children.get(proc.pid)
            if tracked is not None and tracked.proc != proc:
                # The pid was reused: the process we followed has exited.
                gone.append(self._gone(tracked))
                tracked = None
            ident = (proc.pid, self._probe.create_time(proc))
            if tracked is None:
                if ident in self._dead:
                    live.add(ident)
                    continue
                tracked = _Tracked(proc)
            current[proc.pid] = tracked
        self._dead &= live

        # Depths from the parent links of the previous reading; refined
        # after reading (ppid is read inside oneshot with the metrics).
        rows: Dict[int, ProcessRow] = {}
        for pid, tracked in current.items():
            state = "running" if pid in self._children else "new"
            try:
                rows[pid] = self._read(tracked, state)
            except self._probe.NoSuchProcess:
                gone.append(self._gone(tracked))
                if self._probe.is_zombie(tracked.proc):
                    self._dead.add((pid, self._probe.create_time(tracked.proc)))
        for pid, tracked in self._children.items():
            if pid not in current:
                left = self._probe.still_running(tracked.proc)
                gone.append(self._gone(tracked, "left" if left else "exited"))
        self._children = {pid: current[pid] for pid in rows}
        ordered = self._tree_order(root_row, rows)
        ordered.extend(gone)
        return Sample(index, now, elapsed, root.proc.pid, ordered)

    def _tree_order(self, root_row: ProcessRow,
                    rows: Dict[int, ProcessRow]) -> List[ProcessRow]:
        """Depth-first order from the root, children by pid."""
        kids: Dict[int, List[int]] = {}
        for pid, row in rows.items():
            parent = row.ppid if row.ppid in rows else root_row.pid
            kids.setdefault(parent, []).append(pid)
        ordered = [root_row]
        root_row.depth = self._root.depth = 0
        stack: List[Tuple[int, int]] = [
            (pid, 1) for pid in sorted(kids.get(root_row.pid, ()), reverse=True)
        ]
        while stack:
            pid, depth = stack.pop()
            row = rows[pid]
            row.depth = self._children[pid].depth = depth
            ordered.append(row)
            for child in sorted(kids.get(pid, ()), reverse=True):
                stack.append((child, depth + 1))
        return ordered
