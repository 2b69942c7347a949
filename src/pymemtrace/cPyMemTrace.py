"""Memory per call, per line and per object, from the C core.

``rss()`` and ``rss_peak()`` read the process memory; ``Profile`` and
``Trace`` log it while code runs (see docs/cpymemtrace.md, and
docs/log_format.md for the log); ``ReferenceTracing`` (CPython 3.13+) logs
every object created and destroyed, ``ReferenceTracingSimple`` only counts
them (docs/reference_tracing.md).

The module functions act on the innermost tracer of their kind entered by
the calling thread (log path, messages) or count the active ones (depth);
``pymemtrace.cpymemtrace_decs`` re-exports them beside the decorators.
The reference tracer is one per process, not per thread: the
``reference_tracing_*`` functions act on the innermost ReferenceTracing
entered by any thread.
"""
import atexit as _atexit
import threading as _threading

from pymemtrace import _native
from pymemtrace._native import (
    Profile,
    ReferenceTracing,
    ReferenceTracingSimple,
    Trace,
    page_size,
    rss,
    rss_peak,
)

__all__ = [
    "Profile",
    "ReferenceTracing",
    "ReferenceTracingSimple",
    "Trace",
    "page_size",
    "profile_log_path",
    "profile_wrapper_depth",
    "profile_write_message_to_log",
    "reference_tracing_live_object_counts",
    "reference_tracing_log_path",
    "reference_tracing_simple_wrapper_depth",
    "reference_tracing_wrapper_depth",
    "reference_tracing_write_message_to_log",
    "rss",
    "rss_peak",
    "trace_log_path",
    "trace_wrapper_depth",
    "trace_write_message_to_log",
]

_PROFILE, _TRACE = 0, 1


def _innermost(kind):
    me = _threading.get_ident()
    for tracer in reversed(_native._active_tracers(kind)):
        if tracer.thread_id == me:
            return tracer
    return None


def profile_log_path():
    """Log path of this thread's innermost active Profile, or None."""
    tracer = _innermost(_PROFILE)
    return None if tracer is None else tracer.log_file_path()


def trace_log_path():
    """Log path of this thread's innermost active Trace, or None."""
    tracer = _innermost(_TRACE)
    return None if tracer is None else tracer.log_file_path()


def _write(kind, name, message):
    tracer = _innermost(kind)
    if tracer is None:
        raise RuntimeError(f"no active {name} in this thread")
    tracer.write_message_to_log(message)


def profile_write_message_to_log(message):
    """Add a MSG: record to this thread's innermost active Profile's log."""
    _write(_PROFILE, "Profile", message)


def trace_write_message_to_log(message):
    """Add a MSG: record to this thread's innermost active Trace's log."""
    _write(_TRACE, "Trace", message)


def profile_wrapper_depth():
    """Number of active Profile objects (all threads)."""
    return len(_native._active_tracers(_PROFILE))


def trace_wrapper_depth():
    """Number of active Trace objects (all threads)."""
    return len(_native._active_tracers(_TRACE))


def _reference_tracers(simple):
    kind = ReferenceTracingSimple if simple else ReferenceTracing
    return [t for t in _native._reftrace_stack() if type(t) is kind]


def _innermost_reference_tracing(what):
    tracers = _reference_tracers(False)
    if not tracers:
        raise RuntimeError(f"{what}: no active ReferenceTracing")
    return tracers[-1]


def reference_tracing_wrapper_depth():
    """Number of active ReferenceTracing objects (0 before CPython 3.13)."""
    return len(_reference_tracers(False))


def reference_tracing_simple_wrapper_depth():
    """Number of active ReferenceTracingSimple objects (0 before CPython 3.13)."""
    return len(_reference_tracers(True))


def reference_tracing_log_path():
    """Log path of the innermost active ReferenceTracing, or None."""
    tracers = _reference_tracers(False)
    return tracers[-1].log_file_path() if tracers else None


def reference_tracing_write_message_to_log(message):
    """Add a MSG: record to the innermost active ReferenceTracing's log.

    RuntimeError when none is active.
    """
    _innermost_reference_tracing("reference_tracing_write_message_to_log()").write_message_to_log(message)


def reference_tracing_live_object_counts():
    """{type name: live count} of the innermost active ReferenceTracing.

    RuntimeError when none is active.
    """
    return _innermost_reference_tracing("reference_tracing_live_object_counts()").live_object_counts()


# Logs still open when the interpreter exits get their LAST and EOF
# records and are flushed (module teardown does it too, as a last resort).
_atexit.register(_native._close_all_tracers)
