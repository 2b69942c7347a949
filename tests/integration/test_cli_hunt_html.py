"""`pymemtrace hunt --html FILE`: the page of a real hunt, and what Debian's
headless chromium shows of it after its script ran.

chromium is installed by ``make chromium-deps``; the browser tests are
skipped only when it is missing (as in test_html_report.py).
"""

import html
import html.parser
import json
import os
import re
import shutil
import subprocess
import textwrap

import pytest

from pymemtrace.hunting import Hunt
from pymemtrace.snapshots.hunt import SiteGrowth, TypeGrowth

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed: `make chromium-deps` installs Debian's chromium (as root)",
)

# Two lines keep memory at each call, the second four times as much; the
# twin keeps nothing.
TARGETS = textwrap.dedent("""\
    kept = []

    def leaky():
        kept.append(bytearray(500))
        kept.append(bytearray(2000))

    def twin():
        bytearray(500)

    def prints():
        print("hello from the target")
""")
SMALL_LINE, BIG_LINE = 4, 5

HOSTILE = '</script><img src=x onerror="document.title=\'pwned\'">&<!--'


@pytest.fixture
def targets(tmp_path):
    path = tmp_path / "targets.py"
    path.write_text(TARGETS)
    return path


class Dom(html.parser.HTMLParser):
    """Attributes of each element with an id, rows of each table, tags seen."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.attrs = {}  # id -> attributes
        self.rows = {}  # section id -> [(tr attributes, [cell text])]
        self.tags = []
        self._section = None
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.attrs[a["id"]] = a
        if tag == "section":
            self._section = a.get("id")
        if tag == "tr" and self._section and self._section != "text":
            self.rows.setdefault(self._section, []).append((a, []))
        if tag == "td":
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[self._section][-1][1].append(self._cell)
            self._cell = None
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def body_rows(self, section):
        return [(a, cells) for a, cells in self.rows.get(section, []) if cells]


def hunt_page(cli, tmp_path, target, *extra):
    page = tmp_path / "hunt.html"
    result = cli("hunt", "-n", "200", "--html", page, *extra, target)
    assert result.returncode == 0, result.stderr
    return page, result


def test_a_planted_leak_gives_a_page_with_the_verdict_chart_and_sites(cli, targets, tmp_path):
    # WHEN the hunt of the planted leak writes its page
    page, result = hunt_page(cli, tmp_path, f"{targets}:leaky")
    text = page.read_text(encoding="utf-8")
    dom = Dom(text)
    # THEN stdout is the text summary as without --html, and the page's
    # summary box starts with the same lines
    assert result.stdout.startswith("pymemtrace hunt: LEAK (confidence ")
    first = result.stdout.splitlines()[0]
    assert f"<pre id=\"summary\">{html.escape(first)}" in text
    assert dom.attrs["verdict"]["data-verdict"] == "leak"
    assert float(dom.attrs["verdict"]["data-frequency"]) > 0.9
    # AND a chart of each series, the bytes rising call by call
    for key in ("bytes", "blocks", "rss_bytes"):
        assert f"chart-{key}" in dom.attrs
    values = [float(p.split(",")[1]) for p in
              re.search(r'<metadata id="data-bytes"[^>]*>([^<]*)<', text).group(1).split()]
    assert len(values) == 200 and values[-1] >= 199 * 2500
    # AND the sites: the bigger line first, the smaller next, in the file
    sites = [a["data-site"] for a, _ in dom.body_rows("sites")]
    assert sites[:2] == [f"{targets}:{BIG_LINE}", f"{targets}:{SMALL_LINE}"]
    # AND the type that grew and who holds it
    assert dom.body_rows("types")[0][1][2] == "builtins.bytearray"
    holder = dom.body_rows("holders")[0][1]
    assert holder[0] == "bytearray" and "module targets" in holder[2] and "list kept" in holder[2]
    assert "refcount" not in dom.attrs


def test_the_twin_gives_a_no_leak_page_without_culprits(cli, targets, tmp_path):
    page, result = hunt_page(cli, tmp_path, f"{targets}:twin")
    dom = Dom(page.read_text(encoding="utf-8"))
    assert result.stdout.startswith("pymemtrace hunt: no leak")
    assert dom.attrs["verdict"]["data-verdict"] == "no-leak"
    assert "chart-bytes" in dom.attrs
    assert not {"types", "sites", "holders", "refcount"} & set(dom.attrs)


def test_html_and_json_together(cli, targets, tmp_path):
    out = tmp_path / "hunt.json"
    page, _ = hunt_page(cli, tmp_path, f"{targets}:leaky", "--json", out)
    doc = json.loads(out.read_text())
    dom = Dom(page.read_text(encoding="utf-8"))
    assert doc["verdict"] == dom.attrs["verdict"]["data-verdict"] == "leak"
    assert [f"{s['file']}:{s['line']}" for s in doc["sites"]] == \
        [a["data-site"] for a, _ in dom.body_rows("sites")]


@pytest.mark.parametrize("where", ["no/dir.html", "."])
def test_an_unwritable_html_path_fails_before_the_hunt(cli, targets, tmp_path, where):
    result = cli("hunt", "-n", "20", "--html", tmp_path / where, f"{targets}:prints")
    assert result.returncode == 1
    assert result.stderr.startswith("pymemtrace hunt: error: cannot write ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "hello from the target" not in result.stdout
    assert sorted(os.listdir(tmp_path)) == ["targets.py"]


# -- in the browser ---------------------------------------------------------


def dump_dom(page, tmp_path):
    """chromium's DOM of page after its scripts ran (no network: a file URL)."""
    # The browser must not inherit a sanitizer preload meant for Python.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")}
    result = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "</html>" in result.stdout, result.stderr[-2000:]
    return result.stdout


