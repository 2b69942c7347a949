"""Hunt result -> one self-contained HTML page (``pymemtrace hunt --html``).

One file, no network: the CSS and the script are inline, a
Content-Security-Policy forbids the page any fetch, and the charts are the
SVG of :mod:`pymemtrace.reporters.svg_chart` inlined.  The page is built
here, as escaped HTML: it reads without JavaScript; the script only makes
the tables sortable (click a column header; again: reverse) and opens or
closes every stack at once.

From the top: the first lines of the text summary (verdict and confidence,
frequency, severity, culprit, why: :mod:`pymemtrace.reporters.hunt_text`),
the per-call figures, a chart per measured series (live bytes and blocks in
Python's allocators, the RSS, after each call), then, each only when the
result has some: the types that grew, the allocation sites (stacks unfold),
the holders (referrer chains), the reference-count leaks and the notes.

Every string that comes from the hunted program (reprs, file and function
names, type names, chains, the target's name) is escaped.  A pure function
of the result.
"""

from __future__ import annotations

import html
import math

from pymemtrace.reporters import hunt_text, svg_chart
from pymemtrace.reporters._units import format_bytes

__all__ = ["render"]

#: Points of a chart at most (each bucket keeps its lowest and highest).
CHART_POINTS = 1500

#: (key of result.series, chart title, y label, values are bytes)
CHARTS = (
    ("bytes", "Live bytes in Python's allocators", "bytes since the first call", True),
    ("blocks", "Live blocks in Python's allocators", "blocks since the first call", False),
    ("rss_bytes", "Resident set size (RSS)", "bytes since the first call", True),
)

VERDICT_CLASS = {"leak": "leak", "no-leak": "ok", "inconclusive": "unsure"}


def _text(value) -> str:
    """``value`` as text that encodes as UTF-8: a lone surrogate (a file
    name that was not UTF-8) becomes its escape."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _e(value) -> str:
    """Escaped for HTML text and for double- or single-quoted attributes."""
    return html.escape(_text(value), quote=True)


def _num(value) -> str:
    """A number for a ``data-sort`` attribute (the script sorts on it)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "0"
    return repr(value) if math.isfinite(value) else "0"


def _frame(frame) -> str:
    file, line, function = frame
    where = f"{file}:{line}" if line else str(file)
    return f"{where} in {function}" if function else where


def summary_lines(result) -> list:
    """The first lines of the text summary: the headline and its indented
    lines (frequency, severity, culprit) and the "why" line."""
    lines = hunt_text.render(result).splitlines()
    head = lines[:1]
    for line in lines[1:]:
        if not line.startswith(("  ", "why:")):
            break
        head.append(line)
    return head


def _facts(result) -> list:
    per = result.per_call
    facts = [
        ("iterations", f"{result.iterations:,} measured after {result.warmup:,} warm-up; "
                       f"the last {result.calls_judged:,} judged"),
    ]
    if result.seconds_per_call > 0:
        facts.append(("time per call", f"{result.seconds_per_call * 1e6:,.1f} \u00b5s"))
    figures = [f"{format_bytes(per.get('bytes', 0.0), signed=True)} in "
               f"{per.get('blocks', 0.0):+.2f} blocks of Python's allocators",
               f"{per.get('objects', 0.0):+.2f} objects",
               f"RSS {format_bytes(per.get('rss_bytes', 0.0), signed=True)}"]
    for key, label in (("malloc_bytes", "malloc"), ("native_bytes", "native")):
        if per.get(key) is not None:
            figures.append(f"{label} {format_bytes(per[key], signed=True)}")
    facts.append(("per call", ", ".join(figures)))
    if result.unowned_bytes_per_call > 0:
        facts.append(("with no owning object",
                      f"{format_bytes(result.unowned_bytes_per_call)} per call"))
    return facts


def _chart(key: str, title: str, y_label: str, is_bytes: bool, values, first_judged: int) -> str:
    points = [(i + 1, v) for i, v in enumerate(values)]
    markers = [(first_judged, "judged from here")] if 1 < first_judged <= len(values) else []
    svg = svg_chart.line_chart(points, title=title, x_label="call", y_label=y_label,
                               markers=markers, width=900, height=300,
                               max_points=CHART_POINTS, y_is_bytes=is_bytes)
    # Inline SVG in HTML: no XML declaration.
    if svg.startswith("<?xml"):
        svg = svg[svg.index("?>") + 2:].lstrip()
    # One page holds several charts: each its own id for its data.
    svg = svg.replace('<metadata id="data"', f'<metadata id="data-{key}"', 1)
    return f'<figure class="chart" id="chart-{key}" data-series="{key}">\n{svg}</figure>'


def _charts(result) -> str:
    series = result.series or {}
    first_judged = result.iterations - result.calls_judged + 1 if result.calls_judged else 0
    charts = [_chart(key, title, y_label, is_bytes, series[key], first_judged)
              for key, title, y_label, is_bytes in CHARTS if series.get(key)]
    if not charts:
        return ""
    return ('<section id="growth"><h2>Growth, call by call</h2>\n'
            '<p class="hint">After each measured call, relative to the first; '
            "only the calls after the dashed line are judged (the first half lets "
            "caches fill).</p>\n" + "\n".join(charts) + "\n</section>")


