"""The one-file HTML report of an allocation snapshot, loaded in Debian's
headless chromium: the DOM after its scripts ran is what a user sees.

chromium is installed by ``make chromium-deps`` (a prerequisite of every
``make test-py-V``); these tests are skipped only when it is missing.
"""

import html.parser
import json
import re
import shutil
import os
import subprocess
import sys
import textwrap

import pytest

from pymemtrace.allocations import AllocationSnapshot, Frame, Site
from pymemtrace.reporters import allocations_html

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed: `make chromium-deps` installs Debian's "
    "chromium (as root)",
)

# One function keeps its blocks alive (line PLANTED); its twin allocates as
# much at line TWIN and frees it before the script ends.  (CPython < 3.11
# caches one frame per code object: a few hundred bytes of the twin's line
# stay live there, which the tests allow as "nothing", under FREED bytes.)
SCRIPT = textwrap.dedent("""\
    def planted():
        return [bytearray(1024) for _ in range(4000)]
    def discarded():
        tmp = [bytearray(1024) for _ in range(4000)]
        return len(tmp)
    kept = planted()
    discarded()
""")
PLANTED, TWIN = 2, 4
HELD = 4000 * 1024  # at least this much at PLANTED (and at TWIN at the peak)
FREED = 4096  # at most this much at TWIN at exit


class _Dom(html.parser.HTMLParser):
    """What the tests read from chromium's --dump-dom output."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows = []  # data-site of each table row, in order
        self.row_bytes = []  # data-bytes of each table row
        self.cells = []  # text of the cells of each row
        # (data-name, title, width) of each flame graph box
        self.boxes = {"flame-live": [], "flame-peak": []}
        self.attrs = {}  # id -> attributes
        self.text = {}  # id -> text
        self._flame = None
        self._title = None
        self._name = None
        self._width = 0.0
        self._tip = ""
        self._cell = None
        self._id = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.attrs[a["id"]] = a
            if tag in ("h2", "span", "div", "td"):
                self._id = a["id"]
                self.text[a["id"]] = ""
        if tag == "div" and a.get("id") in self.boxes:
            self._flame = a["id"]
        if tag == "g" and self._flame and "data-name" in a:
            self._name = a["data-name"]
        if tag == "rect" and self._name is not None:
            self._width = float(a["width"])
        if tag == "title" and self._name is not None:
            self._title = ""
        if tag == "tr" and "data-site" in a:
            self.rows.append(a["data-site"])
            self.row_bytes.append(int(a["data-bytes"]))
            self.cells.append([])
        if tag == "td" and self.cells:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "title" and self._title is not None:
            self._tip, self._title = self._title, None
        if tag == "g" and self._name is not None:
            self.boxes[self._flame].append((self._name, self._tip, self._width))
            self._name = None
        if tag == "td" and self._cell is not None:
            self.cells[-1].append(self._cell)
            self._cell = None
        if tag == "svg":
            self._flame = None
        if tag in ("h2", "span", "div", "td"):
            self._id = None

    def handle_data(self, data):
        if self._title is not None:
            self._title += data
        if self._cell is not None:
            self._cell += data
        if self._id is not None:
            self.text[self._id] += data


def dump_dom(page, tmp_path, fragment=""):
    """chromium's DOM of page after its scripts ran (no network: file URL)."""
    profile = tmp_path / "chromium-profile"
    # The browser must not inherit the sanitizer preload meant for Python
    # (under make test-asan it ran for minutes, then timed out).
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")}
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.resolve().as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<tbody" in result.stdout, result.stderr[-2000:]
    dom = _Dom()
    dom.feed(result.stdout)
    return dom, result.stdout


def twin_bytes(rows, row_bytes, script):
    return sum(b for r, b in zip(rows, row_bytes) if r == f"{script}:{TWIN}")


@pytest.fixture
def tracked_report(cli, tmp_path):
    """(report.html, script path) of a real tracked run of SCRIPT."""
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    page = tmp_path / "report.html"
    result = cli("run", "--allocations", "--html", page, script)
    assert result.returncode == 0, result.stderr
    return page, str(script)


