"""cPyMemTrace.Profile / Trace: cost of memory logging per call and line.

Targets (issue 3): Profile() <= 1.5x, Trace() <= 2.5x,
Profile(d_rss_trigger=0) <= 6x.  Logs go to a temporary directory.  The
PyPI release of the seed system runs the same workloads in its own
environment (build/seedenv) through bench_cpymemtrace_seed.py, reported as
a Pair-like row per workload; skipped with the reason when absent.
"""
import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

from benchmarks.harness import ALL_WORKLOADS, Tool
from pymemtrace import cPyMemTrace

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


def _heap_unavailable():
    try:
        with cPyMemTrace.Profile(measure="heap", filepath=_log_path("probe")):
            pass
    except NotImplementedError as exc:
        return f"allocation counters not built yet ({exc})"
    return None


TOOLS = [
    Tool("cPyMemTrace.Profile()", _wrap(cPyMemTrace.Profile, "P"), target=1.5),
    Tool("cPyMemTrace.Trace()", _wrap(cPyMemTrace.Trace, "T"), target=2.5),
    Tool(
        "cPyMemTrace.Profile(d_rss_trigger=0)",
        _wrap(cPyMemTrace.Profile, "P0", d_rss_trigger=0),
        target=6.0,
    ),
    Tool(
        "cPyMemTrace.Trace(d_rss_trigger=0)",
        _wrap(cPyMemTrace.Trace, "T0", d_rss_trigger=0),
    ),
    Tool(
        'cPyMemTrace.Profile(measure="heap")',
        _wrap(cPyMemTrace.Profile, "PH", measure="heap"),
        target=1.5,
        available=_heap_unavailable,
    ),
]


# ---- the seed (PyPI pymemtrace) side by side ------------------------------

SEED_PYTHON = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "build", "seedenv", "bin", "python",
)
SEED_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "bench_cpymemtrace_seed.py")


def _seed_unavailable():
    if not os.path.exists(SEED_PYTHON):
        return ("no seed environment: python -m venv build/seedenv && "
                "build/seedenv/bin/pip install pymemtrace")
    probe = subprocess.run(
        [SEED_PYTHON, "-c", "from pymemtrace import cPyMemTrace"],
        capture_output=True, text=True,
    )
    if probe.returncode:
        return "seed pymemtrace does not import: " + probe.stderr.strip()[-120:]
    return None


class _SeedRun(contextlib.AbstractContextManager):
    """Not a tracer: a marker so the harness skips and reports the reason.

    The seed cannot run in this interpreter; its numbers come from
    run_seed() below (printed by ``python -m benchmarks.bench_cpymemtrace``).
    """


def run_seed(rounds=7):
    """Ratios of the seed's Profile/Trace, measured in its own venv."""
    reason = _seed_unavailable()
    if reason:
        return reason
    out = subprocess.run(
        [SEED_PYTHON, SEED_SCRIPT, "--rounds", str(rounds)],
        capture_output=True, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))),
    )
    return out.stdout + out.stderr


if __name__ == "__main__":
    print(run_seed(int(sys.argv[1]) if len(sys.argv) > 1 else 7))
    shutil.rmtree(_LOG_DIR, ignore_errors=True)
