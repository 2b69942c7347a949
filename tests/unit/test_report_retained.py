"""`pymemtrace report` on Profile/Trace logs: memory still held at the end
(LIFO matching of rises and falls), churn, and the streaming reader.

The logs are hand-made from docs/log_format.md.  Every NEXT: record here
is a RETURN, so its dRSS is charged to its own file, line and function.
"""
import json
import os

import pytest

from pymemtrace.reporters import log_report
from pymemtrace.analyses import profile as profile_analyse
from pymemtrace.snapshots.profile_log import LogFormatError, ProfileLog, iter_records, parse_lines, read_log
from pymemtrace.analyses.profile import RetainedStack, analyse, analyse_file, analyse_lines

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
MiB = 1 << 20
HDR = "HDR:\tEvent\tdEvent\tClock\tWhat\tFile\t#line\tFunction\tRSS\tdRSS\n"
BASE = 100 * MiB


def fixture(name):
    return os.path.join(FIXTURES, name)


def log_lines(moves, last=None, complete=True):
    """A Profile log: FRST at BASE, then one NEXT: RETURN per (function,
    line, dRSS) in moves, then LAST: at (function, line, dRSS) when given."""
    lines = ["SOF\n", "# tracer: Profile\n", HDR, f"FRST:\t0\t+0\t0.000000\tCALL\tapp.py\t1\tmain\t{BASE}\t0\n"]
    mem = BASE
    for event, (function, line, d_mem) in enumerate(moves, 1):
        mem += d_mem
        sign = "+" if d_mem > 0 else ""
        lines.append(f"NEXT:\t{event}\t+1\t{event / 1000:.6f}\tRETURN\tapp.py\t{line}\t{function}\t{mem}\t{sign}{d_mem}\n")
    if last is not None:
        function, line, d_mem = last
        event = len(moves) + 1
        sign = "+" if d_mem > 0 else ""
        lines.append(
            f"LAST:\t{event}\t+1\t{event / 1000:.6f}\tRETURN\tapp.py\t{line}\t{function}\t{mem + d_mem}\t{sign}{d_mem}\n"
        )
    if complete:
        lines.append("EOF\n")
    return lines


def held(sites):
    return [(s.function, s.line, s.bytes) for s in sites]


# --------------------------------------------------------------------------
# LIFO matching


def test_a_fall_cancels_the_most_recent_rise_first():
    # GIVEN a rise in a, then a rise in b, then a fall smaller than b's rise
    analysis = analyse_lines(log_lines([("a", 10, 3 * MiB), ("b", 20, 2 * MiB), ("free", 30, -MiB)]))
    # THEN b gave back 1 MiB (churn) and kept 1 MiB; a kept all of its 3 MiB
    assert held(analysis.retained) == [("a", 10, 3 * MiB), ("b", 20, MiB)]
    assert held(analysis.churn) == [("b", 20, MiB)]
    assert analysis.released == 0


def test_a_fall_spanning_several_rises_pops_them_in_reverse_order():
    # GIVEN rises a 1 MiB, b 2 MiB, c 4 MiB, then a fall of 5 MiB
    analysis = analyse_lines(
        log_lines([("a", 10, MiB), ("b", 20, 2 * MiB), ("c", 30, 4 * MiB), ("free", 40, -5 * MiB)])
    )
    # THEN c is cancelled whole, b in half, a untouched
    assert held(analysis.retained) == [("a", 10, MiB), ("b", 20, MiB)]
    assert held(analysis.churn) == [("c", 30, 4 * MiB), ("b", 20, MiB)]


def test_a_fall_larger_than_the_stack_is_released_memory_not_charged():
    # GIVEN a rise of 1 MiB, then a fall of 3 MiB (memory held before the log)
    analysis = analyse_lines(log_lines([("a", 10, MiB), ("free", 20, -3 * MiB), ("b", 30, 512)]))
    # THEN a churned its 1 MiB, 2 MiB were released, only b's later rise stays
    assert held(analysis.churn) == [("a", 10, MiB)]
    assert analysis.released == 2 * MiB
    assert held(analysis.retained) == [("b", 30, 512)]
    # AND first + retained - released == last
    assert analysis.first_mem + sum(s.bytes for s in analysis.retained) - analysis.released == analysis.last_mem


def test_the_churner_gives_back_and_the_leaker_is_ranked_first():
    # GIVEN a churner that rises and falls 5 MiB per call and a leaker
    # that keeps 100 KB per call, interleaved
    moves = []
    for _ in range(20):
        moves += [("churn", 5, 5 * MiB), ("churn", 7, -5 * MiB), ("leak", 12, 100_000)]
    analysis = analyse_lines(log_lines(moves))
    # THEN only the leaker holds memory at the end; the churner's rises are churn
    assert held(analysis.retained) == [("leak", 12, 20 * 100_000)]
    assert held(analysis.churn) == [("churn", 5, 20 * 5 * MiB)]
    # AND the old ranking by total growth still puts the churner first
    assert analysis.lines[0].function == "churn"