@needs_chromium
def test_the_table_built_in_the_browser_puts_the_planted_line_first(
    tracked_report, tmp_path
):
    page, script = tracked_report
    # WHEN chromium loads the report (the default view: live at exit)
    dom, _ = dump_dom(page, tmp_path)
    # THEN the script built the table: the planted line is the first row,
    # with its share of the live memory
    assert dom.rows, "no table rows: the script did not run"
    assert dom.rows[0] == f"{script}:{PLANTED}"
    assert dom.cells[0][3] == f"{script}:{PLANTED}"
    assert float(dom.cells[0][2].rstrip("%")) > 90
    assert dom.row_bytes[0] >= HELD
    # AND the twin, whose memory was freed, is not live at exit
    assert twin_bytes(dom.rows, dom.row_bytes, script) <= FREED
    assert dom.attrs["sites"]["data-view"] == "live"
    assert "live at exit" in dom.text["table-title"]
    # AND the live flame graph has a wide box titled with the planted line,
    # and none (or a sliver) for the twin
    live = dom.boxes["flame-live"]
    assert max(w for _, t, w in live if f"({script}:{PLANTED})" in t) > 1000
    assert all(w < 2 for _, t, w in live if f"({script}:{TWIN})" in t)


@needs_chromium
def test_the_peak_view_from_the_url_hash_shows_the_freed_twin(
    tracked_report, tmp_path
):
    page, script = tracked_report
    # WHEN chromium opens report.html#peak
    dom, _ = dump_dom(page, tmp_path, "#peak")
    # THEN the table shows memory at the peak: the twin is there, heaviest
    # or next to the planted line, both about 4 MiB
    assert dom.attrs["sites"]["data-view"] == "peak"
    assert "at the peak" in dom.text["table-title"]
    assert f"{script}:{TWIN}" in dom.rows[:3]
    assert f"{script}:{PLANTED}" in dom.rows[:3]
    assert twin_bytes(dom.rows, dom.row_bytes, script) >= HELD
    assert "on" in dom.attrs["show-peak"].get("class", "")
    # AND the peak's flame graph has boxes for both lines
    titles = [t for _, t, _ in dom.boxes["flame-peak"]]
    assert any(f"({script}:{TWIN})" in t for t in titles)
    assert any(f"({script}:{PLANTED})" in t for t in titles)


# Appended after the report's own script: clicks and types as a user would,
# then leaves what it saw in the DOM for --dump-dom.
_DRIVER = """
<script>
(function () {
  var out = {};
  function col(i) {
    return Array.prototype.map.call(document.querySelectorAll("#sites tbody tr"),
      function (tr) { return tr.children[i].textContent; });
  }
  function rows() {
    return Array.prototype.map.call(document.querySelectorAll("#sites tbody tr"),
      function (tr) { return [tr.getAttribute("data-site"), +tr.getAttribute("data-bytes")]; });
  }
  out.initial = rows();
  document.querySelector('#sites th[data-key="blocks"]').click();
  out.blocksDesc = col(1).map(Number);
  document.querySelector('#sites th[data-key="blocks"]').click();
  out.blocksAsc = col(1).map(Number);
  document.getElementById("show-peak").click();
  out.afterClickPeak = rows();
  out.view = document.getElementById("sites").getAttribute("data-view");
  var boxes = document.querySelectorAll("#flame-peak g[data-name]");
  function box(name) {
    return Array.prototype.filter.call(boxes, function (g) {
      return g.getAttribute("data-name") === name; })[0];
  }
  function width(g) { return +g.querySelector("rect").getAttribute("width"); }
  var root = boxes[0], twin = box("discarded:TWIN"), kept = box("planted:PLANTED");
  out.rootWidth = width(root);
  out.twinBefore = width(twin);
  twin.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  out.twinZoomed = width(twin);
  out.rootZoomed = width(root);
  out.keptHidden = kept.style.display === "none";
  document.getElementById("reset").click();
  out.twinReset = width(twin);
  out.keptShownAgain = kept.style.display !== "none";
  var search = document.getElementById("search");
  search.value = "discarded";
  search.dispatchEvent(new Event("input"));
  out.matches = Array.prototype.map.call(document.querySelectorAll("g.match"),
    function (g) { return g.getAttribute("data-name"); });
  out.matchText = document.getElementById("matches").textContent;
  document.body.setAttribute("data-driver", JSON.stringify(out));
})();
</script>
"""