def _table(section: str, title: str, head, rows, hint: str = "") -> str:
    """A section with a sortable table.  ``head``: (title, numeric) per
    column; ``rows``: (attributes, [(sort value or None, cell HTML)])."""
    num_class = ' class="num"'
    ths = "".join(f"<th{num_class if num else ''}>{_e(name)}</th>" for name, num in head)
    body = []
    for attrs, cells in rows:
        tds = []
        for (_, num), (key, cell) in zip(head, cells):
            sort = f' data-sort="{_e(key)}"' if key is not None else ""
            tds.append(f"<td{num_class if num else ''}{sort}>{cell}</td>")
        body.append(f"<tr{attrs}>{''.join(tds)}</tr>")
    hint = f'<p class="hint">{hint}</p>\n' if hint else ""
    return (f'<section id="{section}"><h2>{_e(title)}</h2>\n{hint}'
            f'<table class="sortable"><thead><tr>{ths}</tr></thead>\n'
            f"<tbody>\n" + "\n".join(body) + "\n</tbody></table></section>")


def _types(result) -> str:
    if not result.types:
        return ""
    rows = [(f' data-type="{_e(t.qualname)}"',
             [(_num(t.per_call), _e(f"{t.per_call:+.2f}")),
              (_num(t.bytes_per_call), _e(format_bytes(t.bytes_per_call, signed=True))),
              (_text(t.qualname), _e(t.qualname))])
            for t in result.types]
    return _table("types", "Types that grew",
                  [("objects per call", True), ("bytes per call", True), ("type", False)],
                  rows, "live objects between the half-way and the last census")


def _stack(stack) -> str:
    if not stack:
        return ""
    frames = "".join(f"<li>{_e(_frame(f))}</li>" for f in stack)
    return (f'<details class="stack"><summary>{len(stack)} frame(s)</summary>'
            f"<ol>{frames}</ol></details>")


def _sites(result) -> str:
    if not result.sites:
        return ""
    rows = []
    for s in result.sites:
        where = f"{s.file}:{s.line}" if s.line else s.file
        rows.append((f' data-site="{_e(where)}" data-bytes="{_num(s.bytes_per_call)}"',
                     [(_num(s.bytes_per_call), _e(format_bytes(s.bytes_per_call))),
                      (_num(s.blocks_per_call), _e(f"{s.blocks_per_call:.2f}")),
                      (_text(where), _e(where)),
                      (_text(s.function), _e(s.function)),
                      (_num(len(s.stack)), _stack(s.stack))]))
    return _table("sites", "Where the memory kept was allocated",
                  [("bytes per call", True), ("blocks per call", True), ("file:line", False),
                   ("function", False), ("stack", False)],
                  rows, 'innermost frame first; <button type="button" id="stacks-toggle">'
                        "unfold every stack</button>")


def _holders(result) -> str:
    if not result.holders:
        return ""
    rows = []
    for h in result.holders:
        chain = h.get("chain") or []
        if chain:
            links = '<span class="arrow">\u2192</span>'.join(
                f'<span class="link">{_e(link)}</span>' for link in chain)
        else:
            links = _e(h.get("text", ""))
        text = h.get("text") or " -> ".join(map(_text, chain))
        count = h.get("count")
        rows.append((f' data-type="{_e(h.get("type", "?"))}"',
                     [(_text(h.get("type", "?")), _e(h.get("type", "?"))),
                      (_num(count or 0), _e(count) if count else ""),
                      (_text(text), f'<span class="chain">{links}</span>')]))
    return _table("holders", "Held by",
                  [("type", False), ("objects", True), ("referrer chain", False)],
                  rows, "referrer chains from a root to the new objects of the types that grew")


def _refcount(result) -> str:
    if not result.refcount:
        return ""
    rows = [(f' data-type="{_e(r.get("type", "?"))}"',
             [(_num(r.get("refs_per_call", 0)), _e(f"{r.get('refs_per_call', 0):+.2f}")),
              (_text(r.get("type", "?")), _e(r.get("type", "?"))),
              (_text(r.get("repr", "")), f'<code>{_e(r.get("repr", ""))}</code>')])
            for r in result.refcount]
    return _table("refcount", "Reference counts that grew",
                  [("refs per call", True), ("type", False), ("object", False)],
                  rows, "references no referrer accounts for: a reference leak in C code "
                        "(an INCREF with no DECREF)")


def _notes(result) -> str:
    if not result.notes:
        return ""
    items = "".join(f"<li>{_e(n)}</li>" for n in result.notes)
    return f'<section id="notes"><h2>Notes</h2><ul>{items}</ul></section>'