def test_adjacent_rises_of_one_site_share_one_stack_entry():
    # GIVEN three rises of the same line, then one of another line
    stack = RetainedStack()
    for site, delta in [(0, 100), (0, 200), (0, 300), (1, 50)]:
        stack.move(site, delta)
    # THEN the stack holds two entries: the merged rises and the other one
    assert list(stack.sites) == [0, 1] and list(stack.amounts) == [600, 50]
    # WHEN a fall of 400 comes
    stack.move(2, -400)
    # THEN it cancels site 1's 50, then 350 of site 0's merged rises
    assert list(stack.amounts) == [250] and stack.churn[:2] == [350, 50]
    assert stack.retained() == {0: 250} and stack.released == 0


def test_the_same_site_on_separate_entries_is_summed_in_retained():
    analysis = analyse_lines(log_lines([("a", 10, MiB), ("b", 20, MiB), ("a", 10, MiB)]))
    assert held(analysis.retained) == [("a", 10, 2 * MiB), ("b", 20, MiB)]


def test_last_below_the_trigger_is_a_final_rise_charged_to_its_location():
    # GIVEN a LAST: record 3000 bytes above the last NEXT (under the trigger)
    analysis = analyse_lines(log_lines([("a", 10, MiB)], last=("main", 99, 3000)))
    # THEN those bytes are retained by LAST's location
    assert held(analysis.retained) == [("a", 10, MiB), ("main", 99, 3000)]
    assert analysis.last_mem == BASE + MiB + 3000


def test_last_below_the_previous_record_is_a_final_fall():
    # GIVEN a LAST: record 3000 bytes below the last NEXT
    analysis = analyse_lines(log_lines([("a", 10, MiB), ("b", 20, 1000)], last=("main", 99, -3000)))
    # THEN it cancels b's 1000 bytes, then 2000 of a's
    assert held(analysis.retained) == [("a", 10, MiB - 2000)]
    assert held(analysis.churn) == [("a", 10, 2000), ("b", 20, 1000)]


def test_truncated_log_without_last_keeps_what_the_records_say():
    analysis = analyse_lines(log_lines([("a", 10, MiB), ("b", 20, -100)], complete=False))
    assert not analysis.log.complete
    assert held(analysis.retained) == [("a", 10, MiB - 100)]


def test_growth_charged_to_the_event_before_is_retained_there_too():
    # GIVEN a NEXT: CALL whose event before (PREV: LINE) ran the allocation
    lines = [
        "SOF\n", HDR,
        f"FRST:\t0\t+0\t0.000000\tCALL\tapp.py\t1\tf\t{BASE}\t0\n",
        f"PREV:\t4\t+4\t0.001000\tLINE\tapp.py\t3\tf\t{BASE}\t0\n",
        f"NEXT:\t5\t+5\t0.001000\tCALL\tapp.py\t10\tg\t{BASE + MiB}\t+{MiB}\n",
        "EOF\n",
    ]
    # THEN the retained memory is charged to f line 3, as the growth is
    analysis = analyse_lines(lines)
    assert held(analysis.retained) == [("f", 3, MiB)]
    assert (analysis.lines[0].function, analysis.lines[0].line) == ("f", 3)


def test_planted_fixture_retains_build_cache_and_helper_churns():
    # GIVEN the fixture: build_cache +10 MiB, helper +2 MiB, cleanup -1 MiB,
    # build_cache +8 KiB
    analysis = analyse_file(fixture("profile_growth.log"))
    # THEN the fall cancels half of helper's rise (the most recent one)
    assert held(analysis.retained) == [("build_cache", 24, 10 * MiB + 8192), ("helper", 30, MiB)]
    assert held(analysis.churn) == [("helper", 30, MiB)]


# --------------------------------------------------------------------------
# Streaming reader: the same answers as the in-memory analysis


def test_streaming_analysis_matches_the_in_memory_one():
    for name in ("profile_growth.log", "profile_truncated.log", "trace_threads.log"):
        streamed = analyse_file(fixture(name))
        whole = analyse(read_log(fixture(name)))
        assert streamed.functions == whole.functions and streamed.lines == whole.lines, name
        assert streamed.timeline == whole.timeline, name
        assert streamed.top_growths(10) == whole.top_growths(10), name
        assert streamed.retained == whole.retained and streamed.churn == whole.churn, name
        assert streamed.n_records == len(whole.log.records) == whole.n_records, name
        assert (streamed.first_mem, streamed.last_mem, streamed.peak_mem) == (
            whole.first_mem, whole.last_mem, whole.peak_mem), name
        assert streamed.log.messages == whole.log.messages and streamed.log.meta == whole.log.meta, name
        assert streamed.log.records == []


def test_streaming_keeps_only_the_top_growth_events():
    moves = [(f"f{n}", n, (n % 7 + 1) * 10_000) for n in range(1, 50)]
    whole = analyse(parse_lines(log_lines(moves)))
    streamed = analyse_lines(log_lines(moves), top=5)
    assert len(streamed.growths) == 5
    assert streamed.top_growths(5) == whole.top_growths(5)


