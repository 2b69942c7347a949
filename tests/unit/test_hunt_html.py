"""reporters/hunt_html.py: the one-page HTML report of a hunt, as text.

The page is parsed with ``html.parser`` (what a browser's tokenizer sees);
tests/integration/test_cli_hunt_html.py loads it in headless chromium.
"""

import html.parser
import os
import re

import pytest

from pymemtrace.errors import PymemtraceError
from pymemtrace.hunting import Hunt
from pymemtrace.reporters import hunt_html, hunt_text
from pymemtrace.snapshots.hunt import SiteGrowth, TypeGrowth

HOSTILE = '</script><img src=x onerror="alert(1)">&amp;<!--'

SECTIONS = ("growth", "types", "sites", "holders", "refcount", "notes")


def bare(**fields) -> Hunt:
    """A no-leak result with nothing in any section, then ``fields``."""
    values = dict(
        verdict="no-leak", confidence=0.95, reason="no lasting growth", iterations=100,
        warmup=5, frequency=0.0,
        per_call={"bytes": 0.0, "blocks": 0.0, "objects": 0.0, "rss_bytes": 0.0,
                  "native_bytes": None, "malloc_bytes": None},
        calls_judged=49, seconds_per_call=1e-6, target="app:handler",
    )
    values.update(fields)
    return Hunt(**values)