def render(result, title: str | None = None) -> str:
    """The HTML page of ``result`` (a ``HuntResult``) as text."""
    verdict = hunt_text.VERDICT_WORDS.get(result.verdict, result.verdict)
    if title is None:
        title = f"pymemtrace hunt: {verdict} in {result.target or 'the target'}"
    facts = "".join(f'<div class="fact"><span>{_e(k)}</span> <b>{_e(v)}</b></div>'
                    for k, v in _facts(result))
    sections = [s for s in (_charts(result), _types(result), _sites(result),
                            _holders(result), _refcount(result), _notes(result)) if s]
    return _PAGE.format(
        title=_e(title),
        css=_CSS,
        js=_JS,
        verdict=_e(result.verdict),
        verdict_class=VERDICT_CLASS.get(result.verdict, "unsure"),
        confidence=_num(result.confidence),
        frequency=_num(result.frequency),
        severity=_num(result.leak_bytes_per_call),
        verdict_word=_e(verdict),
        target=_e(result.target or "the target"),
        summary=_e("\n".join(summary_lines(result))),
        facts=facts,
        sections="\n".join(sections),
        text=_e(hunt_text.render(result, top=len(result.sites) + len(result.types) + 5)),
    )


_CSS = """
body{font:14px/1.4 system-ui,Verdana,"DejaVu Sans",sans-serif;margin:0 auto;
max-width:1260px;padding:0 16px 32px;color:#222;background:#fff}
h1{font-size:22px;margin:18px 0 8px}h2{font-size:17px;margin:24px 0 6px}
h1 .badge{display:inline-block;padding:1px 10px;border-radius:4px;color:#fff}
.leak .badge{background:#c0392b}.ok .badge{background:#2e7d32}.unsure .badge{background:#b7791f}
#summary{background:#f7f7f7;border-left:4px solid #999;padding:8px 12px;
white-space:pre-wrap;word-break:break-word;font:13px/1.45 ui-monospace,monospace}
.leak #summary{border-color:#c0392b}.ok #summary{border-color:#2e7d32}
.unsure #summary{border-color:#b7791f}
.facts{display:flex;flex-wrap:wrap;gap:4px 18px;margin:6px 0 10px}
.fact span{color:#666}
.hint{color:#666;margin:2px 0 6px}
figure.chart{margin:8px 0}figure.chart svg{width:100%;height:auto;max-width:900px;
display:block;border:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f4f4f4;user-select:none}th.sortable{cursor:pointer}
th.num,td.num{text-align:right;white-space:nowrap;width:1%}
th[aria-sort=ascending]::after{content:" \\25b2"}th[aria-sort=descending]::after{content:" \\25bc"}
td{word-break:break-word}
details.stack summary{white-space:nowrap;cursor:pointer}
details ol{margin:4px 0;padding-left:22px;font-family:ui-monospace,monospace}
.chain .link{font-family:ui-monospace,monospace}.chain .arrow{color:#888;margin:0 6px}
code{white-space:pre-wrap;word-break:break-all}
#text{margin-top:24px}#text pre{white-space:pre-wrap;font:12px/1.4 ui-monospace,monospace}
"""

_JS = r"""
"use strict";
(function () {
  // Sortable tables: a click on a header sorts by that column (numbers
  // largest first), a second click reverses.
  function key(td, num) {
    var v = td.hasAttribute("data-sort") ? td.getAttribute("data-sort") : td.textContent;
    return num ? (parseFloat(v) || 0) : v.toLowerCase();
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var ths = table.querySelectorAll("thead th"), body = table.tBodies[0];
    Array.prototype.forEach.call(ths, function (th, col) {
      var num = th.classList.contains("num");
      th.classList.add("sortable");
      th.title = "sort by " + th.textContent;
      th.addEventListener("click", function () {
        var desc = th.getAttribute("aria-sort") === "descending" ? false :
                   th.getAttribute("aria-sort") === "ascending" ? true : num;
        var rows = Array.prototype.slice.call(body.rows);
        rows.forEach(function (tr, i) { tr._pmtIndex = i; });
        rows.sort(function (a, b) {
          var x = key(a.cells[col], num), y = key(b.cells[col], num);
          var c = x < y ? -1 : x > y ? 1 : 0;
          return (desc ? -c : c) || a._pmtIndex - b._pmtIndex;
        });
        rows.forEach(function (tr) { body.appendChild(tr); });
        Array.prototype.forEach.call(ths, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      });
    });
  });
  // One button unfolds (or folds) every stack of the sites.
  var toggle = document.getElementById("stacks-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var all = document.querySelectorAll("#sites details.stack");
      var open = !Array.prototype.every.call(all, function (d) { return d.open; });
      Array.prototype.forEach.call(all, function (d) { d.open = open; });
      toggle.textContent = open ? "fold every stack" : "unfold every stack";
    });
  }
  document.documentElement.setAttribute("data-script", "ran");
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title>
<style>{css}</style>
</head>
<body class="{verdict_class}">
<header id="verdict" data-verdict="{verdict}" data-confidence="{confidence}" data-frequency="{frequency}" data-bytes-per-call="{severity}">
<h1><span class="badge">{verdict_word}</span> in {target}</h1>
<pre id="summary">{summary}</pre>
<div class="facts">{facts}</div>
</header>
{sections}
<section id="text"><details><summary>The text summary</summary><pre>{text}</pre></details></section>
<script>{js}</script>
</body>
</html>
"""
