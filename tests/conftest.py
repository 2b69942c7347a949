"""Shared fixtures and options of the test suite."""
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