def full(text=HOSTILE) -> Hunt:
    """A leak with every section, every string from the program ``text``."""
    n = 100
    return bare(
        verdict="leak", confidence=0.999, reason="grew", frequency=0.1,
        leak_bytes_per_call=100.0, target=f"{text}:target",
        types=[TypeGrowth(text, f"mod.{text}", 1.0, 64.0),
               TypeGrowth("int", "builtins.int", 3.0, 96.0)],
        sites=[SiteGrowth(((f"{text}.py", 7, text), ("main.py", 3, "<module>")), 100.0, 1.0),
               SiteGrowth((("lib.py", 12, "helper"),), 400.0, 4.0)],
        holders=[{"type": text, "chain": [f"module {text}", "list kept", "[...]"],
                  "text": f"module {text} -> list kept -> [...]", "count": 20}],
        refcount=[{"type": "NoneType", "repr": text, "refs_per_call": 1.0}],
        notes=[f"note about {text}"],
        series={"bytes": [i * 100 for i in range(n)], "blocks": list(range(n)),
                "rss_bytes": [(i * 100) // 4096 * 4096 for i in range(n)]},
    )


class Page(html.parser.HTMLParser):
    """Tags, ids, the text of each element with an id, and table cells."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags = []  # (tag, attrs)
        self.text = {}  # id -> text inside it
        self.cells = {}  # section id -> rows of cell texts
        self._open = []  # ids being read
        self._section = None
        self._cell = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self._open.append((tag, a["id"]))
            self.text[a["id"]] = ""
        if tag == "section":
            self._section = a.get("id")
        if tag == "tr" and self._section:
            self.cells.setdefault(self._section, []).append([])
        if tag == "td":
            self._cell = ""

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            self._open.pop()
        if tag == "td" and self._cell is not None:
            self.cells[self._section][-1].append(self._cell)
            self._cell = None
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        for _, ident in self._open:
            self.text[ident] += data
        if self._cell is not None:
            self._cell += data

    def ids(self):
        return {a["id"] for _, a in self.tags if "id" in a}

    def rows(self, section):
        return [r for r in self.cells.get(section, []) if r]


def test_a_hostile_repr_stays_text_everywhere():
    # GIVEN a result whose every program string is markup that would close
    # the script, add an element with a handler, and open a comment
    text = hunt_html.render(full())
    # THEN the page has only its own element of each kind: one script, no
    # img, and nothing of the string as markup
    page = Page(text)
    tags = [t for t, _ in page.tags]
    assert tags.count("script") == 1 and "img" not in tags
    assert text.count("</script>") == 1
    assert "<img" not in text and "<!--" not in text
    assert not any("onerror" in a for _, a in page.tags)
    # AND each string reads back as the program gave it, in its cell
    assert [r[2] for r in page.rows("refcount")] == [HOSTILE]
    assert page.rows("types")[0][2] == f"mod.{HOSTILE}"
    assert page.rows("sites")[0][2:4] == [f"{HOSTILE}.py:7", HOSTILE]
    assert f"{HOSTILE}.py:7 in {HOSTILE}" in page.rows("sites")[0][4]
    assert page.rows("holders")[0][0] == HOSTILE
    assert f"module {HOSTILE}" in page.rows("holders")[0][2]
    assert page.text["notes"] == f"Notesnote about {HOSTILE}"
    assert HOSTILE in page.text["summary"]
    # AND the attributes that carry them are whole (quoted and escaped)
    sites = [a for t, a in page.tags if t == "tr" and "data-site" in a]
    assert sites[0]["data-site"] == f"{HOSTILE}.py:7"


def test_the_summary_is_the_first_lines_of_the_text_summary():
    result = full("app")
    text = hunt_text.render(result).splitlines()
    page = Page(hunt_html.render(result))
    # THEN the box at the top holds the verdict, frequency, severity,
    # culprit and why lines of the text, as they are there
    assert page.text["summary"].splitlines() == text[:5]
    assert text[4].startswith("why:")
    header = dict(page.tags)["header"]
    assert header["data-verdict"] == "leak"
    assert float(header["data-confidence"]) == 0.999
    assert float(header["data-frequency"]) == 0.1
    assert float(header["data-bytes-per-call"]) == 100.0
    assert page.text["verdict"].strip().startswith("LEAK in app:target")


def test_every_section_is_there_when_the_result_has_it():
    page = Page(hunt_html.render(full("app")))
    assert set(SECTIONS) <= page.ids()
    # the sites and types in the order of the result, every one
    assert [r[2] for r in page.rows("sites")] == ["app.py:7", "lib.py:12"]
    assert [r[2] for r in page.rows("types")] == ["mod.app", "builtins.int"]
    assert page.rows("refcount")[0][:2] == ["+1.00", "NoneType"]
    assert page.rows("holders")[0][1] == "20"


def test_a_result_with_nothing_to_show_has_no_empty_sections():
    page = Page(hunt_html.render(bare()))
    assert not set(SECTIONS) & page.ids()
    assert {"verdict", "summary", "text"} <= page.ids()
    assert page.text["summary"].startswith("pymemtrace hunt: no leak")


@pytest.mark.parametrize("section", SECTIONS)
def test_each_section_comes_with_its_own_data_alone(section):
    # GIVEN a bare result given only what the one section shows
    whole = full("app")
    field = {"growth": "series"}.get(section, section)
    page = Page(hunt_html.render(bare(**{field: getattr(whole, field)})))
    # THEN that section is there, and no other
    assert set(SECTIONS) & page.ids() == {section}


def test_the_charts_draw_each_series_call_by_call():
    result = full("app")
    text = hunt_html.render(result)
    page = Page(text)
    for key in ("bytes", "blocks", "rss_bytes"):
        assert f"chart-{key}" in page.ids()
        # the chart's data are the series, calls numbered from 1
        values = page.text[f"data-{key}"].split()
        assert values[0] == "1,0" and len(values) == result.iterations
        assert values[-1] == f"{result.iterations},{result.series[key][-1]}"
    # AND a dashed line marks the first judged call
    assert text.count("judged from here") == 3
    # AND each chart is an SVG with its line, and no XML declaration
    assert text.count("<svg") == 3 and text.count('class="series"') == 3
    assert "<?xml" not in text


def test_a_series_missing_leaves_out_its_chart_only():
    result = full("app")
    result.series = {"bytes": result.series["bytes"]}
    ids = Page(hunt_html.render(result)).ids()
    assert "chart-bytes" in ids and "chart-blocks" not in ids and "chart-rss_bytes" not in ids


def test_a_long_hunt_makes_a_page_of_bounded_size():
    # GIVEN a hunt of 200,000 calls
    n = 200_000
    small, big = full("app"), full("app")
    big.iterations = n
    big.series = {"bytes": list(range(0, 100 * n, 100)), "blocks": list(range(n)),
                  "rss_bytes": [i // 41 * 4096 for i in range(n)]}
    # THEN its charts keep a few thousand points each, not one per call
    assert len(hunt_html.render(big)) < len(hunt_html.render(small)) + 3 * 60_000


def test_the_page_needs_no_network():
    text = hunt_html.render(full("app"))
    urls = set(re.findall(r"https?://[^\s\"'<>)]*", text))
    assert urls == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe|object|embed)\b|\bsrc=|@import|url\(", text)
    assert "default-src 'none'" in text
    # nor with the hostile strings: no element of the page loads anything
    page = Page(hunt_html.render(full()))
    assert not any({"src", "href"} & set(a) for _, a in page.tags)


def test_a_file_name_that_is_not_utf8_is_written_escaped(tmp_path):
    # GIVEN a site in a file whose name was not UTF-8 (a lone surrogate)
    odd = os.fsdecode(b"caf\xe9.py")
    result = bare(verdict="leak", sites=[SiteGrowth(((odd, 1, "f"),), 10.0, 1.0)])
    # WHEN the page is saved
    out = tmp_path / "hunt.html"
    result.save_html(out)
    # THEN it is UTF-8, the name's byte shown as its escape
    text = out.read_text(encoding="utf-8")
    assert "caf\\udce9.py:1" in text


def test_save_html_is_complete_or_absent(tmp_path):
    out = tmp_path / "hunt.html"
    full("app").save_html(out)
    assert out.read_text(encoding="utf-8") == full("app").to_html()
    assert out.read_text(encoding="utf-8").rstrip().endswith("</html>")
    # a path that cannot be written: one error, nothing left behind
    with pytest.raises(PymemtraceError, match="cannot write .*no/hunt.html"):
        full("app").save_html(tmp_path / "no" / "hunt.html")
    assert sorted(os.listdir(tmp_path)) == ["hunt.html"]


def test_a_title_is_escaped_too():
    text = hunt_html.render(full("app"), title="a<b>&c")
    assert "<title>a&lt;b&gt;&amp;c</title>" in text
