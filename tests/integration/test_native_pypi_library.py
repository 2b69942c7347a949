"""A PyPI package built on a C library, under `pymemtrace native`: lxml
(libxml2 linked into its extension) holds parsed trees in libxml2's own
malloc'ed nodes, which no Python allocator sees; the capture shows them,
named by libxml2's functions, and, though lxml parses with the GIL
released, followed by the Python line that asked for the parse."""
import json
import os
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_helpers import needs_tracer  # noqa: E402

pytestmark = needs_tracer

SCRIPT = textwrap.dedent("""\
    from lxml import etree

    DOCUMENT = b"<root>" + b"<item a='1'>text</item>" * 200 + b"</root>"
    kept = []


    def parse_and_keep(n):
        for _ in range(n):
            kept.append(etree.fromstring(DOCUMENT))


    parse_and_keep(200)
    print("trees", len(kept))
""")
PARSE_FUNCTION, PARSE_LINE = "parse_and_keep", 9  # kept.append(etree.fromstring(DOCUMENT))
CALLER_LINE = 12  # parse_and_keep(200)


def libxml2_sites(section):
    """The sites of a JSON section with a frame of libxml2 (xml...) in
    lxml's extension."""
    return [s for s in section["sites"]
            if any(f["function"].startswith("xml") and f["library"]
                   and os.path.basename(f["library"]).startswith("etree") for f in s["frames"])]


def test_lxml_trees_show_as_libxml2_allocations(cli, tmp_path):
    pytest.importorskip("lxml", reason="lxml is a test dependency (pyproject.toml [test]); not installed here")
    # GIVEN a program that keeps 200 parsed documents of 200 elements
    script = tmp_path / "keep_trees.py"
    script.write_text(SCRIPT)
    result = cli("native", "-o", tmp_path / "out", "--", sys.executable, str(script))
    assert result.returncode == 0, result.stderr
    assert "trees 200" in result.stdout
    report = cli("report", tmp_path / "out", "--format", "json")
    assert report.returncode == 0, report.stderr
    (process,) = json.loads(report.stdout)["processes"]
    # THEN at the peak the trees are there: megabytes allocated by libxml2's
    # functions (about 40,000 elements of some hundred bytes each), which
    # the Python allocators never saw
    sites = libxml2_sites(process["peak"])
    held = sum(s["bytes"] for s in sites)
    assert held >= 8 * 2**20, (held, [s["frames"][:3] for s in process["peak"]["sites"][:3]])
    names = {f["function"] for s in sites for f in s["frames"]}
    assert "xmlSAX2StartElementNs" in names or any(n.startswith("xmlNew") for n in names), sorted(names)[:20]
    # AND the trees' libxml2 allocations, made without the GIL, end at the
    # line that parsed (read from the thread's own frames), then its caller
    parsed = [s for s in sites if python_line(s, str(script)) == (PARSE_FUNCTION, PARSE_LINE)]
    at_line = sum(s["bytes"] for s in parsed)
    assert at_line >= 0.9 * held, (at_line, held, [s["frames"] for s in sites[:2]])
    for site in parsed:
        py = [f for f in site["frames"] if f["python"]]
        assert (py[1]["function"], py[1]["line"]) == ("<module>", CALLER_LINE), py


def python_line(site, script):
    """(function, line) of the site's innermost Python frame in script."""
    py = [f for f in site["frames"] if f["python"]]
    if not py or py[0]["file"] != script:
        return None
    return py[0]["function"], py[0]["line"]
