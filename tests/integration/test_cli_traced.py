"""`pymemtrace run --allocations` with an extension that reports its buffers
with PyTraceMalloc_Track (as numpy does): the planted leak and its twin.

The script imports the fixture after the tracker started (the CLI starts it
first), so this is also the dlopen path of the GOT patching.
"""

import json
import os
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fixtures.build import build_fixture  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GOT patching is ELF only")

BUFFER = 64 * 1024
N = 200

SCRIPT = textwrap.dedent("""\
    import leaky_ext
    def leak():
        return [leaky_ext.traced_alloc(64 * 1024) for _ in range(200)]
    def no_leak():
        handles = [leaky_ext.traced_alloc(64 * 1024) for _ in range(200)]
        for h in handles:
            leaky_ext.traced_free(h)
    kept = leak()
    no_leak()
""")
LEAK_LINE, TWIN_LINE = 3, 5


def site_bytes(sites, path, line):
    return sum(s["bytes"] for s in sites if s["file"] == str(path) and s["line"] == line)


def test_traced_leak_is_reported_at_its_line_and_the_twin_only_at_peak(cli, tmp_path):
    # GIVEN a script keeping 200 traced 64 KiB buffers from one line, and a
    # twin that frees its 200
    script = tmp_path / "traced.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out.json"
    env = {"PYTHONPATH": os.pathsep.join([str(build_fixture("leaky_ext")), os.environ.get("PYTHONPATH", "")])}
    # WHEN it runs under the exact tracker
    result = cli("run", "--allocations", "-o", out, script, env=env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    # THEN the leaking line holds 12.8 MB within 5%, at the top
    expected = N * BUFFER
    got = site_bytes(doc["sites"], script, LEAK_LINE)
    assert abs(got - expected) <= 0.05 * expected, (got, expected)
    assert doc["sites"][0]["line"] == LEAK_LINE
    # AND the twin's line is not live at exit, but is at the peak
    assert site_bytes(doc["sites"], script, TWIN_LINE) < 0.01 * expected
    assert site_bytes(doc["peak_sites"], script, TWIN_LINE) >= 0.95 * expected
