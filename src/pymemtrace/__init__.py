"""pymemtrace: find memory leaks in Python programs and their C extensions.

The public modules keep the names of the system we implement:
``pymemtrace.process``, ``pymemtrace.process_tree``,
``pymemtrace.cPyMemTrace``, ``pymemtrace.cpymemtrace_decs``,
``pymemtrace.trace_malloc``, ``pymemtrace.debug_malloc_stats``,
``pymemtrace.redirect_stdout``.  The command line is ``pymemtrace --help``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
