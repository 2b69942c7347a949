"""The probe of one process: its memory and CPU times, now.

This process is read by the C core (``_native.process_sample()``, and the
``_native.Sampler`` thread that never holds the GIL); any other process
through psutil.  A reading is a plain tuple, :data:`Reading`:
``(monotonic s, wall-clock s, memory_info dict, cpu_times dict)``.

:class:`SamplingThread` takes a reading every interval (this process: the
C sampler, drained in batches; another: psutil) and hands each one, with
the START/SAMPLE/STOP event and the message that labels it, to its
``_emit`` method: what becomes of a reading (a record, a log line, a file)
is the business of a subclass in a front end
(:class:`pymemtrace.process.ProcessLoggingThread`).
"""
from __future__ import annotations

import logging
import math
import numbers
import os
import queue
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import psutil

try:  # the C core; without it every process is read through psutil
    from pymemtrace import _native
except ImportError:  # pragma: no cover - the extension is always built here
    _native = None

#: (monotonic s, wall s, memory_info, cpu_times)
Reading = Tuple[float, float, Dict[str, Any], Dict[str, Any]]

#: True when this process can be sampled by the C thread.
HAVE_NATIVE = _native is not None

#: Longest interval accepted, in seconds (the C sampler's limit too).
MAX_INTERVAL = 86400.0
#: Seconds between two drains of the C sampler (readings are handed on up
#: to this late) when the interval is shorter.
DEFAULT_BATCH = 1.0
#: The events of a sampling: the first reading, those between, the last.
EVENT_START = "START"
EVENT_SAMPLE = "SAMPLE"
EVENT_STOP = "STOP"

logger = logging.getLogger("pymemtrace.process")


def check_interval(interval: Any) -> float:
    if (
        isinstance(interval, bool)
        or not isinstance(interval, numbers.Real)
        or not math.isfinite(interval)
        or not 0 < interval <= MAX_INTERVAL
    ):
        raise ValueError(
            f"interval must be a number of seconds > 0 and <= {MAX_INTERVAL:g}, "
            f"got {interval!r}"
        )
    return float(interval)


def check_log_level(log_level: Any) -> int:
    if isinstance(log_level, str):
        value = logging.getLevelName(log_level.upper())
        if isinstance(value, int):
            return value
    elif isinstance(log_level, int) and not isinstance(log_level, bool) and log_level >= 0:
        return log_level
    raise ValueError(f"log_level must be a logging level such as logging.INFO, got {log_level!r}")


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