@needs_chromium
def test_sorting_switching_zoom_and_search_in_the_browser(tracked_report, tmp_path):
    page, script = tracked_report
    # GIVEN the report with a driver script that clicks and types in it
    driver = _DRIVER.replace("TWIN", str(TWIN)).replace("PLANTED", str(PLANTED))
    text = page.read_text(encoding="utf-8").replace("</body>", driver + "</body>")
    driven = tmp_path / "driven.html"
    driven.write_text(text, encoding="utf-8")
    # WHEN chromium runs it
    _, raw = dump_dom(driven, tmp_path)
    found = re.search(r'data-driver="([^"]*)"', raw)
    assert found, "the driver did not run"
    out = json.loads(html.unescape(found.group(1)))
    # THEN a click on "blocks" sorts by blocks, descending, a second one
    # ascending
    assert len(out["blocksDesc"]) >= 2
    assert out["blocksDesc"] == sorted(out["blocksDesc"], reverse=True)
    assert out["blocksAsc"] == sorted(out["blocksAsc"])
    # AND "at the peak" switches the table to the peak, where the twin is
    assert out["view"] == "peak"
    assert twin_bytes(*zip(*out["afterClickPeak"]), script) >= HELD
    assert twin_bytes(*zip(*out["initial"]), script) <= FREED
    # AND a click on the twin's box zooms it to the full width and hides
    # the planted line's box beside it; reset puts both back
    assert out["twinBefore"] < 0.75 * out["rootWidth"]
    assert out["twinZoomed"] == pytest.approx(out["rootWidth"], abs=0.05)
    assert out["rootZoomed"] == pytest.approx(out["rootWidth"], abs=0.05)
    assert out["keptHidden"] is True
    assert out["twinReset"] == pytest.approx(out["twinBefore"], abs=0.05)
    assert out["keptShownAgain"] is True
    # AND the search highlights the twin's boxes, and only those
    assert out["matches"] and set(out["matches"]) == {f"discarded:{TWIN}"}
    assert out["matchText"].startswith(str(len(out["matches"])))


ODD = ['</script><script>alert(1)</script>', "a<b>&c", "q\"uo'te", "<!--", "\u2028x"]


def odd_snapshot():
    sites = [
        Site((Frame(f"{name}.py", i + 1, name),), 1000 * (len(ODD) - i), 1)
        for i, name in enumerate(ODD)
    ]
    return AllocationSnapshot(
        sites=sites, peak_sites=sites, peak_bytes=5000, bytes=5000
    )


def embedded(page_text):
    start = page_text.index('<script type="application/json" id="pmt-data">')
    start = page_text.index(">", start) + 1
    return page_text[start : page_text.index("</script>", start)]


def test_json_embedding_survives_script_closers_and_markup_in_names():
    # GIVEN sites whose file and function names hold </script>, <, &,
    # quotes, an HTML comment opener and a line separator
    text = odd_snapshot().to_html(title="</script>&<title>")
    # THEN the JSON element is not ended early: it parses as JSON and gives
    # back every name exactly
    data = json.loads(embedded(text))
    rows = data["views"]["live"]["rows"]
    assert [r["function"] for r in rows] == ODD
    assert [r["file"] for r in rows] == [f"{n}.py" for n in ODD]
    assert rows[0]["stacks"][0]["frames"][0] == [f"{ODD[0]}.py", 1, ODD[0]]
    # AND no name appears raw anywhere in the page (the SVG and the title
    # escape them too), so the page has exactly its own two scripts
    assert text.count("</script>") == 2
    assert "<script>alert" not in text
    assert "<title>&lt;/script&gt;&amp;&lt;title&gt;</title>" in text


def test_the_page_needs_no_network():
    text = odd_snapshot().to_html()
    # THEN the only URL is the SVG namespace, and nothing is loaded
    urls = set(re.findall(r"https?://[^\s\"'<>)]*", text))
    assert urls == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", text)
    assert "default-src 'none'" in text


def test_a_large_snapshot_caps_the_table():
    # GIVEN 10,000 sites on distinct lines under one caller
    caller = Frame("main.py", 1, "main")
    sites = [
        Site((Frame("lib.py", n + 1, f"f{n}"), caller), 10_000 - n, 1)
        for n in range(10_000)
    ]
    snap = AllocationSnapshot(
        sites=sites, peak_sites=sites[:10], peak_bytes=10**9, bytes=10**9
    )
    text = allocations_html.render(snap)
    data = json.loads(embedded(text))
    # THEN the table keeps the 50 largest lines and says how many there are
    live = data["views"]["live"]
    assert len(live["rows"]) == 50 and live["lines"] == 10_000
    assert live["rows"][0]["line"] == 1 and live["rows"][49]["line"] == 50
    # AND the flame graph leaves out the boxes too narrow to see
    assert text.count("<g data-name=") < 10_000
    # AND a one-site report is far smaller than this one
    assert len(text) < 60 * len(allocations_html.render(
        AllocationSnapshot(sites=sites[:1], peak_sites=[], peak_bytes=1, bytes=1)
    ))


