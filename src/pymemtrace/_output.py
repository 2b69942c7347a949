"""Output files that survive faults.

One way to write a file that is complete or absent: :class:`StreamedFile`
creates a temporary file in the same directory (``mkstemp``, ``O_EXCL``),
and renames it over the path when told the file is complete (``commit``),
or removes it (``discard``).  Streamed logs use it directly (each line
handed to the kernel in one write, so a ``kill -9`` leaves whole lines in
the temporary file).  Every file a ``pymemtrace`` command writes at the
end (JSON, SVG, HTML, collapsed stacks, pprof, gnuplot files) goes through
:func:`atomic_open`, a buffered file over a :class:`StreamedFile`
committed when the block ends well.  A crash, a signal or a
full disk leaves either the previous file or the complete new one, never a
truncated one; on any error the temporary file is removed and a
:class:`~pymemtrace.errors.PymemtraceError` says ``cannot write PATH:
reason`` in one line.

A path that exists and is not a regular file (``/dev/stdout``, ``/dev/full``,
a FIFO) is written in place: renaming over it would replace the device.

A process forked from the one that started the command (a script under
``pymemtrace run`` that forks) never writes the command's outputs:
:func:`atomic_open` refuses when ``os.getpid()`` is not the owner's pid.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys

from pymemtrace.errors import PymemtraceError

# tempfile (with shutil, random, bz2, lzma) is imported when a file is
# written, not at start-up: `pymemtrace run` imports this module before
# the script runs (docs/benchmarks.md, "Start-up").

_owner_pid = os.getpid()


def claim() -> None:
    """Make this process the owner of the outputs (``pymemtrace`` main)."""
    global _owner_pid
    _owner_pid = os.getpid()


def is_owner() -> bool:
    """False in a process forked from the owner."""
    return os.getpid() == _owner_pid


def reason(exc: BaseException) -> str:
    """The lower-case one-line reason of an error (``no space left on device``)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    text = text.splitlines()[0] if text else type(exc).__name__
    return text[:1].lower() + text[1:]


def _not_regular(path: str) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def check_writable(path: str) -> None:
    """Fail now, before any work, when ``path`` could not be written later.

    Leaves nothing behind: a temporary file is created next to ``path`` and
    removed at once; ``path`` itself is not touched.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise PymemtraceError(f"cannot write {path}: is a directory")
    if _not_regular(path):
        if not os.access(path, os.W_OK):
            raise PymemtraceError(f"cannot write {path}: permission denied")
        return
    try:
        fd, tmp = _mkstemp(path)
    except OSError as exc:
        raise PymemtraceError(f"cannot write {path}: {reason(exc)}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _mkstemp(path: str):
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    return tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class StreamedFile:
    """A file written line by line that appears at its path only when complete.

    Opening creates ``.NAME.XXXXXXXX.tmp`` (``O_EXCL``, as ``mkstemp``) in
    the directory of ``path``; :meth:`write` hands each piece to the kernel
    in one ``write()`` (unbuffered: a reader or a kill sees whole lines);
    :meth:`commit` renames it over ``path``; :meth:`discard` removes it.
    A path that exists and is not a regular file (``/dev/stdout``,
    ``/dev/full``, a FIFO) is written in place.  Errors are OSError naming
    ``path``.
    """

    def __init__(self, path) -> None:
        self.path = os.fspath(path)
        self._tmp: str | None = None
        self._fd = -1
        if not is_owner():
            raise PermissionError(1, "a forked process does not write its parent's outputs",
                                  self.path)
        try:
            mode = os.stat(self.path).st_mode
        except OSError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", self.path)
        try:
            if mode is not None and not stat.S_ISREG(mode):
                self._fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            else:
                self._fd, self._tmp = _mkstemp(self.path)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, self.path) from None

    @property
    def partial_path(self) -> str | None:
        """Where the lines are while the file is being written."""
        if self._fd < 0:
            return None
        return self._tmp or self.path

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, text: str) -> None:
        view = memoryview(text.encode("utf-8"))
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, self.path) from None

    def flush(self) -> None:
        """Nothing to do: every write already reached the kernel."""

    def fileno(self) -> int:
        return self._fd

    def commit(self) -> None:
        """Close the file and give it its name (idempotent)."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            os.close(fd)
            if self._tmp is not None:
                os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp's files are 0600
                os.replace(self._tmp, self.path)
                self._tmp = None
        except OSError as exc:
            self._remove_tmp()
            raise type(exc)(exc.errno, exc.strerror, self.path) from None

    def discard(self) -> None:
        """Close the file and remove it: nothing appears at the path (idempotent)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def __enter__(self) -> "StreamedFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", *, fsync: bool = False):
    """A file object for ``path``; the file appears only when the block ends well."""
    path = os.fspath(path)
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    if not is_owner():
        raise PymemtraceError(
            f"not writing {path}: pid {os.getpid()} is a fork of pid {_owner_pid}, "
            "which owns the outputs"
        )
    kwargs = {} if mode == "wb" else {"encoding": "utf-8"}
    try:
        file = StreamedFile(path)
    except OSError as exc:
        raise PymemtraceError(f"cannot write {path}: {reason(exc)}") from None
    try:
        with open(file.fileno(), mode, closefd=False, **kwargs) as stream:
            yield stream
            stream.flush()
            if fsync:
                os.fsync(stream.fileno())
        file.commit()
    except BaseException as exc:
        file.discard()
        if isinstance(exc, OSError):
            raise PymemtraceError(f"cannot write {path}: {reason(exc)}") from None
        raise


def write_file(path: str, data: str | bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w", fsync=fsync) as stream:
        stream.write(data)


def silence_stdout() -> None:
    """Point fd 1 at /dev/null: the interpreter's flush at exit then succeeds."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


#: The one line said when the reader of our stdout has gone
#: (``pymemtrace report LOG | head -1``): exit 1, as for a full disk.
READER_GONE = "cannot write stdout: its reader has gone (broken pipe)"


#: errno values of a write that cannot succeed (full disk, quota, I/O error).
WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EIO", "EBADF")
    if hasattr(errno, name)
)
