"""Memory per call, per line and per object, from the C core.

``rss()`` and ``rss_peak()`` read the process memory; ``Profile`` and
``Trace`` log it while code runs (see docs/cpymemtrace.md, and
docs/log_format.md for the log).
"""
import atexit as _atexit

from pymemtrace import _native
from pymemtrace._native import Profile, Trace, page_size, rss, rss_peak

__all__ = [
    "Profile",
    "Trace",
    "page_size",
    "profile_wrapper_depth",
    "rss",
    "rss_peak",
    "trace_wrapper_depth",
]


def profile_wrapper_depth() -> int:
    """Number of active ``Profile`` objects (all threads)."""
    return len(_native._active_tracers(0))


def trace_wrapper_depth() -> int:
    """Number of active ``Trace`` objects (all threads)."""
    return len(_native._active_tracers(1))


# Logs still open when the interpreter exits get their LAST and EOF
# records and are flushed (module teardown does it too, as a last resort).
_atexit.register(_native._close_all_tracers)
