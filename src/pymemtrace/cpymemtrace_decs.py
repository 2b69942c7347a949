"""Decorators running a function under cPyMemTrace tracers.

``@profile``, ``@trace`` and ``@reference_tracing`` take the arguments of
``cPyMemTrace.Profile``, ``Trace`` and ``ReferenceTracing`` and work bare
(``@profile``) or called (``@profile(d_rss_trigger=0)``).  Each call of the
decorated function writes its own log.

The module functions act on the innermost tracer of that kind entered by
the calling thread: ``profile_log_path()`` / ``trace_log_path()`` return
its log path (None when there is none), ``profile_write_message_to_log()``
/ ``trace_write_message_to_log()`` add a ``MSG:`` record to its log
(RuntimeError when there is none), ``profile_wrapper_depth()`` /
``trace_wrapper_depth()`` count the active tracers of that kind.  The
``reference_tracing_*`` functions of ``cPyMemTrace`` are re-exported too.
"""
import functools

from pymemtrace import cPyMemTrace
from pymemtrace.cPyMemTrace import (
    profile_log_path,
    profile_wrapper_depth,
    profile_write_message_to_log,
    reference_tracing_live_object_counts,
    reference_tracing_log_path,
    reference_tracing_simple_wrapper_depth,
    reference_tracing_wrapper_depth,
    reference_tracing_write_message_to_log,
    trace_log_path,
    trace_wrapper_depth,
    trace_write_message_to_log,
)

__all__ = [
    "profile",
    "profile_log_path",
    "profile_wrapper_depth",
    "profile_write_message_to_log",
    "reference_tracing",
    "reference_tracing_live_object_counts",
    "reference_tracing_log_path",
    "reference_tracing_simple_wrapper_depth",
    "reference_tracing_wrapper_depth",
    "reference_tracing_write_message_to_log",
    "trace",
    "trace_log_path",
    "trace_wrapper_depth",
    "trace_write_message_to_log",
]

def _decorator(factory, dec_args, dec_kwargs):
    """``@name`` (dec_args == (fn,)) or ``@name(...)``."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with factory()(*call_args, **dec_kwargs):
                return fn(*args, **kwargs)

        return wrapper

    if len(dec_args) == 1 and not dec_kwargs and callable(dec_args[0]):
        call_args = ()
        return decorate(dec_args[0])
    call_args = dec_args
    return decorate


def profile(*dec_args, **dec_kwargs):
    """Run the decorated function inside ``cPyMemTrace.Profile(...)``."""
    return _decorator(lambda: cPyMemTrace.Profile, dec_args, dec_kwargs)


def trace(*dec_args, **dec_kwargs):
    """Run the decorated function inside ``cPyMemTrace.Trace(...)``."""
    return _decorator(lambda: cPyMemTrace.Trace, dec_args, dec_kwargs)


def _reference_tracing_class():
    cls = getattr(cPyMemTrace, "ReferenceTracing", None)
    if cls is None:
        raise RuntimeError(
            "cPyMemTrace.ReferenceTracing is not available in this build "
            "(it needs CPython 3.13 or later)"
        )
    return cls


def reference_tracing(*dec_args, **dec_kwargs):
    """Run the decorated function inside ``cPyMemTrace.ReferenceTracing``.

    The class is looked up when the function is called, so decorating
    works everywhere and the call raises RuntimeError where it is missing.
    """
    return _decorator(_reference_tracing_class, dec_args, dec_kwargs)
