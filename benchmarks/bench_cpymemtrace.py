"""cPyMemTrace.Profile / Trace: cost of memory logging per call and line.

Targets (issue 3): Profile() <= 1.5x, Trace() <= 2.5x,
Profile(d_rss_trigger=0) <= 6x.  Logs go to a temporary directory.  The
PyPI release of the seed system runs the same workloads in its own
environment (build/seedenv) through bench_cpymemtrace_seed.py: run
``python -m benchmarks.bench_cpymemtrace [ROUNDS]`` for both tables; the
harness shows one row saying so, or why the seed is skipped.  The "floor"
rows are a C hook that does nothing: no tracer can cost less.
"""
import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

from benchmarks.harness import Tool
from pymemtrace import _native, cPyMemTrace

_LOG_DIR = tempfile.mkdtemp(prefix="pmt_bench_cpymemtrace_")
_COUNTER = [0]


def _log_path(tag):
    # A new file each run, as a user gets: truncating an old log costs
    # ~0.1 ms on this ext4 (discard), which is not the tracer's cost.
    _COUNTER[0] += 1
    return os.path.join(_LOG_DIR, f"{tag}_{_COUNTER[0]}.log")


atexit.register(shutil.rmtree, _LOG_DIR, True)


def _wrap(cls, tag, **kwargs):
    def make():
        return cls(filepath=_log_path(tag), **kwargs)

    return make


def _delete_logs():
    """Tool.after: the logs of the run just timed go (they can be ~1 GB)."""
    for name in os.listdir(_LOG_DIR):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(_LOG_DIR, name))


def _heap_unavailable():
    try:
        with cPyMemTrace.Profile(measure="heap", filepath=_log_path("probe")):
            pass
    except NotImplementedError as exc:
        return f"allocation counters not built yet ({exc})"
    return None


TOOLS = [
    Tool("cPyMemTrace.Profile()", _wrap(cPyMemTrace.Profile, "P"), target=1.5,
         after=_delete_logs),
    Tool("cPyMemTrace.Trace()", _wrap(cPyMemTrace.Trace, "T"), target=2.5,
         after=_delete_logs),
    Tool(
        "cPyMemTrace.Profile(d_rss_trigger=0)",
        _wrap(cPyMemTrace.Profile, "P0", d_rss_trigger=0),
        target=6.0,
        after=_delete_logs,
    ),
    Tool(
        "cPyMemTrace.Trace(d_rss_trigger=0)",
        _wrap(cPyMemTrace.Trace, "T0", d_rss_trigger=0),
        after=_delete_logs,
    ),
    Tool(
        'cPyMemTrace.Profile(measure="heap")',
        _wrap(cPyMemTrace.Profile, "PH", measure="heap"),
        target=1.5,
        available=_heap_unavailable,
        after=_delete_logs,
    ),
]


@contextlib.contextmanager
def _noop_hook(kind):
    """A C hook that does nothing: the floor any profile/trace hook pays."""
    _native._set_noop_hook(kind, True)
    try:
        yield
    finally:
        _native._set_noop_hook(kind, False)


_MONITORING_TOOL_ID = 4  # not one of the ids CPython names (0-2, 5)


@contextlib.contextmanager
def _noop_monitoring():
    """sys.monitoring (3.12+) calling a C no-op at PY_START and PY_RETURN:
    the floor a monitoring-based Profile would pay (no C_CALL events)."""
    mon = sys.monitoring
    events = mon.events.PY_START | mon.events.PY_RETURN
    mon.use_tool_id(_MONITORING_TOOL_ID, "pymemtrace-bench")
    try:
        mon.register_callback(_MONITORING_TOOL_ID, mon.events.PY_START, _native._noop)
        mon.register_callback(_MONITORING_TOOL_ID, mon.events.PY_RETURN, _native._noop)
        mon.set_events(_MONITORING_TOOL_ID, events)
        yield
    finally:
        mon.set_events(_MONITORING_TOOL_ID, 0)
        mon.free_tool_id(_MONITORING_TOOL_ID)


