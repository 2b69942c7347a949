"""Capture everything written to stdout or stderr, C libraries included.

``print()`` writes to ``sys.stdout``; a C extension's ``printf()`` writes to
C's ``stdout`` buffer and then to file descriptor 1; a child process writes
straight to descriptor 1.  :func:`stdout_redirector` catches all three::

    import io
    from pymemtrace.redirect_stdout import stdout_redirector

    out = io.StringIO()
    with stdout_redirector(out):
        c_function_that_printfs()
        print("from Python")
    out.getvalue()

How it works: C's stdio buffers and ``sys.stdout`` are flushed, descriptor
1 is saved with ``dup()`` and pointed at a temporary file with ``dup2()``,
and ``sys.stdout`` is replaced by a text stream writing to descriptor 1.  On
exit (also when the body raises) everything is flushed again, descriptor 1
and ``sys.stdout`` are restored, and what was captured is written to the
stream: decoded text for a text stream (``io.StringIO``, a file opened in
``"w"`` mode), raw bytes for a binary one (``io.BytesIO``, ``"wb"``).

It works under pytest's output capture, which replaces ``sys.stdout`` and
may already have redirected descriptors 1 and 2: descriptors 1 and 2 are
redirected whatever they point at, and put back as they were.  The
descriptors are process-wide: output of other threads written during the
block is captured too.
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
import tempfile
from typing import IO, Any, Iterator, Optional, Union

__all__ = ["stdout_redirector", "stderr_redirector"]


def _load_fflush() -> Optional[Any]:
    """libc's ``fflush``, or None where it cannot be found (Windows)."""
    try:
        libc = ctypes.CDLL(None)
        fflush = libc.fflush
    except (OSError, AttributeError, TypeError):
        return None
    fflush.argtypes = [ctypes.c_void_p]
    fflush.restype = ctypes.c_int
    return fflush


_fflush = _load_fflush()


def _flush_c_stdio() -> None:
    """``fflush(NULL)``: write out the buffers of every C stdio stream."""
    if _fflush is not None:
        _fflush(None)


def _flush_python(stream: Optional[IO[str]]) -> None:
    if stream is None:
        return
    try:
        stream.flush()
    except (OSError, ValueError, AttributeError):
        # A closed or unusual replacement stream: nothing we can flush.
        pass


def _write_captured(stream: Union[IO[str], IO[bytes]], data: bytes, encoding: str,
                    errors: str) -> None:
    if isinstance(stream, io.TextIOBase):
        stream.write(data.decode(encoding, errors))
    elif isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
        stream.write(data)
    else:
        # Duck-typed stream: try text first, then bytes.
        try:
            stream.write(data.decode(encoding, errors))  # type: ignore[arg-type]
        except TypeError:
            stream.write(data)  # type: ignore[arg-type]


@contextlib.contextmanager
def _redirect(fd: int, name: str, stream: Union[IO[str], IO[bytes]]) -> Iterator[Any]:
    original = getattr(sys, name)
    encoding = getattr(original, "encoding", None) or "utf-8"
    errors = "replace"
    _flush_python(original)
    _flush_c_stdio()
    saved = os.dup(fd)  # non-inheritable copy of where fd pointed
    try:
        with tempfile.TemporaryFile() as capture:
            replacement = None
            try:
                os.dup2(capture.fileno(), fd)
                # Python-level writes go straight to fd, in order with C's.
                replacement = io.TextIOWrapper(
                    io.FileIO(fd, "w", closefd=False), encoding=encoding,
                    errors="backslashreplace", line_buffering=True,
                    write_through=True)
                setattr(sys, name, replacement)
                yield stream
            finally:
                _flush_python(getattr(sys, name))
                if replacement is not None:
                    _flush_python(replacement)
                _flush_c_stdio()
                setattr(sys, name, original)
                os.dup2(saved, fd)
                if replacement is not None:
                    replacement.close()  # closefd=False: fd stays open
                capture.seek(0)
                data = capture.read()
                _write_captured(stream, data, encoding, errors)
    finally:
        os.close(saved)


def stdout_redirector(stream: Union[IO[str], IO[bytes]]):
    """Context manager capturing descriptor 1 and ``sys.stdout`` into ``stream``.

    ``stream`` is a text stream (receives ``str``) or a binary stream
    (receives ``bytes``).  The captured output is written to it when the
    block ends, also when the block raises.  Yields ``stream``.
    """
    return _redirect(1, "stdout", stream)


def stderr_redirector(stream: Union[IO[str], IO[bytes]]):
    """Context manager capturing descriptor 2 and ``sys.stderr`` into ``stream``.

    Same as :func:`stdout_redirector`, for standard error.
    """
    return _redirect(2, "stderr", stream)
