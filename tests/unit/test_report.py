"""Log readers, analyses and reporters behind `pymemtrace report` (pure Python).

The fixture logs in tests/fixtures/ are written by hand from
docs/log_format.md (Profile/Trace) and docs/reference_tracing.md.
"""
import json
import os
import xml.etree.ElementTree as ET

import pytest

from pymemtrace.reporters import log_report
from pymemtrace.reporters.svg_chart import timeline_svg
from pymemtrace.snapshots.profile_log import LogFormatError, parse_lines, read_log
from pymemtrace.analyses.profile import analyse
from pymemtrace.analyses.reftrace import analyse_file, analyse_lines

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
MiB = 1 << 20


def fixture(name):
    return os.path.join(FIXTURES, name)


HDR = "HDR:\tEvent\tdEvent\tClock\tWhat\tFile\t#line\tFunction\tRSS\tdRSS\n"


def rec(tag, event, what, func, line, rss, drss, d_event=1):
    sign = "+" if drss > 0 else ""
    return f"{tag}\t{event}\t+{d_event}\t{event / 1000:.6f}\t{what}\tapp.py\t{line}\t{func}\t{rss}\t{sign}{drss}\n"


# --------------------------------------------------------------------------
# Profile/Trace reader


def test_reads_every_record_of_a_profile_log():
    log = read_log(fixture("profile_growth.log"))
    assert log.complete and not log.truncated_line
    assert log.message == "profile of leaky.py: build a cache"
    assert log.meta["tracer"] == "Profile" and log.meta["d_rss_trigger"] == "4096"
    assert [r.tag for r in log.records] == ["FRST", "PREV", "NEXT", "PREV", "NEXT", "NEXT", "PREV", "NEXT", "LAST"]
    first = log.records[0]
    assert (first.event, first.what, first.function, first.rss, first.d_rss) == (0, "CALL", "main", 20 * MiB, 0)
    assert log.records[5].d_rss == -MiB
    assert [m.text for m in log.messages] == ["after helper\tdone"]


def test_truncated_profile_log_is_read_up_to_the_last_whole_record():
    log = read_log(fixture("profile_truncated.log"))
    assert not log.complete and log.truncated_line
    assert log.records[-1].tag == "NEXT" and log.records[-1].event == 20


def test_thread_column_heap_measure_and_utf8_names():
    log = read_log(fixture("trace_threads.log"))
    assert log.threaded and log.measure == "HEAP"
    assert {r.thread for r in log.records} == {7}
    assert log.records[0].function == "grüße" and log.records[0].file == "héllo.py"


def test_d_event_without_plus_sign_is_accepted():
    lines = ["SOF\n", HDR, "FRST:\t0\t0\t0.0\tCALL\tapp.py\t1\tf\t100\t0\n", "EOF\n"]
    assert parse_lines(lines).records[0].d_event == 0


@pytest.mark.parametrize(
    "lines, reason",
    [
        ([], "no SOF"),
        (["hello\n", "world\n"], "no SOF"),
        (["SOF\n", "EOF\n"], "no HDR"),
        (["SOF\n", "HDR:\tA\tB\n"], "HDR"),
        (["SOF\n", HDR, "NEXT:\t1\t+1\tx\n", "NEXT:\t2\t+1\tx\n"], "bad NEXT"),
        (["SOF\n", HDR, "NEXT:\tnot-a-number\n", "EOF\n"], "bad NEXT"),
    ],
)
def test_not_a_profile_log_raises_a_one_line_error(lines, reason):
    with pytest.raises(LogFormatError) as info:
        parse_lines(lines, "x.log")
    assert reason in str(info.value) and "\n" not in str(info.value)


def test_a_bad_last_line_without_eof_is_a_truncation():
    log = parse_lines(["SOF\n", HDR, rec("FRST:", 0, "CALL", "f", 1, 100, 0), "NEXT:\t5\t+5\t0.0\n"])
    assert log.truncated_line and len(log.records) == 1


# --------------------------------------------------------------------------
# Profile/Trace analysis


def test_planted_growth_ranks_first():
    # GIVEN a profile where build_cache grows 10 MiB and helper 2 MiB
    analysis = analyse(read_log(fixture("profile_growth.log")))
    # THEN functions and lines rank build_cache first, helper second
    assert [(t.function, t.growth) for t in analysis.functions] == [
        ("build_cache", 10 * MiB + 8192),
        ("helper", 2 * MiB),
    ]
    assert analysis.lines[0].line == 24 and analysis.lines[0].function == "build_cache"
    top = analysis.top_growths(1)[0]
    assert top.record.event == 9 and top.d_rss == 10 * MiB
    assert top.before.what == "C_RETURN"
    assert (analysis.first_mem, analysis.peak_mem) == (20 * MiB, 32 * MiB)
    assert analysis.events == 42


