"""ReferenceTracing (3.13+): the cost of tracing every object, as ratios.

Three settings: the default (builtin types filtered out, so most events
are one table lookup), ``include_builtins=True`` (every object of every
type is a NEW:/DEL: record: the worst case) and an include list of one
type.  Logs go to a temporary directory that is removed after each run.
"""
import contextlib
import os
import shutil
import sys
import tempfile

from benchmarks.harness import Tool
from pymemtrace import cPyMemTrace


def _reason():
    if sys.version_info < (3, 13):
        return "needs CPython 3.13+ (PyRefTracer)"
    return None


@contextlib.contextmanager
def _traced(**kwargs):
    folder = tempfile.mkdtemp(prefix="pmt_bench_rt_")
    try:
        path = os.path.join(folder, "rt.log")
        with cPyMemTrace.ReferenceTracing(filepath=path, gc_collect_on_exit=0, **kwargs):
            yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


TOOLS = [
    Tool(
        name="ReferenceTracing()",
        wrap=lambda: _traced(),
        available=_reason,
    ),
    Tool(
        name="ReferenceTracing(include_builtins=True)",
        wrap=lambda: _traced(include_builtins=True),
        available=_reason,
    ),
    Tool(
        name="ReferenceTracing(include_tp_names=['dict'])",
        wrap=lambda: _traced(include_tp_names=["dict"]),
        available=_reason,
    ),
]
