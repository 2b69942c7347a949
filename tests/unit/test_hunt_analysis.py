"""analyses/hunt.py on made-up measurements: the verdict rules, each with
a twin that must come out the other way (no probe, no C module)."""

import json
import random

import pytest

from pymemtrace.analyses.hunt import Trend, analyse, mann_kendall, theil_sen, without_jumps
from pymemtrace.snapshots.hunt import HuntResult, Measurements
from pymemtrace.snapshots.objects import ObjectCensus, TypeCount

N = 1000


def measured(bytes_, rss=None, blocks=None, malloc=None, censuses=(), seconds=1.0):
    n = len(bytes_)
    return Measurements(
        target="t:f", warmup=20, bytes=list(bytes_), blocks=list(blocks or [0] * n),
        rss=list(rss or [0] * n), seconds=seconds, censuses=list(censuses), malloc=malloc,
    )


def steady(per_call, every=1, start=0, n=N, noise=0, seed=1):
    rnd = random.Random(seed)
    out, value = [], 10_000
    for i in range(n):
        if i >= start and i % every == 0:
            value += per_call
        out.append(value + (rnd.randint(-noise, noise) if noise else 0))
    return out


def saturating(per_call, stop_at, n=N):
    return [10_000 + per_call * min(i, stop_at) for i in range(n)]


# -- the statistics ----------------------------------------------------------


def test_mann_kendall_sees_a_rising_series_and_not_a_flat_or_falling_one():
    assert mann_kendall(list(range(50)))[1] < 1e-6
    assert mann_kendall([5] * 50) == (0.0, 1.0)
    assert mann_kendall(list(range(50, 0, -1)))[1] > 0.99


def test_theil_sen_ignores_a_few_outliers():
    values = [2 * i for i in range(100)]
    values[10] += 10_000
    values[70] -= 10_000
    assert theil_sen(values) == pytest.approx(2.0)


def test_a_lone_jump_is_taken_out_and_steady_rises_are_not():
    series = [0] * 500 + [400_000] * 500
    values, jumps = without_jumps(series, 400)
    assert jumps == [400_000] and values[-1] == 0
    growth = steady(100_000, n=100)  # a leak of big blocks: every call rises as much
    assert without_jumps(growth, 50)[1] == []


# -- verdicts ----------------------------------------------------------------


def test_steady_growth_is_a_leak_with_its_size_and_frequency():
    result = analyse(measured(steady(64)))
    assert result.verdict == "leak"
    assert result.per_call["bytes"] == pytest.approx(64, rel=0.01)
    assert result.frequency == pytest.approx(1.0, abs=0.01)
    assert result.confidence > 0.99


def test_flat_memory_is_no_leak():
    result = analyse(measured([10_000] * N))
    assert result.verdict == "no-leak"
    assert result.frequency == 0.0 and result.leak_bytes_per_call == 0.0


def test_one_call_in_ten_gives_a_frequency_near_a_tenth():
    result = analyse(measured(steady(200, every=10)))
    assert result.verdict == "leak"
    assert result.frequency == pytest.approx(0.1, abs=0.01)
    assert result.per_call["bytes"] == pytest.approx(20, rel=0.05)


def test_growth_that_stops_in_the_first_half_is_no_leak():
    result = analyse(measured(saturating(100, stop_at=300)))
    assert result.verdict == "no-leak"


def test_growth_that_stops_in_the_third_quarter_is_no_leak_and_says_it_stopped():
    result = analyse(measured(saturating(100, stop_at=650)))
    assert result.verdict == "no-leak"
    assert "stopped" in result.reason


def test_growth_that_slows_down_is_inconclusive():
    # rises get rarer and rarer: 1 call in 2, then 1 in 50 in the last quarter
    values, value = [], 0
    for i in range(N):
        if (i < 750 and i % 2 == 0) or (i >= 750 and i % 50 == 0):
            value += 64
        values.append(value)
    assert analyse(measured(values)).verdict == "inconclusive"


