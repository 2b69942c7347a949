"""Allocation snapshot -> one self-contained HTML report (works offline).

One file, no network: the CSS and the script are inline (a
Content-Security-Policy forbids the page any fetch), the two flame
graphs (memory live now and at the peak) are the SVG of ``flamegraph_svg``
inlined, and the table data is embedded once as JSON in a
``<script type="application/json">`` element, from which the script builds
the table of the top sites.

In the browser:

- click a box of a flame graph to zoom into it (its callers stay, full
  width, below it); "reset" zooms out; the search box highlights the boxes
  whose function or file contains the text;
- click a column header of the table to sort by it (again: reverse);
- "live" / "at the peak" switch the table; the choice is kept in the URL
  hash (``report.html#peak`` opens on the peak);
- each row's stack unfolds (the heaviest stacks through that line).
"""

from __future__ import annotations

import html
import json

from pymemtrace.analyses.allocations import lines_with_stacks
from pymemtrace.reporters import flamegraph_svg
from pymemtrace.reporters._units import format_bytes

TOP = 50  # rows per table
STACKS_PER_ROW = 3  # full stacks kept for each line of the table


def _frame(f) -> list:
    return [f.file, f.line, f.function]


def _rows(sites, top: int) -> tuple[list[dict], int]:
    """The ``top`` lines (largest first), each with its heaviest stacks; and
    the number of distinct lines."""
    lines = lines_with_stacks(sites)
    rows = []
    for frame, nbytes, nblocks, members in lines[:top]:
        rows.append(
            {
                "bytes": nbytes,
                "blocks": nblocks,
                "file": frame.file if frame else "<no Python frame>",
                "line": frame.line if frame else 0,
                "function": frame.function if frame else "",
                "stacks": [
                    {"bytes": s.bytes, "frames": [_frame(f) for f in s.stack]}
                    for s in members[:STACKS_PER_ROW]
                ],
                "more_stacks": max(0, len(members) - STACKS_PER_ROW),
            }
        )
    return rows, len(lines)


def _view(sites, total: int, top: int) -> dict:
    rows, lines = _rows(sites, top)
    return {"total": total, "sites": len(sites), "lines": lines, "rows": rows}


