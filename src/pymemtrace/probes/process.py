"""The probe of one process: its memory and CPU times, now.

This process is read by the C core (``_native.process_sample()``, and the
``_native.Sampler`` thread that never holds the GIL); any other process
through psutil.  A reading is a plain tuple, :data:`Reading`:
``(monotonic s, wall-clock s, memory_info dict, cpu_times dict)``.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, Tuple

import psutil

try:  # the C core; without it every process is read through psutil
    from pymemtrace import _native
except ImportError:  # pragma: no cover - the extension is always built here
    _native = None

#: (monotonic s, wall s, memory_info, cpu_times)
Reading = Tuple[float, float, Dict[str, Any], Dict[str, Any]]

#: True when this process can be sampled by the C thread.
HAVE_NATIVE = _native is not None


def open_process(pid: int) -> psutil.Process:
    """psutil.Process(pid), its errors turned into clear built-in ones."""
    try:
        proc = psutil.Process(pid)
        proc.create_time()
        return proc
    except psutil.NoSuchProcess as exc:
        raise ProcessLookupError(f"no process with pid {pid}") from exc
    except psutil.AccessDenied as exc:
        raise PermissionError(f"access denied to process {pid}") from exc


def this_process() -> psutil.Process:
    return psutil.Process()


def create_time(proc: psutil.Process) -> float:
    """Start time of the process, seconds since the epoch.

    On Linux psutil adds the start tick to the boot time, which /proc/stat
    gives in whole seconds: elapsed times would be off by up to a second.
    The age from CLOCK_BOOTTIME is exact to a clock tick.
    """
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{proc.pid}/stat", "rb") as stream:
                data = stream.read()
            start_ticks = int(data[data.rindex(b")") + 2:].split()[19])
            age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
            return time.time() - age
        except (OSError, ValueError, IndexError, AttributeError):
            pass
    return proc.create_time()


def wait_for_exec(pid: int, timeout: float = 1.0) -> None:
    """Wait until a child started by ``subprocess.Popen`` has its program
    loaded.  Popen returns when the exec has begun (the close-on-exec pipe
    closes), while the kernel may still be mapping the new program: a
    sample then reads an empty address space (RSS of one page).  On Linux
    the code range of /proc/PID/stat is set once the program is mapped;
    elsewhere, or when the child ends, this returns at once."""
    if not sys.platform.startswith("linux"):
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stream:
                data = stream.read()
            fields = data[data.rindex(b")") + 2:].split()
            if fields[0] in (b"Z", b"X") or int(fields[23]) != 0:  # state, startcode
                return
        except (OSError, ValueError, IndexError):
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.0005)


def from_native(sample: Tuple[float, float, int, float, float]) -> Reading:
    """A reading from one ``_native`` sample tuple (mono, wall, rss, user, system)."""
    mono, wall, rss, user, system = sample
    return mono, wall, {"rss": rss}, {"user": round(user, 6), "system": round(system, 6)}


def native_reading() -> Reading:
    """This process, now, through the C core."""
    return from_native(_native.process_sample())


def native_sampler(interval: float, capacity: int):
    """A C sampler thread of this process (not started): ``_native.Sampler``."""
    return _native.Sampler(interval, capacity=capacity)


def psutil_reading(proc: psutil.Process) -> Reading:
    """``proc`` now, through psutil; ProcessLookupError once it has exited
    (an unreaped zombie counts as exited), PermissionError when denied."""
    try:
        with proc.oneshot():
            memory = proc.memory_info()._asdict()
            cpu = proc.cpu_times()._asdict()
            # An exited child not yet waited for reads as all zeros.
            if not memory.get("rss") and proc.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(proc.pid)
    except psutil.NoSuchProcess as exc:
        raise ProcessLookupError(f"process {proc.pid} has exited") from exc
    except psutil.AccessDenied as exc:
        raise PermissionError(f"access denied to process {proc.pid}") from exc
    return time.monotonic(), time.time(), memory, cpu