def test_growth_seen_at_a_call_is_charged_to_the_code_before_it():
    # GIVEN a CALL of g whose event before was a LINE of f: the memory
    # appeared while that line of f ran
    log = parse_lines(
        ["SOF\n", HDR,
         rec("FRST:", 0, "CALL", "f", 1, 100, 0),
         rec("PREV:", 4, "LINE", "f", 3, 100, 0),
         rec("NEXT:", 5, "CALL", "g", 10, 100 + 5 * MiB, 5 * MiB),
         rec("PREV:", 8, "RETURN", "h", 20, 100 + 5 * MiB, 0),
         rec("NEXT:", 9, "CALL", "k", 30, 100 + 6 * MiB, MiB),
         "EOF\n"]
    )
    analysis = analyse(log)
    first, second = analysis.growths
    assert (first.charged.function, first.charged.line, first.approximate) == ("f", 3, False)
    # after a RETURN the code that ran is unknown: NEXT, marked approximate
    assert (second.charged.function, second.approximate) == ("k", True)


def test_previous_written_record_serves_as_prev_when_adjacent():
    log = parse_lines(
        ["SOF\n", HDR,
         rec("FRST:", 0, "LINE", "f", 1, 100, 0),
         rec("NEXT:", 1, "LINE", "f", 2, 100 + MiB, MiB),
         "EOF\n"]
    )
    growth = analyse(log).growths[0]
    assert growth.before.tag == "FRST" and growth.charged.line == 1


def test_profile_json_has_schema_and_rankings():
    analysis = analyse(read_log(fixture("profile_growth.log")))
    doc = json.loads(log_report.profile_json(analysis, top=1))
    assert doc["schema"] == 1 and doc["kind"] == "profile"
    assert doc["functions"][0]["function"] == "build_cache"
    assert len(doc["functions"]) == 1
    assert doc["top_growths"][0]["record"]["d_rss"] == 10 * MiB
    assert doc["timeline"][0] == {"event": 0, "clock": 0.00001, "value": 20 * MiB}


def test_profile_text_names_the_growth_and_truncation():
    text = log_report.profile_text(analyse(read_log(fixture("profile_truncated.log"))))
    assert "TRUNCATED" in text
    assert "build_cache" in text and "+10.0 MiB" in text


# --------------------------------------------------------------------------
# ReferenceTracing analysis


def test_reference_trace_types_with_net_growth_and_their_sites():
    analysis = analyse_file(fixture("reftrace_leak.log"))
    assert analysis.complete and analysis.message == "reference trace of leaky.py"
    assert [(t.name, t.live, t.created, t.destroyed) for t in analysis.growing_types()] == [
        ("leaky.Node", 3, 4, 1)
    ]
    assert analysis.types["leaky.Tmp"].live == 0
    assert analysis.n_inferred == 1
    (site, tname, alive, created), = analysis.survivor_sites()
    assert (str(site), tname, alive, created) == ("leaky.py:7:grow", "leaky.Node", 3, 3)
    assert analysis.trailer["leaky.Node"] == (3, 4, 1)
    assert [n.text for n in analysis.messages] == ["half way"]


def test_truncated_reference_trace():
    analysis = analyse_file(fixture("reftrace_truncated.log"))
    assert not analysis.complete and analysis.truncated_line
    assert analysis.types["leaky.Node"].live == 2


def test_new_at_an_open_address_closes_the_old_object():
    lines = [
        "SOF\n",
        "HDR:\tEvent\tClock\tAddress\tType\tLive\tFile\t#line\tFunction\n",
        "NEW:\t1\t0.1\t0x10\tA\t1\tx.py\t1\tf\n",
        "NEW:\t2\t0.2\t0x10\tA\t1\tx.py\t2\tf\n",
        "EOF\n",
    ]
    analysis = analyse_lines(lines)
    assert analysis.types["A"].live == 1
    (site, _, alive, _), = analysis.survivor_sites()
    assert site.line == 2 and alive == 1


def test_not_a_reference_trace():
    with pytest.raises(LogFormatError):
        analyse_lines(["SOF\n", HDR, "EOF\n"], "p.log")


def test_reference_trace_json_has_schema():
    doc = json.loads(log_report.ref_trace_json(analyse_file(fixture("reftrace_leak.log"))))
    assert doc["schema"] == 1 and doc["kind"] == "reference_tracing"
    assert doc["growing_types"] == [{"type": "leaky.Node", "live": 3, "created": 4, "destroyed": 1}]
    assert doc["survivor_sites"][0]["line"] == 7


# --------------------------------------------------------------------------
# Reporters


def test_sparkline_shape():
    assert log_report.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert log_report.sparkline([5, 5, 5]) == "▁▁▁"
    assert len(log_report.sparkline(list(range(1000)), width=40)) == 40
    assert log_report.sparkline([]) == ""


def test_timeline_svg_is_well_formed_xml():
    svg = timeline_svg([(0, 10 * MiB), (5, 12 * MiB), (9, 11 * MiB)], title="a < b & c")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "MiB" in svg and "a &lt; b &amp; c" in svg
    assert ET.fromstring(timeline_svg([])).tag.endswith("svg")