@needs_chromium
def test_odd_names_show_as_text_in_the_browser(tmp_path):
    # GIVEN a report of sites with markup in their names
    page = tmp_path / "odd.html"
    page.write_text(odd_snapshot().to_html(), encoding="utf-8")
    # WHEN chromium builds the table
    dom, raw = dump_dom(page, tmp_path)
    # THEN each name is a cell's text, nothing of it became markup
    assert [cells[4] for cells in dom.cells] == ODD
    assert "<script>alert" not in raw


def test_run_html_to_an_unwritable_path_fails_before_the_script(cli, tmp_path):
    script = tmp_path / "app.py"
    script.write_text("print('ran')\n")
    result = cli("run", "--allocations", "--html", tmp_path / "no" / "r.html", script)
    assert result.returncode == 1
    assert "ran" not in result.stdout
    assert result.stderr.startswith("pymemtrace run: error: cannot write ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_report_of_a_saved_snapshot_writes_html(cli, tmp_path):
    # GIVEN a snapshot saved by run -o
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    saved = tmp_path / "snap.json"
    assert cli("run", "--allocations", "-o", saved, script).returncode == 0
    # WHEN `pymemtrace report` reads it with --html
    page = tmp_path / "r.html"
    result = cli("report", saved, "--html", page, "--top", "3")
    # THEN it prints the top sites and writes the page with the same data
    assert result.returncode == 0, result.stderr
    assert f"{script}:{PLANTED}" in result.stdout
    data = json.loads(embedded(page.read_text(encoding="utf-8")))
    assert data["views"]["live"]["rows"][0]["line"] == PLANTED
    assert any(r["line"] == TWIN for r in data["views"]["peak"]["rows"])
    # AND --html on a log is a usage error
    log = tmp_path / "x.log"
    log.write_text("not json\n")
    bad = cli("report", log, "--html", tmp_path / "x.html")
    assert bad.returncode == 2 and "allocation snapshot" in bad.stderr
    assert not (tmp_path / "x.html").exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


@needs_chromium
def test_native_captures_in_the_browser_put_the_leaking_c_line_first(cli, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from native_helpers import FIXTURE, compile_prog, skip_reason

    if skip_reason():
        pytest.skip(skip_reason())
    # GIVEN the planted C program leaking 2,000 KiB from leak_kib, and its
    # twin freeing as much from keep_kib, run by one shell under pymemtrace
    # native (a capture per process)
    prog = compile_prog(tmp_path)
    outdir = tmp_path / "native"
    result = cli("native", "-o", outdir, "--", "sh", "-c", f"{prog} leak 2000 && {prog} free 2000")
    assert result.returncode == 0, result.stderr
    page = tmp_path / "native.html"
    result = cli("report", outdir, "--html", page)
    assert result.returncode == 0, result.stderr
    # WHEN chromium loads the page
    dom, _ = dump_dom(page, tmp_path)
    # THEN the first row is the malloc line of leak_kib in the C source (or
    # the function in its library, without debug information)
    with open(FIXTURE) as stream:
        source = stream.read().splitlines()

    def malloc_line(function):
        start = next(i for i, text in enumerate(source) if f"{function}(void)" in text)
        return next(i for i in range(start, len(source)) if "malloc(1024)" in source[i]) + 1

    assert dom.rows[0] in (f"{FIXTURE}:{malloc_line('leak_kib')}", f"{prog}:0"), dom.rows[:3]
    assert dom.row_bytes[0] == 2000 * 1024
    assert "live at exit" in dom.text["table-title"]
    # AND the twin's line holds nothing at exit; the flame graph's widest
    # box is the leak's
    assert f"{FIXTURE}:{malloc_line('keep_kib')}" not in dom.rows
    # AND at the peak (report.html#peak) the twin's line is there too
    peak, _ = dump_dom(page, tmp_path, "#peak")
    if dom.rows[0].startswith(FIXTURE):
        assert f"{FIXTURE}:{malloc_line('keep_kib')}" in peak.rows, peak.rows[:5]
    live = dom.boxes["flame-live"]
    assert max(w for _, t, w in live if "leak_kib" in t) > 1000
    assert not any("keep_kib" in t for _, t, _ in live)