@contextlib.contextmanager
def _noop_monitoring_with_c_calls():
    """The events Profile asks for on 3.12+ (PY_START/RESUME/THROW,
    PY_RETURN/YIELD/UNWIND, CALL, C_RETURN, C_RAISE), each calling a C
    no-op: the floor of an exact monitoring-based Profile."""
    mon = sys.monitoring
    names = ("PY_START", "PY_RESUME", "PY_THROW", "PY_RETURN", "PY_YIELD", "PY_UNWIND",
             "CALL", "C_RETURN", "C_RAISE")
    events = 0
    mon.use_tool_id(_MONITORING_TOOL_ID, "pymemtrace-bench")
    try:
        for name in names:
            event = getattr(mon.events, name)
            mon.register_callback(_MONITORING_TOOL_ID, event, _native._noop)
            events |= event
        mon.set_events(_MONITORING_TOOL_ID, events)
        yield
    finally:
        mon.set_events(_MONITORING_TOOL_ID, 0)
        for name in names:
            mon.register_callback(_MONITORING_TOOL_ID, getattr(mon.events, name), None)
        mon.free_tool_id(_MONITORING_TOOL_ID)


def _monitoring_unavailable():
    return None if sys.version_info >= (3, 12) else "sys.monitoring needs CPython 3.12+"


TOOLS += [
    Tool("floor: no-op C profile hook", lambda: _noop_hook(0)),
    Tool("floor: no-op C trace hook", lambda: _noop_hook(1)),
    Tool("floor: no-op sys.monitoring PY_START/PY_RETURN", _noop_monitoring,
         available=_monitoring_unavailable),
    Tool("floor: no-op sys.monitoring, Profile's events (with C calls)", _noop_monitoring_with_c_calls,
         available=_monitoring_unavailable),
]


# ---- the seed (PyPI pymemtrace) side by side ------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_PYTHON = os.path.join(REPO, "build", "seedenv", "bin", "python")
SEED_SCRIPT = os.path.join(REPO, "benchmarks", "bench_cpymemtrace_seed.py")


def _seed_unavailable():
    if not os.path.exists(SEED_PYTHON):
        return ("no seed environment: see bench_cpymemtrace_seed.py for "
                "how to build build/seedenv")
    probe = subprocess.run(
        [SEED_PYTHON, "-c", "from pymemtrace import cPyMemTrace"],
        capture_output=True, text=True, cwd=REPO,
    )
    if probe.returncode:
        return "seed pymemtrace does not import: " + probe.stderr.strip()[-120:]
    return None


def _seed_note():
    reason = _seed_unavailable()
    if reason:
        return reason
    return ("runs in its own venv: python -m benchmarks.bench_cpymemtrace "
            "prints it beside ours")


# One row so that `python -m benchmarks` says where the seed's numbers are.
TOOLS.append(Tool("seed cPyMemTrace (PyPI)", contextlib.nullcontext,
                  workloads=("call_heavy",), available=_seed_note))


def run_seed(rounds=7):
    """The seed's Profile/Trace ratios, measured in its own venv."""
    reason = _seed_unavailable()
    if reason:
        return "seed skipped: " + reason
    out = subprocess.run(
        [SEED_PYTHON, SEED_SCRIPT, "--rounds", str(rounds)],
        capture_output=True, text=True, cwd=REPO,
    )
    return out.stdout + out.stderr


def main(argv=None):
    """Ours and the seed's, one after the other, same workloads."""
    from benchmarks.harness import format_table, run_all

    rounds = int(argv[0]) if argv else 7
    print("## pymemtrace (this tree)\n")
    print(format_table(run_all(TOOLS[:-1], rounds)), flush=True)
    print("\n## seed: PyPI pymemtrace in build/seedenv\n")
    print(run_seed(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
