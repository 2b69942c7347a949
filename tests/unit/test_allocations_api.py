"""AllocationSnapshot as plain data, and its reporters (no tracker needed)."""

import gzip
import json

import pytest

from pymemtrace.allocations import AllocationSnapshot, Frame, Site, load
from pymemtrace.reporters import allocations_json, allocations_text, collapsed, pprof
from pymemtrace.reporters._units import format_bytes

A = Frame("app.py", 10, "build")
B = Frame("app.py", 20, "main")
C = Frame("lib.py", 5, "helper")


def make_snapshot(live=None, peak=None):
    live = (
        live
        if live is not None
        else [
            Site((A, B), 1000, 10),
            Site((C, A, B), 300, 3),
            Site((Frame("app.py", 11, "build"), B), 200, 2),
        ]
    )
    peak = peak if peak is not None else live + [Site((C, B), 5000, 50)]
    return AllocationSnapshot(
        sites=live,
        peak_sites=peak,
        peak_bytes=sum(s.bytes for s in peak),
        bytes=sum(s.bytes for s in live),
        mode="exact",
        depth=16,
        stats={"memory": 4096, "traces": 15},
    )


def test_group_by_line_function_file_and_stack():
    snap = make_snapshot()
    by_line = snap.group_by("line")
    assert [(s.file, s.line, s.bytes) for s in by_line] == [
        ("app.py", 10, 1000),
        ("lib.py", 5, 300),
        ("app.py", 11, 200),
    ]
    by_function = snap.group_by("function")
    assert [(s.function, s.bytes) for s in by_function] == [
        ("build", 1200),
        ("helper", 300),
    ]
    by_file = snap.group_by("file")
    assert [(s.file, s.bytes, s.blocks) for s in by_file] == [
        ("app.py", 1200, 12),
        ("lib.py", 300, 3),
    ]
    assert len(snap.group_by("stack")) == 3
    with pytest.raises(ValueError):
        snap.group_by("module")


def test_top_n_and_peak():
    snap = make_snapshot()
    assert [s.line for s in snap.top(2)] == [10, 5]
    assert snap.top(1, peak=True)[0].bytes == 5300  # lib.py:5 at the peak


def test_diff_reports_growth_first():
    old = make_snapshot()
    new = make_snapshot(live=[Site((A, B), 1500, 15), Site((C, A, B), 300, 3)])
    diff = new.diff(old)
    assert [(d.frame.line, d.bytes_diff, d.blocks_diff) for d in diff] == [
        (10, 500, 5),
        (11, -200, -2),
    ]
    assert new.diff(new) == []


def test_json_contract_fields_and_order():
    snap = make_snapshot(
        live=[Site((C,), 1, 1), Site((A, B), 1000, 10), Site((B,), 50, 1)]
    )
    doc = json.loads(allocations_json.render(snap))
    assert doc["schema"] == 1
    assert isinstance(doc["peak_bytes"], int)
    assert [s["bytes"] for s in doc["sites"]] == [1000, 50, 1]
    assert [s["bytes"] for s in doc["peak_sites"]] == sorted(
        (s["bytes"] for s in doc["peak_sites"]), reverse=True
    )
    first = doc["sites"][0]
    assert (first["file"], first["line"], first["function"]) == ("app.py", 10, "build")
    assert first["stack"] == [
        {"file": "app.py", "line": 10, "function": "build"},
        {"file": "app.py", "line": 20, "function": "main"},
    ]
    assert first["blocks"] == 10


def test_save_and_load_round_trip(tmp_path):
    snap = make_snapshot()
    path = tmp_path / "snap.json"
    snap.save(path)
    again = load(path)
    assert again.group_by("stack") == snap.group_by("stack")
    assert again.peak_bytes == snap.peak_bytes
    assert again.stats == snap.stats
    with pytest.raises(ValueError, match="schema"):
        AllocationSnapshot.from_dict({"schema": 99})


def test_collapsed_format_root_first_leaf_last():
    text = collapsed.render(
        [
            Site((C, A, B), 300, 3),
            Site((A, B), 1000, 10),
            Site((A, B), 24, 1),
            Site((B,), 0, 0),
        ]
    )
    assert text.splitlines() == [
        "app.py:main:20;app.py:build:10 1024",
        "app.py:main:20;app.py:build:10;lib.py:helper:5 300",
    ]
    assert make_snapshot().to_collapsed(peak=True).count("\n") == 4


def test_text_report_shows_human_sizes():
    text = allocations_text.render(make_snapshot(), top=2, live_title="live at exit")
    assert "live at exit: 1.5 KiB in 3 site(s)" in text
    assert "app.py:10 (build)" in text
    assert "1 more site(s)" in text
    assert format_bytes(10 * 1024 * 1024) == "10.0 MiB"
    assert format_bytes(-2048) == "-2.0 KiB"


