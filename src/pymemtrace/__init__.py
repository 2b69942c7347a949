"""pymemtrace: find memory leaks in Python programs and their C extensions.

The public modules keep the names of the system we implement:
``pymemtrace.process``, ``pymemtrace.process_tree``,
``pymemtrace.cPyMemTrace``, ``pymemtrace.cpymemtrace_decs``,
``pymemtrace.trace_malloc``, ``pymemtrace.debug_malloc_stats``,
``pymemtrace.redirect_stdout``.  The command line is ``pymemtrace --help``.
``pymemtrace.hunt(func, ...)`` says whether ``func`` leaks (docs/hunt.md).

PYTEST_DONT_REWRITE
"""
# The marker above: this package is a pytest plugin (pytest_plugin.py), and
# `pymemtrace native` imports it into every Python program before pytest
# starts; pytest would then warn that it cannot rewrite the asserts of an
# imported plugin package (an error under -W error).  No assert here needs
# rewriting: the plugin fails tests with the hunt's summary.

__version__ = "0.1.0"

__all__ = ["__version__", "hunt"]


def __getattr__(name):
    # pymemtrace.hunt(...) without importing the hunt (and what it needs)
    # at `import pymemtrace`: `pymemtrace run` starts up on this package.
    if name == "hunt":
        from pymemtrace.hunting import hunt

        return hunt
    raise AttributeError(f"module 'pymemtrace' has no attribute {name!r}")