def test_iter_records_yields_the_records_read_log_keeps():
    log = ProfileLog(path="x")
    with open(fixture("profile_growth.log"), encoding="utf-8", newline="\n") as stream:
        tuples = list(iter_records(stream, log))
    assert [type(t) for t in tuples] == [tuple] * len(tuples)
    assert tuples == [tuple(r.__dict__.values()) for r in read_log(fixture("profile_growth.log")).records]
    assert log.complete and log.meta["tracer"] == "Profile"


def test_streaming_reader_still_rejects_a_corrupt_complete_log():
    lines = log_lines([("a", 10, MiB)])
    lines.insert(-1, "NEXT:\tnot-a-number\n")
    with pytest.raises(LogFormatError) as info:
        analyse_lines(lines, "bad.log")
    assert "bad NEXT" in str(info.value) and "\n" not in str(info.value)


def test_long_timeline_is_decimated_keeping_the_extremes_and_ends(monkeypatch):
    # GIVEN a timeline limit of 16 points and a log of 1000 records
    monkeypatch.setattr(profile_analyse, "TIMELINE_POINTS", 16)
    moves = [("a", 10, 1000 if n % 3 else -500) for n in range(999)]
    moves[500] = ("spike", 11, 50 * MiB)
    moves[501] = ("spike", 12, -50 * MiB)
    analysis = analyse_lines(log_lines(moves), top=None)
    whole = analyse(parse_lines(log_lines(moves)))
    # THEN at most 2 * 16 points (plus the two ends) are kept, in event order
    assert 16 <= len(analysis.timeline) <= 34
    events = [e for e, _, _ in analysis.timeline]
    assert events == sorted(events)
    # AND the first, last, highest and lowest points survive
    assert analysis.timeline[0] == whole.timeline[0] and analysis.timeline[-1] == whole.timeline[-1]
    assert max(v for *_, v in analysis.timeline) == max(v for *_, v in whole.timeline)
    assert min(v for *_, v in analysis.timeline) == min(v for *_, v in whole.timeline)


# --------------------------------------------------------------------------
# Reports: the JSON contract and the text order


def test_json_retained_contract():
    # GIVEN a log where b keeps 3 MiB, a 1 MiB, c gives everything back
    lines = log_lines([("a", 10, MiB), ("c", 30, 2 * MiB), ("c", 31, -2 * MiB), ("b", 20, 3 * MiB)])
    doc = json.loads(log_report.profile_json(analyse_lines(lines)))
    # THEN "retained" is a list of {file, line, function, bytes}, largest first
    assert doc["retained"] == [
        {"file": "app.py", "line": 20, "function": "b", "bytes": 3 * MiB},
        {"file": "app.py", "line": 10, "function": "a", "bytes": MiB},
    ]
    for entry in doc["retained"] + doc["churn"]:
        assert list(entry) == ["file", "line", "function", "bytes"]
        assert isinstance(entry["file"], str) and isinstance(entry["function"], str)
        assert entry["line"] is None or isinstance(entry["line"], int)
        assert isinstance(entry["bytes"], int) and entry["bytes"] > 0
    assert doc["churn"] == [{"file": "app.py", "line": 30, "function": "c", "bytes": 2 * MiB}]
    assert doc["released"] == 0
    # AND every field of schema 1 is still there
    assert doc["schema"] == 1
    for key in ("kind", "path", "tracer", "measure", "message", "complete", "truncated_line", "records",
                "events", "duration", "first", "last", "peak", "functions", "lines", "top_growths",
                "timeline", "messages"):
        assert key in doc, key
    assert doc["records"] == 5


def test_json_retained_is_cut_to_top_and_sorted():
    moves = [(f"f{n}", n, n * 1000) for n in range(1, 30)]
    doc = json.loads(log_report.profile_json(analyse_lines(log_lines(moves)), top=4))
    sizes = [e["bytes"] for e in doc["retained"]]
    assert sizes == sorted(sizes, reverse=True) == [29000, 28000, 27000, 26000]


def test_text_ranks_what_is_still_held_first():
    moves = []
    for _ in range(5):
        moves += [("churn", 5, 5 * MiB), ("churn", 7, -5 * MiB), ("leak", 12, 100_000)]
    text = log_report.profile_text(analyse_lines(log_lines(moves, last=("main", 2, 0))))
    held_at = text.index("Still held at the end")
    churn_at = text.index("Given back later")
    assert held_at < churn_at < text.index("Largest growth events") < text.index("Functions ranked")
    held_section = text[held_at:churn_at]
    assert "app.py:12" in held_section and "leak" in held_section and "churn" not in held_section.split("\n", 1)[1]
    assert "app.py:5" in text[churn_at:text.index("Largest growth events")]


def test_text_says_when_memory_held_before_the_log_was_released():
    text = log_report.profile_text(analyse_lines(log_lines([("free", 10, -2 * MiB)])))
    assert "nothing: every rise was given back" in text
    assert "released 2.0 MiB held before the log started" in text