@needs_chromium
def test_the_browser_shows_the_verdict_the_chart_and_the_sites(cli, targets, tmp_path):
    page, _ = hunt_page(cli, tmp_path, f"{targets}:leaky")
    # WHEN chromium loads the page and runs its script
    raw = dump_dom(page, tmp_path)
    dom = Dom(raw)
    # THEN the script ran (it made the headers sortable)
    assert next(a for t, a in dom.tags if t == "html").get("data-script") == "ran"
    assert any("sortable" in a.get("class", "") for t, a in dom.tags if t == "th")
    # AND the verdict is at the top
    assert dom.attrs["verdict"]["data-verdict"] == "leak"
    assert re.search(r'<span class="badge">LEAK</span>', raw)
    # AND the chart is an SVG with its line
    chart = raw[raw.index('id="chart-bytes"'):]
    assert re.match(r'id="chart-bytes"[^>]*>\s*<svg\b', chart)
    assert '<polyline class="series"' in chart[:chart.index("</svg>")]
    # AND the sites are rows of a table, the planted lines first
    sites = [a["data-site"] for a, _ in dom.body_rows("sites")]
    assert sites[:2] == [f"{targets}:{BIG_LINE}", f"{targets}:{SMALL_LINE}"]


def hostile_result():
    """Three sites, and program strings that are markup, in every section."""
    stack = ((f"{HOSTILE}.py", 1, HOSTILE), ("main.py", 9, "<module>"))
    return Hunt(
        verdict="leak", confidence=0.999, reason=HOSTILE, iterations=50, warmup=0,
        frequency=1.0, per_call={"bytes": 10.0, "blocks": 1.0, "objects": 1.0,
                                 "rss_bytes": 0.0, "native_bytes": None},
        types=[TypeGrowth(HOSTILE, HOSTILE, 1.0, 10.0)],
        sites=[SiteGrowth(stack, 200.0, 2.0), SiteGrowth((("b.py", 2, "b"),), 300.0, 1.0),
               SiteGrowth((("c.py", 3, "c"),), 100.0, 3.0)],
        holders=[{"type": HOSTILE, "chain": [HOSTILE, "list x"], "text": "", "count": 2}],
        refcount=[{"type": "NoneType", "repr": HOSTILE, "refs_per_call": 1.0}],
        calls_judged=24, target=HOSTILE, notes=[HOSTILE],
        series={"bytes": list(range(50))},
    )


# Appended after the page's own script: clicks as a user would, then leaves
# what it saw in the DOM for --dump-dom.
_DRIVER = """
<script>
(function () {
  var out = {};
  function sites() {
    return Array.prototype.map.call(document.querySelectorAll("#sites tbody tr"),
      function (tr) { return tr.getAttribute("data-site"); });
  }
  var head = document.querySelectorAll("#sites thead th");
  out.initial = sites();
  head[0].click();
  out.bytesDesc = sites();
  head[0].click();
  out.bytesAsc = sites();
  head[2].click();
  out.byFile = sites();
  out.openBefore = document.querySelectorAll("#sites details[open]").length;
  document.getElementById("stacks-toggle").click();
  out.openAfter = document.querySelectorAll("#sites details[open]").length;
  out.images = document.querySelectorAll("img").length;
  out.scripts = document.querySelectorAll("script").length;
  out.title = document.title;
  out.repr = document.querySelector("#refcount tbody td code").textContent;
  out.note = document.querySelector("#notes li").textContent;
  document.body.setAttribute("data-driver", JSON.stringify(out));
})();
</script>
"""


@needs_chromium
def test_sorting_stacks_and_hostile_strings_in_the_browser(tmp_path):
    # GIVEN the page of a result full of markup, with a driver script
    text = hostile_result().to_html().replace("</body>", _DRIVER + "</body>")
    page = tmp_path / "driven.html"
    page.write_text(text, encoding="utf-8")
    # WHEN chromium runs it
    raw = dump_dom(page, tmp_path)
    found = re.search(r'data-driver="([^"]*)"', raw)
    assert found, "the driver did not run"
    out = json.loads(html.unescape(found.group(1)))
    # THEN a click on "bytes per call" sorts largest first, a second one
    # smallest first; "file:line" sorts by name
    first = f"{HOSTILE}.py:1"
    assert out["initial"] == [first, "b.py:2", "c.py:3"]
    assert out["bytesDesc"] == ["b.py:2", first, "c.py:3"]
    assert out["bytesAsc"] == ["c.py:3", first, "b.py:2"]
    assert out["byFile"] == sorted(out["byFile"], key=str.lower)
    # AND one button unfolds every stack
    assert out["openBefore"] == 0 and out["openAfter"] == 3
    # AND the markup stayed text: no image, no extra script, the title
    # untouched, the repr and the note read as given
    assert out["images"] == 0 and out["scripts"] == 2
    assert out["title"] == f"pymemtrace hunt: LEAK in {HOSTILE}"
    assert out["repr"] == HOSTILE and out["note"] == HOSTILE