class SamplingThread(threading.Thread):
    """A thread that reads a process's memory and CPU use every ``interval`` s.

    ``pid=-1`` (or this process's pid) reads this process through the C
    sampler; any other pid through psutil.  ``capacity``: samples the C
    ring holds (default: four batches' worth); ``batch``: seconds between
    drains of the C ring (readings are handed on in batches, up to this
    late; default 1 s, or the interval when longer, at most 5 s).

    Each reading goes to ``_emit(event, reading, label)``: START from
    ``start()``, SAMPLE from the thread (one per message queued before the
    reading was taken), STOP when the thread ends.  Subclasses override
    ``_emit``, and ``_open``/``_close_outputs`` for what they write.

    Raises ValueError for a bad interval, ProcessLookupError (an OSError)
    when no process has that pid, PermissionError when it cannot be read.
    Stop with ``join()`` (which hands on the STOP reading first).
    """

    def __init__(
        self,
        group=None,
        target=None,
        name=None,
        daemon=None,
        interval=1.0,
        pid=-1,
        *,
        capacity: Optional[int] = None,
        batch: Optional[float] = None,
    ):
        self._interval = check_interval(interval)
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise ValueError(f"pid must be an integer, got {pid!r}")
        if pid != -1 and pid <= 0:
            raise ValueError(f"pid must be a positive process id or -1 (this process), got {pid}")
        if batch is None:
            # Each drain takes the GIL from the watched program once: on a
            # busy machine a GIL handoff can cost it milliseconds, so drain
            # about once a second whatever the interval.
            batch = DEFAULT_BATCH if self._interval <= DEFAULT_BATCH else min(self._interval, 5.0)
        try:
            self._batch = check_interval(batch)
        except ValueError:
            raise ValueError(f"batch must be a number of seconds > 0, got {batch!r}") from None
        if capacity is None:
            # Room for four batches: a logging thread held up for a while
            # loses nothing.
            capacity = max(1024, min(1 << 20, int(4 * self._batch / self._interval) + 1))
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive number of samples, got {capacity!r}")
        own = pid in (-1, os.getpid())
        self._process = this_process() if own else open_process(pid)
        self._pid = self._process.pid
        self._create_time = create_time(self._process)
        self._use_native = own and HAVE_NATIVE
        super().__init__(
            group=group,
            target=target,
            name=name or "ProcMon",
            daemon=True if daemon is None else daemon,
        )
        self._capacity = capacity
        #: Messages waiting to label a reading: (time.monotonic(), text).
        self.process_queue: "queue.Queue[Tuple[float, str]]" = queue.Queue()
        self._pending_labels: List[Tuple[float, str]] = []
        self._stop_event = threading.Event()
        self._start_called = False
        self._sampler = None
        self._last: Optional[Reading] = None
        #: Samples the C ring dropped because the thread fell behind.
        self.dropped = 0
        #: The exception that ended sampling early, else None.
        self.error: Optional[BaseException] = None
        #: True when the watched process exited before the thread stopped.
        self.process_exited = False
        # None until the thread ends; then whether its STOP was handed on.
        self._stop_written: Optional[bool] = None

    # -- public ------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def uses_native_sampler(self) -> bool:
        """True when samples come from the C thread (this process)."""
        return self._use_native

    def add_message_to_queue(self, msg: str) -> None:
        """Label the next reading with ``msg`` (one reading per message)."""
        self.process_queue.put((time.monotonic(), str(msg)))

    def start(self) -> None:
        """Open the outputs, hand on the START reading, start sampling."""
        if self._start_called:
            raise RuntimeError("threads can only be started once")
        self._start_called = True
        try:
            self._open()
            if self._use_native:
                # START is sampled here; the thread's first sample comes one
                # interval later, and start() does not wait for the thread.
                self._sampler = native_sampler(self._interval, self._capacity)
                first = native_reading()
                self._sampler.start(immediate=False)
            else:
                first = self._psutil_sample()
            self._emit(EVENT_START, first, self._start_label())
            super().start()
        except BaseException:
            self._close()
            raise

    def stop(self) -> None:
        """Ask the thread to hand on its STOP reading and end (does not wait)."""
        if self._sampler is not None:
            # Both threads wind down at once: the C thread ends while the
            # logging thread wakes up.
            self._sampler.request_stop()
        self._stop_event.set()

    def join(self, timeout: Optional[float] = None) -> None:
        """Stop the thread and wait for it (its STOP reading is then handed on)."""
        self.stop()
        super().join(timeout)

    # -- for subclasses ----------------------------------------------------

    def _open(self) -> None:
        """Open what the readings go to (before the START reading)."""

    def _start_label(self) -> Optional[str]:
        return None

    def _emit(self, event: str, reading: Reading, label: Optional[str]) -> None:
        """Hand on one reading (called from start() and from the thread)."""
        self._last = reading

    def _close_outputs(self) -> None:
        """Close what ``_open`` opened (the sampler is stopped)."""

    # -- the thread --------------------------------------------------------

    def run(self) -> None:
        try:
            if self._use_native:
                self._run_native()
            else:
                self._run_psutil()
        except Exception as exc:  # noqa: BLE001 - reported, never silent
            self.error = exc
            logger.error("pymemtrace.process: sampling of pid %d stopped: %s", self._pid, exc)
        finally:
            try:
                self._finish()
            except Exception as exc:  # noqa: BLE001 - e.g. disk full, on_record
                if self.error is None:
                    self.error = exc
                logger.error("pymemtrace.process: cannot write the STOP record: %s", exc)
            finally:
                self._close()

    def _run_native(self) -> None:
        # Drain in batches: the GIL is taken once per batch, however short
        # the interval.
        while not self._stop_event.wait(self._batch):
            self._drain_native()

    def _drain_native(self) -> None:
        for sample in self._sampler.drain():
            self._emit_sample(from_native(sample))

    def _run_psutil(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                sample = self._psutil_sample()
            except ProcessLookupError:
                self.process_exited = True
                return
            self._emit_sample(sample)

    def _finish(self) -> None:
        final: Optional[Reading] = None
        if self._sampler is not None:
            self._sampler.stop()
            try:
                self._drain_native()
                final = native_reading()
            except OSError as exc:
                if self.error is None:
                    self.error = exc
                    logger.error("pymemtrace.process: sampling stopped: %s", exc)
            self.dropped = self._sampler.dropped
        elif not self.process_exited:
            try:
                final = self._psutil_sample()
            except ProcessLookupError:
                self.process_exited = True
        if final is None:
            final = self._last
        if final is None:  # pragma: no cover - START always sets _last
            return
        self._collect_labels()
        for _, text in self._pending_labels:
            self._emit(EVENT_SAMPLE, final, text)
        self._pending_labels.clear()
        self._stop_written = False
        self._emit(EVENT_STOP, final, None)
        self._stop_written = True

    # -- helpers -----------------------------------------------------------

    def _psutil_sample(self) -> Reading:
        return psutil_reading(self._process)

    def _collect_labels(self) -> None:
        while True:
            try:
                item = self.process_queue.get_nowait()
            except queue.Empty:
                return
            if not isinstance(item, tuple):  # put() straight on the queue, as the seed did
                item = (0.0, str(item))
            self._pending_labels.append(item)

    def _emit_sample(self, sample: Reading) -> None:
        """One reading, or one per message queued before it was taken."""
        if self.process_queue.qsize() or self._pending_labels:
            self._collect_labels()
            due = [p for p in self._pending_labels if p[0] <= sample[0]]
            if due:
                self._pending_labels = self._pending_labels[len(due):]
                for _, text in due:
                    self._emit(EVENT_SAMPLE, sample, text)
                return
        self._emit(EVENT_SAMPLE, sample, None)

    def _close(self) -> None:
        """Stop the sampler, then close the outputs."""
        if self._sampler is not None:
            self._sampler.stop()
        self._close_outputs()