def embed_json(data) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&``.

    ``</script>`` or ``<!--`` in a file or function name would otherwise end
    the element early; the escapes are valid JSON, so ``JSON.parse`` gives
    back the same strings.
    """
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _svg(sites, title: str) -> str:
    svg = flamegraph_svg.render(sites, title=title, data_attrs=True)
    # Inline SVG in HTML: no XML declaration.
    if svg.startswith("<?xml"):
        svg = svg[svg.index("?>") + 2 :].lstrip()
    return svg


def _facts(snapshot, live_label: str) -> list[tuple[str, str]]:
    stats = snapshot.stats or {}
    facts = [("mode", snapshot.mode), ("stack depth", f"{snapshot.depth} frames")]
    if snapshot.mode == "sampled":
        facts.append(
            ("sample interval", f"one per {format_bytes(snapshot.sample_bytes)} (estimates)")
        )
    facts.append((live_label, format_bytes(snapshot.bytes)))
    facts.append(("peak", format_bytes(snapshot.peak_bytes)))
    facts.append(("sites", f"{len(snapshot.sites)} live, {len(snapshot.peak_sites)} at the peak"))
    if stats.get("memory"):
        facts.append(("tracker memory", format_bytes(stats["memory"])))
    for key, label in (("python", "Python"), ("platform", "platform")):
        if stats.get(key):
            facts.append((label, str(stats[key])))
    dropped = {k: v for k, v in stats.items() if k.startswith("dropped") and v}
    if dropped:
        facts.append(
            (
                "warning",
                "tables full, not recorded: "
                + ", ".join(f"{k.split('_', 1)[1]} {v}" for k, v in dropped.items()),
            )
        )
    return facts


def render(
    snapshot,
    title: str | None = None,
    *,
    top: int = TOP,
    live_label: str = "live now",
) -> str:
    """The HTML report of ``snapshot`` as text (one standalone HTML5 file)."""
    if title is None:
        title = "pymemtrace: allocations"
    data = {
        "live_label": live_label,
        "views": {
            "live": _view(snapshot.sites, snapshot.bytes, top),
            "peak": _view(snapshot.peak_sites, snapshot.peak_bytes, top),
        },
    }
    esc = html.escape
    facts = "".join(
        f'<div class="fact{" warn" if k == "warning" else ""}"><span>{esc(k)}</span>'
        f"<b>{esc(v)}</b></div>"
        for k, v in _facts(snapshot, live_label)
    )
    live_svg = _svg(snapshot.sites, f"Memory {live_label}")
    peak_svg = _svg(snapshot.peak_sites, "Memory live at the peak")
    return _PAGE.format(
        title=esc(title),
        facts=facts,
        live_label=esc(live_label),
        live_svg=live_svg,
        peak_svg=peak_svg,
        top=top,
        data=embed_json(data),
        css=_CSS,
        js=_JS,
    )


_CSS = """
body{font:14px/1.4 system-ui,Verdana,"DejaVu Sans",sans-serif;margin:0 auto;
max-width:1260px;padding:0 16px 32px;color:#222;background:#fff}
h1{font-size:22px;margin:18px 0 8px}h2{font-size:17px;margin:22px 0 6px}
.facts{display:flex;flex-wrap:wrap;gap:6px 18px;margin:6px 0 10px}
.fact span{color:#666;margin-right:6px}.fact.warn b{color:#b00}
.flame svg{width:100%;height:auto;display:block;border:1px solid #ddd}
.flame g{cursor:pointer}.flame g:hover rect{stroke:#333;stroke-width:.7}
.flame g.match rect{fill:#e0f !important}
.tools{display:flex;gap:8px;align-items:center;margin:8px 0}
.tools input{width:280px;padding:3px 6px}#matches{color:#666}
button{padding:3px 10px;cursor:pointer}button.on{background:#333;color:#fff}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{cursor:pointer;user-select:none;background:#f4f4f4}th.num,td.num{text-align:right}
th.sorted.asc::after{content:" \\25b2"}th.sorted.desc::after{content:" \\25bc"}
td.where{font-family:ui-monospace,monospace;word-break:break-all}
details ol{margin:4px 0;padding-left:22px;font-family:ui-monospace,monospace}
#more{color:#666;margin-top:6px}
"""

_JS = r"""
"use strict";
(function () {
  var DATA = JSON.parse(document.getElementById("pmt-data").textContent);
  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, sign = n < 0 ? "-" : "";
    n = Math.abs(n);
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return sign + (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + " " + units[i];
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  // ---- flame graphs: click to zoom, reset, search
  var CHAR = 7.0, graphs = [];
  Array.prototype.forEach.call(document.querySelectorAll(".flame svg"), function (svg) {
    var boxes = [];
    Array.prototype.forEach.call(svg.querySelectorAll("g[data-name]"), function (g) {
      var r = g.querySelector("rect");
      boxes.push({g: g, rect: r, text: g.querySelector("text"),
        name: g.getAttribute("data-name"), file: g.getAttribute("data-file"),
        x: +r.getAttribute("x"), y: +r.getAttribute("y"), w: +r.getAttribute("width")});
    });
    if (!boxes.length) return;
    var root = boxes.reduce(function (a, b) { return b.y > a.y ? b : a; });
    var graph = {svg: svg, boxes: boxes, left: root.x, width: root.w};
    boxes.forEach(function (b) {
      b.g.addEventListener("click", function () { zoom(graph, b); });
    });
    graphs.push(graph);
  });
  function label(b, w) {
    if (!b.text) {
      b.text = document.createElementNS("http://www.w3.org/2000/svg", "text");
      b.text.setAttribute("y", b.y + 13);
      b.g.appendChild(b.text);
    }
    var room = Math.floor((w - 6) / CHAR), s = b.name;
    if (room < 3) s = ""; else if (s.length > room) s = s.slice(0, room - 2) + "..";
    b.text.textContent = s;
  }
  function place(b, x, w) {
    b.g.style.display = "";
    b.rect.setAttribute("x", x.toFixed(2));
    b.rect.setAttribute("width", w.toFixed(2));
    if (b.text || w > 30) { label(b, w); b.text.setAttribute("x", (x + 3).toFixed(2)); }
  }
  function zoom(graph, target) {
    var eps = 0.01, scale = graph.width / target.w;
    graph.boxes.forEach(function (b) {
      if (b.y > target.y && b.x <= target.x + eps && b.x + b.w >= target.x + target.w - eps) {
        place(b, graph.left, graph.width);  // a caller: full width
      } else if (b.y <= target.y && b.x >= target.x - eps && b.x + b.w <= target.x + target.w + eps) {
        place(b, graph.left + (b.x - target.x) * scale, b.w * scale);
      } else {
        b.g.style.display = "none";
      }
    });
    graph.svg.setAttribute("data-zoomed", target === graph.boxes[0] ? "" : target.name);
  }
  function reset() {
    graphs.forEach(function (graph) {
      graph.boxes.forEach(function (b) { place(b, b.x, b.w); });
      graph.svg.removeAttribute("data-zoomed");
    });
  }
  function search(text) {
    var q = text.trim().toLowerCase(), n = 0;
    graphs.forEach(function (graph) {
      graph.boxes.forEach(function (b) {
        var hit = q !== "" && (b.name.toLowerCase().indexOf(q) >= 0 ||
                               b.file.toLowerCase().indexOf(q) >= 0);
        b.g.classList.toggle("match", hit);
        if (hit) n++;
      });
    });
    document.getElementById("matches").textContent = q ? n + " box(es) match" : "";
  }
  document.getElementById("reset").addEventListener("click", reset);
  var box = document.getElementById("search");
  box.addEventListener("input", function () { search(box.value); });

  // ---- the table of top sites
  var COLS = [
    {key: "bytes", title: "bytes", num: true},
    {key: "blocks", title: "blocks", num: true},
    {key: "share", title: "share", num: true},
    {key: "where", title: "file:line"},
    {key: "function", title: "function"},
    {key: "stack", title: "stack"}
  ];
  var state = {view: "live", key: "bytes", desc: true};
  function value(row, key) {
    if (key === "share") return row.bytes;
    if (key === "where") return row.file + ":" + String(row.line).padStart(9, "0");
    if (key === "stack") return row.stacks.length ? row.stacks[0].frames.length : 0;
    return row[key];
  }
  function stackCell(row) {
    var td = el("td");
    if (!row.stacks.length) return td;
    var d = el("details"), frames = 0;
    row.stacks.forEach(function (s) { frames = Math.max(frames, s.frames.length); });
    d.appendChild(el("summary", row.stacks.length + " stack(s), " + frames + " frame(s)"));
    row.stacks.forEach(function (s) {
      if (row.stacks.length > 1) d.appendChild(el("div", human(s.bytes) + ":"));
      var ol = el("ol");
      s.frames.forEach(function (f) {
        ol.appendChild(el("li", f[0] + ":" + f[1] + (f[2] ? " (" + f[2] + ")" : "")));
      });
      d.appendChild(ol);
    });
    if (row.more_stacks) d.appendChild(el("div", "... and " + row.more_stacks + " lighter stack(s)"));
    td.appendChild(d);
    return td;
  }
  function drawTable() {
    var view = DATA.views[state.view], total = view.total || 1;
    var rows = view.rows.slice();
    rows.sort(function (a, b) {
      var va = value(a, state.key), vb = value(b, state.key);
      var c = va < vb ? -1 : va > vb ? 1 : 0;
      if (c === 0) c = b.bytes - a.bytes;
      else if (state.desc) c = -c;
      return c;
    });
    var head = document.querySelector("#sites thead tr");
    head.textContent = "";
    COLS.forEach(function (col) {
      var th = el("th", col.title, col.num ? "num" : "");
      th.setAttribute("data-key", col.key);
      if (col.key === state.key) th.classList.add("sorted", state.desc ? "desc" : "asc");
      th.addEventListener("click", function () {
        if (state.key === col.key) state.desc = !state.desc;
        else { state.key = col.key; state.desc = !!col.num; }
        drawTable();
      });
      head.appendChild(th);
    });
    var body = document.querySelector("#sites tbody");
    body.textContent = "";
    rows.forEach(function (row) {
      var tr = el("tr");
      tr.setAttribute("data-site", row.file + ":" + row.line);
      tr.setAttribute("data-bytes", row.bytes);
      tr.appendChild(el("td", human(row.bytes), "num"));
      tr.appendChild(el("td", String(row.blocks), "num"));
      tr.appendChild(el("td", (100 * row.bytes / total).toFixed(1) + "%", "num"));
      tr.appendChild(el("td", row.line ? row.file + ":" + row.line : row.file, "where"));
      tr.appendChild(el("td", row.function));
      tr.appendChild(stackCell(row));
      body.appendChild(tr);
    });
    document.getElementById("table-title").textContent =
      "Top sites by line, " + (state.view === "peak" ? "at the peak" : DATA.live_label) +
      ": " + human(view.total) + " in " + view.sites + " stack(s)";
    document.getElementById("more").textContent = view.rows.length < view.lines ?
      "the " + view.rows.length + " largest of " + view.lines + " lines" : "";
    document.getElementById("sites").setAttribute("data-view", state.view);
    ["live", "peak"].forEach(function (v) {
      document.getElementById("show-" + v).classList.toggle("on", v === state.view);
    });
  }
  function fromHash() {
    var v = location.hash === "#peak" ? "peak" : "live";
    if (v !== state.view || !document.querySelector("#sites tbody tr")) {
      state.view = v;
      drawTable();
    }
  }
  ["live", "peak"].forEach(function (v) {
    document.getElementById("show-" + v).addEventListener("click", function () {
      state.view = v;
      drawTable();
      if (location.hash !== "#" + v) location.hash = v;  // back/forward, bookmarks
    });
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
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
<body>
<h1>{title}</h1>
<div class="facts">{facts}</div>
<div class="tools">
<input id="search" type="search" placeholder="highlight a function or file">
<button id="reset" type="button">reset zoom</button>
<span id="matches"></span>
</div>
<h2>Memory {live_label}</h2>
<div class="flame" id="flame-live">
{live_svg}</div>
<h2>Memory live at the peak</h2>
<div class="flame" id="flame-peak">
{peak_svg}</div>
<h2 id="table-title">Top sites</h2>
<div class="tools">
<button id="show-live" type="button">{live_label}</button>
<button id="show-peak" type="button">at the peak</button>
</div>
<table id="sites"><thead><tr></tr></thead><tbody></tbody></table>
<div id="more"></div>
<noscript>The table needs JavaScript; the flame graphs above do not.</noscript>
<script type="application/json" id="pmt-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""