# -- a tiny protobuf reader, enough to check the pprof structure ----------


def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _fields(buf):
    i, out = 0, []
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((field, value))
    return out


def _packed(buf):
    i, out = 0, []
    while i < len(buf):
        v, i = _varint(buf, i)
        out.append(v)
    return out


def test_pprof_decodes_to_the_sites():
    sites = [Site((A, B), 1000, 10), Site((C, A, B), 300, 3)]
    data = pprof.render(sites)
    assert data[:2] == b"\x1f\x8b"  # gzip
    fields = _fields(gzip.decompress(data))
    strings = [v.decode() for f, v in fields if f == 6]
    assert strings[0] == ""
    types = [[strings[v] for _, v in _fields(m)] for f, m in fields if f == 1]
    assert types == [["inuse_space", "bytes"], ["inuse_objects", "count"]]
    functions = {}
    for f, m in fields:
        if f == 5:
            d = dict(_fields(m))
            functions[d[1]] = (strings[d[4]], strings[d[2]])
    locations = {}
    for f, m in fields:
        if f == 4:
            d = _fields(m)
            loc_id = dict(d)[1]
            line = dict(_fields(dict(d)[4]))
            locations[loc_id] = functions[line[1]] + (line[2],)
    samples = []
    for f, m in fields:
        if f == 2:
            d = dict(_fields(m))
            stack = [locations[i] for i in _packed(d[1])]
            samples.append((stack, _packed(d[2])))
    assert samples == [
        ([("app.py", "build", 10), ("app.py", "main", 20)], [1000, 10]),
        (
            [("lib.py", "helper", 5), ("app.py", "build", 10), ("app.py", "main", 20)],
            [300, 3],
        ),
    ]


def _boxes(svg_text):
    """(tooltip, x, width) of every box of a flame graph."""
    import xml.etree.ElementTree as ET

    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.fromstring(svg_text)
    boxes = []
    for g in root.findall("s:g", ns):
        rect = g.find("s:rect", ns)
        boxes.append((g.find("s:title", ns).text, float(rect.get("x")), float(rect.get("width"))))
    return boxes


def test_flamegraph_widths_follow_bytes_and_callers_carry_callees():
    # GIVEN sites: build() under main() holds 1000 + 200 bytes (two lines),
    # helper() under build() under main() 300 bytes
    svg_text = make_snapshot().to_flamegraph()
    boxes = _boxes(svg_text)
    width_of = {}
    for tip, x, w in boxes:
        width_of.setdefault(tip.split(" ")[0].rstrip(":"), []).append((x, w))
    # THEN the root spans everything, main() is as wide as the root (all
    # stacks go through it), and helper() is 300/1500 of it
    (root_x, root_w), = width_of["all"]
    (main_x, main_w), = width_of["main"]
    assert abs(main_w - root_w) < 0.01 and abs(main_x - root_x) < 0.01
    helper = [w for _, w in width_of["helper"]]
    assert len(helper) == 1 and abs(helper[0] / root_w - 300 / 1500) < 0.001
    # build() at lines 10 and 11 are two boxes whose widths add to 1500 bytes'
    builds = sorted(w for _, w in width_of["build"])
    assert abs(sum(builds) / root_w - 1.0) < 0.001
    # the heaviest child is drawn first (leftmost)
    (b_big_x, b_big_w), = [(x, w) for x, w in width_of["build"] if w == max(builds)]
    assert abs(b_big_x - main_x) < 0.01
    # tooltips name the site and its share
    assert any("helper (lib.py:5)" in tip and "20.0%" in tip for tip, _, _ in boxes)


def test_flamegraph_of_the_peak_and_of_nothing():
    # GIVEN a snapshot whose peak had 5000 more bytes in helper() called
    # straight from main()
    snap = make_snapshot()
    boxes = _boxes(snap.to_flamegraph(peak=True))
    # THEN the peak's graph has two helper() boxes, the big one 5000/6500
    # of the root
    (root_w,) = [w for tip, _, w in boxes if tip.startswith("all")]
    helpers = sorted(w for tip, _, w in boxes if tip.startswith("helper"))
    assert len(helpers) == 2
    assert abs(helpers[1] / root_w - 5000 / 6500) < 0.001
    # AND a snapshot with nothing live gives a valid, box-less SVG that says so
    empty = make_snapshot(live=[], peak=[]).to_flamegraph()
    assert "no memory live" in empty and _boxes(empty) == []


def test_flamegraph_escapes_names():
    odd = Frame('a<b>&"c".py', 1, "<lambda>")
    text = make_snapshot(live=[Site((odd,), 10, 1)], peak=[]).to_flamegraph()
    boxes = _boxes(text)  # parses: the names were escaped
    assert any("<lambda>" in tip for tip, _, _ in boxes)
