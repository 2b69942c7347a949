"""The hunt under `pymemtrace native`: per_call.native_bytes is the growth
of the tracer's live table per call, and a malloc leak in C code is judged
on it (exact, where malloc's figures and the RSS are coarse)."""
import json
import os
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_helpers import needs_tracer  # noqa: E402

pytestmark = needs_tracer

TARGETS = textwrap.dedent("""\
    from pymemtrace import cMemLeak

    def leaky():
        cMemLeak.leak_malloc(1000)  # 1000 bytes from malloc, never freed

    def twin():
        cMemLeak.no_leak_malloc(1000)
""")


@pytest.fixture
def targets(tmp_path):
    path = tmp_path / "targets.py"
    path.write_text(TARGETS)
    return path


def hunt_under_tracer(cli, tmp_path, target):
    result = cli("native", "-o", tmp_path / "native", "--", sys.executable, "-m", "pymemtrace", "hunt",
                 "-n", "300", "--format", "json", target)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_malloc_leak_is_measured_by_the_tracer(cli, tmp_path, targets):
    # GIVEN a C function that keeps 1000 bytes of malloc per call, hunted
    # under the native tracer
    doc = hunt_under_tracer(cli, tmp_path, f"{targets}:leaky")
    # THEN the hunt reads the tracer: 1000 bytes per call (malloc rounds
    # nothing: the table holds the sizes asked for), a leak said to be in
    # the native allocations, and where to look
    assert doc["verdict"] == "leak"
    assert doc["per_call"]["native_bytes"] == pytest.approx(1000, rel=0.02)
    assert any("native tracer's live allocations" in note and "pymemtrace report" in note
               for note in doc["notes"]), doc["notes"]


def test_the_freeing_twin_under_the_tracer_is_no_leak(cli, tmp_path, targets):
    doc = hunt_under_tracer(cli, tmp_path, f"{targets}:twin")
    assert doc["verdict"] == "no-leak"
    assert abs(doc["per_call"]["native_bytes"]) < 50


def test_without_the_tracer_native_bytes_is_null(cli, targets):
    result = cli("hunt", "-n", "50", "--format", "json", f"{targets}:twin")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["per_call"]["native_bytes"] is None
