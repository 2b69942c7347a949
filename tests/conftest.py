"""Shared fixtures and options of the test suite.

``--leak-loops N`` (ujson's idea): every test marked ``leaks`` runs once to
warm up, then N more times under tracemalloc; it fails when the memory
traced after each run was still climbing in the second half of the loops.
Refcount leaks of the C code are the job of tests/leakcheck.py on a debug
build (``make test-dbg``).
"""
import functools
import gc
import os
import subprocess
import sys

import pytest


def run_cli(*args, input=None, timeout=120, env=None, cwd=None):
    """Run ``python -m pymemtrace ARGS`` (the same interpreter as the tests)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pymemtrace", *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
    )


@pytest.fixture
def cli():
    return run_cli


def pytest_configure(config):
    # The extension must come from this checkout, never from an old install.
    import pymemtrace._native  # noqa: F401


def pytest_addoption(parser):
    parser.addoption(
        "--leak-loops",
        type=int,
        default=0,
        metavar="N",
        help="rerun each test marked 'leaks' N times under tracemalloc and fail "
        "when its memory keeps growing (0: off)",
    )


def _loop_under_tracemalloc(test, loops):
    import tracemalloc

    @functools.wraps(test)
    def looped(*args, **kwargs):
        test(*args, **kwargs)  # warm-up: caches, lazy imports, interned strings
        tracemalloc.start()
        try:
            gc.collect()
            highest = baseline = tracemalloc.get_traced_memory()[0]
            rises = []
            for _ in range(loops):
                test(*args, **kwargs)
                gc.collect()
                current = tracemalloc.get_traced_memory()[0]
                rises.append(current > highest)
                highest = max(highest, current)
        finally:
            tracemalloc.stop()
        second_half = rises[loops // 2 :]
        if second_half and sum(second_half) * 2 > len(second_half):
            grown = highest - baseline
            pytest.fail(
                f"memory still growing after {loops} loops: {grown} bytes, "
                f"{grown // loops} per loop (--leak-loops)"
            )

    return looped


def pytest_collection_modifyitems(config, items):
    loops = config.getoption("--leak-loops")
    if loops <= 0:
        return
    for item in items:
        if item.get_closest_marker("leaks") is not None and hasattr(item, "obj"):
            item.obj = _loop_under_tracemalloc(item.obj, loops)
