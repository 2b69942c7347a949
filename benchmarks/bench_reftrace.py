"""ReferenceTracing (3.13+): the cost of tracing every object, as ratios.

Three settings: the default (builtin types filtered out, so most events
are one table lookup), ``include_builtins=True`` (every object of every
type is a NEW:/DEL: record: the worst case) and an include list of one
type.  Logs go to one temporary file, overwritten by each run and removed
at exit.
"""
import atexit
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


_FOLDER = tempfile.mkdtemp(prefix="pmt_bench_rt_")
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)


@contextlib.contextmanager
def _traced(**kwargs):
    # One file, overwritten by each run: the timed part is the tracing.
    path = os.path.join(_FOLDER, "rt.log")
    with cPyMemTrace.ReferenceTracing(filepath=path, gc_collect_on_exit=-1, **kwargs):
        yield


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
