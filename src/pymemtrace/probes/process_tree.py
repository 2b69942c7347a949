"""The probe of a process tree: each metric read from a psutil.Process.

A metric reads one quantity of one process inside ``oneshot()``; the
tree is listed with ``children(recursive=True)``.  What a reading means
over time (new, exited, changes) is the analysis's business
(:mod:`pymemtrace.analyses.process_tree`).
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import psutil

from pymemtrace.errors import PymemtraceError

# psutil's errors, for the analysis to catch without importing psutil.
NoSuchProcess = psutil.NoSuchProcess
AccessDenied = psutil.AccessDenied
ProcessError = psutil.Error


class _Unsupported(Exception):
    """The metric does not exist on this platform."""


Unsupported = _Unsupported


def _page_faults(proc: psutil.Process) -> int:
    """Minor + major page faults since the process started."""
    info = proc.memory_info()
    if hasattr(info, "pfaults"):  # macOS
        return int(info.pfaults)
    if sys.platform.startswith("linux"):
        # psutil does not expose them on Linux: fields 10 (minflt) and 12
        # (majflt) of /proc/PID/stat, counted after the ")" closing comm.
        try:
            with open(f"/proc/{proc.pid}/stat", "rb") as f:
                data = f.read()
        except (FileNotFoundError, ProcessLookupError):
            raise psutil.NoSuchProcess(proc.pid) from None
        except PermissionError:
            raise psutil.AccessDenied(proc.pid) from None
        fields = data[data.rindex(b")") + 2:].split()
        return int(fields[7]) + int(fields[9])
    raise _Unsupported


def _ctx_switches(proc: psutil.Process) -> int:
    ctx = proc.num_ctx_switches()
    return ctx.voluntary + ctx.involuntary


def _net_connections(proc: psutil.Process) -> int:
    # psutil >= 6 names it net_connections(); older versions connections().
    method = getattr(proc, "net_connections", None) or proc.connections
    return len(method(kind="all"))


def _cmdline(proc: psutil.Process) -> str:
    return " ".join(proc.cmdline())


@dataclasses.dataclass(frozen=True)
class Metric:
    """One measured quantity of a process.

    ``kind`` decides the formatting: ``bytes``, ``count``, ``seconds``,
    ``percent`` or ``text``.  ``delta`` says whether the change since the
    previous sample is reported (for ``text`` the change is the old value).
    """

    key: str
    header: str
    kind: str
    read: Callable[[psutil.Process], Any]
    delta: bool = True


METRICS: Dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("rss", "rss", "bytes", lambda p: p.memory_info().rss),
        Metric("uss", "uss", "bytes", lambda p: p.memory_full_info().uss),
        Metric("cpu_percent", "cpu", "percent", lambda p: p.cpu_percent(), False),
        Metric("page_faults", "faults", "count", _page_faults),
        Metric("cpu_user", "user", "seconds", lambda p: p.cpu_times().user),
        Metric("cpu_system", "sys", "seconds", lambda p: p.cpu_times().system),
        Metric("ctx_switches", "ctx", "count", _ctx_switches),
        Metric("threads", "threads", "count", lambda p: p.num_threads()),
        Metric("status", "status", "text", lambda p: p.status()),
        Metric("open_files", "files", "count", lambda p: len(p.open_files())),
        Metric("net_connections", "net", "count", _net_connections),
        Metric("cmdline", "cmdline", "text", _cmdline, False),
    )
}


@dataclasses.dataclass
class Reading:
    """One process read once: what the system gave, and what it refused."""

    name: Optional[str]
    ppid: Optional[int]
    values: Dict[str, Any]
    denied: List[str]
    unsupported: List[str]


def open_root(pid: int) -> psutil.Process:
    """The root of the tree; PymemtraceError when there is no such process."""
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        raise PymemtraceError(f"no process with pid {pid}") from None
    except psutil.AccessDenied:
        raise PymemtraceError(f"access denied to pid {pid}") from None


def is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def create_time(proc: psutil.Process) -> Optional[float]:
    try:
        return proc.create_time()
    except psutil.Error:
        return None


def still_running(proc: psutil.Process) -> bool:
    """Running and not a zombie (the pid was not reused)."""
    try:
        return proc.is_running() and not is_zombie(proc)
    except psutil.Error:
        return False


def descendants(proc: psutil.Process) -> List[psutil.Process]:
    """Every process below ``proc``; none when it is gone or denied."""
    try:
        return proc.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def terminate(procs: Sequence[psutil.Process]) -> None:
    """SIGTERM to each process still running (pid reuse is checked)."""
    for proc in procs:
        try:
            if proc.is_running():
                proc.terminate()
        except psutil.Error:
            pass


def read_process(proc: psutil.Process, metrics: Sequence[Metric],
                 known: Tuple[Optional[str], Optional[int]] = (None, None)) -> Reading:
    """Read ``metrics`` of ``proc`` in one ``oneshot()``.

    Raises psutil.NoSuchProcess (ZombieProcess for a zombie) when it has
    exited; the exception's ``name`` and ``ppid`` hold what was read
    before.  A metric the system refuses is listed in ``denied``, one the
    platform lacks in ``unsupported``.  ``known`` (name, ppid) stands in
    for what cannot be read.
    """
    name, ppid = known
    values: Dict[str, Any] = {}
    denied: List[str] = []
    unsupported: List[str] = []
    try:
        with proc.oneshot():
            try:
                name = proc.name()
            except psutil.AccessDenied:
                pass
            try:
                ppid = proc.ppid()
            except psutil.AccessDenied:
                pass
            if is_zombie(proc):
                raise psutil.ZombieProcess(proc.pid, name, ppid)
            for metric in metrics:
                try:
                    values[metric.key] = metric.read(proc)
                except psutil.AccessDenied:
                    denied.append(metric.key)
                except _Unsupported:
                    unsupported.append(metric.key)
    except psutil.NoSuchProcess as exc:
        if name is not None and not getattr(exc, "name", None):
            exc.name = name
        if ppid is not None and getattr(exc, "ppid", None) is None:
            exc.ppid = ppid
        raise
    return Reading(name, ppid, values, denied, unsupported)