def test_a_few_steps_are_no_leak_and_say_more_iterations_would_see_rarer_leaks():
    values = [10_000] * 600 + [11_000] * 100 + [12_000] * 150 + [13_000] * 150
    result = analyse(measured(values))
    assert result.verdict == "no-leak"
    assert "needs more iterations" in result.reason
    # the twin: such steps every 50 calls, ten of them judged, is a leak
    steps = [10_000 + 1000 * (i // 50) for i in range(N)]
    assert analyse(measured(steps)).verdict == "leak"


def test_churn_without_trend_is_no_leak():
    rnd = random.Random(7)
    values = [10_000 + rnd.randint(-500, 500) for _ in range(N)]
    assert analyse(measured(values)).verdict == "no-leak"


def test_a_repeating_pattern_that_returns_to_its_old_highs_is_no_leak():
    # a cache cycling through 300 keys: up for 43 calls, down for 43, flat
    values, value = [], 0
    for i in range(N):
        phase = i % 300
        value += 32 if phase < 43 else -32 if 128 <= phase < 171 else 0
        values.append(value)
    assert analyse(measured(values)).verdict == "no-leak"


def test_churn_on_top_of_a_leak_is_still_a_leak():
    values = steady(32, noise=200)
    assert analyse(measured(values)).verdict == "leak"


def test_a_lone_jump_in_the_second_half_is_no_leak():
    values = [10_000] * 700 + [10_000 + 415_000] * 300
    result = analyse(measured(values))
    assert result.verdict == "no-leak"
    assert result.per_call["bytes"] == pytest.approx(0, abs=1)


def test_malloc_growth_beyond_python_allocators_is_an_unowned_leak():
    flat = [10_000] * N
    result = analyse(measured(flat, malloc=steady(1000)))
    assert result.verdict == "leak"
    assert result.unowned_bytes_per_call == pytest.approx(1000, rel=0.01)
    assert any("pymemtrace native" in note for note in result.notes)
    # the twin: malloc grows with Python's allocators (big objects): no native leak
    both = analyse(measured(steady(1000), malloc=steady(1000)))
    assert both.unowned_bytes_per_call == 0


def test_rss_growth_beyond_python_allocators_is_a_leak_where_malloc_is_unknown():
    result = analyse(measured([10_000] * N, rss=steady(4096)))
    assert result.verdict == "leak" and result.per_call["rss_bytes"] == pytest.approx(4096)
    assert result.unowned_bytes_per_call == pytest.approx(4096, rel=0.01)
    # a few page steps are not a leak
    steps = [0] * 600 + [4096] * 200 + [8192] * 200
    assert analyse(measured([10_000] * N, rss=steps)).verdict == "no-leak"


def test_heap_growth_without_objects_is_unowned():
    half, end = N // 2, N
    census = ObjectCensus({"builtins.list": TypeCount("list", "builtins.list", 10, 560)})
    result = analyse(measured(steady(200), censuses=[(half, census), (end, census)]))
    assert result.verdict == "leak"
    assert result.unowned_bytes_per_call == pytest.approx(200, rel=0.01)
    assert result.types == []


def test_growing_types_are_named_per_call():
    half, end = N // 2, N
    old = ObjectCensus({"builtins.list": TypeCount("list", "builtins.list", 10, 560)})
    new = ObjectCensus({"builtins.list": TypeCount("list", "builtins.list", 510, 28560)})
    result = analyse(measured(steady(56), censuses=[(half, old), (end, new)]))
    assert [(t.type, t.per_call) for t in result.types] == [("list", 1.0)]
    assert result.unowned_bytes_per_call == 0


def test_growth_per_hour_follows_the_call_rate():
    result = analyse(measured(steady(100), seconds=N * 0.001))
    assert result.seconds_per_call == pytest.approx(0.001)
    assert result.growth_per_hour == pytest.approx(100 * 3600 / 0.001, rel=0.01)


# -- the JSON document -------------------------------------------------------

CONTRACT = {"schema", "verdict", "iterations", "frequency", "per_call", "types", "sites",
            "holders", "refcount", "unowned_bytes_per_call"}


def test_the_document_keeps_the_contract_and_round_trips(tmp_path):
    result = analyse(measured(steady(64)))
    doc = json.loads(json.dumps(result.to_dict()))
    assert CONTRACT <= set(doc)
    assert doc["schema"] == 1 and doc["verdict"] == "leak"
    assert set(doc["per_call"]) >= {"bytes", "blocks", "objects", "rss_bytes", "native_bytes"}
    assert doc["per_call"]["native_bytes"] is None
    assert doc["holders"] == [] and doc["refcount"] == []
    path = tmp_path / "hunt.json"
    result.save(path)
    again = HuntResult.load(path)
    assert again.to_dict() == result.to_dict()


@pytest.mark.parametrize("doc, message", [
    ([], "not a JSON object"),
    ({"schema": 2}, "unsupported hunt schema"),
    ({"schema": 1, "verdict": "maybe"}, "unknown verdict"),
    ({"schema": 1, "verdict": "leak"}, "not a hunt document"),
])
def test_a_bad_document_is_one_value_error(doc, message):
    with pytest.raises(ValueError, match=message):
        HuntResult.from_dict(doc)


def test_trend_counts_rises_by_quarter():
    t = Trend(steady(10, every=2), N // 2 + 1)
    assert t.rises == pytest.approx(250, abs=2)
    assert t.rises_q3 == pytest.approx(t.rises_q4, abs=2)


class _Diff:
    def __init__(self, stack, bytes_diff, blocks_diff):
        self.stack, self.bytes_diff, self.blocks_diff = stack, bytes_diff, blocks_diff


def _with_sites(m, diffs, calls=200):
    m.site_diffs, m.site_calls = diffs, calls
    return m


def test_sites_adding_up_to_more_than_the_growth_are_scaled_down_to_it():
    # a str kept per call (54 B) and the list holding them reallocated once
    # (its whole 10 KB array counted): the sites say 104 B, the counters 62 B
    a, b = (("app.py", 8, "handle"),), (("app.py", 9, "other"),)
    m = _with_sites(measured(steady(62)), [_Diff(a, 200 * 104, 200), _Diff(b, 200 * 20, 10)])
    sites = analyse(m).sites
    assert [s.line for s in sites] == [8, 9]
    assert sum(s.bytes_per_call for s in sites) == pytest.approx(62)
    assert sites[0].bytes_per_call / sites[1].bytes_per_call == pytest.approx(104 / 20)
    assert sites[0].blocks_per_call == 1.0
    # the twin: sites within the growth are kept as they are
    m = _with_sites(measured(steady(200)), [_Diff(a, 200 * 104, 200)])
    assert analyse(m).sites[0].bytes_per_call == pytest.approx(104)


def test_no_sites_for_no_leak():
    a = (("app.py", 8, "handle"),)
    m = _with_sites(measured([10_000] * N), [_Diff(a, 2000, 20)])
    assert analyse(m).sites == []
