"""pymemtrace.analyses.process: `process` keeps running statistics and a
bounded series, so its memory is flat however long it runs (issue 9, point 4).

A day at the fastest interval is fed synthetically (no sleeping): the
series never holds more than its bound, and its minimum, maximum and peak
time are exactly those of everything fed.
"""
import random
import xml.etree.ElementTree as ET

import pytest

from pymemtrace.analyses.process import MAX_LABELS, ProcessRun, Series, summarise
from pymemtrace.cli.process import MIN_INTERVAL
from pymemtrace.reporters import process_chart

DAY = 86400
SVG = "{http://www.w3.org/2000/svg}"


def record(t, rss, label=None, pid=7):
    r = {"timestamp": "2024-01-01 00:00:00.000000", "memory_info": {"rss": rss},
         "cpu_times": {"user": 0.0, "system": 0.0}, "elapsed_time": t, "pid": pid}
    if label is not None:
        r["label"] = label
    return r


def test_add_and_extend_agree_and_keep_the_extremes():
    # GIVEN a random walk with ties  WHEN fed point by point and in chunks
    rng = random.Random(9)
    ys = []
    y = 0
    for _ in range(50000):
        y += rng.choice((-1, 0, 1))
        ys.append(y)
    xs = [i * 0.001 for i in range(len(ys))]
    one, many = Series(64), Series(64)
    for x, y in zip(xs, ys):
        one.add(x, y)
    for start in range(0, len(ys), 777):
        many.extend(xs[start:start + 777], ys[start:start + 777])
    # THEN both hold the same points, at most 64, with the exact extremes
    assert one.points() == many.points()
    points = one.points()
    assert len(points) <= 64 and one.count == len(ys)
    assert min(p[1] for p in points) == min(ys)
    assert max(p[1] for p in points) == max(ys)
    # the first time the maximum was reached survives
    assert one.maximum() == (xs[ys.index(max(ys))], max(ys))
    assert points[0] == (xs[0], ys[0]) and points[-1] == (xs[-1], ys[-1])
    assert [p[0] for p in points] == sorted(p[0] for p in points)


def test_small_series_are_kept_whole():
    s = Series(16)
    for i in range(10):
        s.add(float(i), float(i * i))
    assert s.points() == [(float(i), float(i * i)) for i in range(10)]
    with pytest.raises(ValueError):
        Series(3)


@pytest.mark.slow
def test_a_day_at_the_fastest_interval_stays_bounded_with_exact_extremes():
    # GIVEN a day of samples at the fastest interval `process` allows,
    # delivered as the logging thread delivers them (one batch a second),
    # with one spike and one dip planted in the middle of the day
    per_batch = round(1 / MIN_INTERVAL)
    base = [100 * 2**20 + (i % 37) * 4096 for i in range(per_batch)]
    offsets = [i * MIN_INTERVAL for i in range(per_batch)]
    spike_at, dip_at = (DAY // 3, 123), (2 * DAY // 3, 456)
    series = Series(4096)
    sizes = []
    for second in range(DAY):
        ys = base
        if second in (spike_at[0], dip_at[0]):
            ys = list(base)
            if second == spike_at[0]:
                ys[spike_at[1]] = 900 * 2**20
            else:
                ys[dip_at[1]] = 2**20
        series.extend([second + o for o in offsets], ys)
        if second % 3600 == 0:
            sizes.append(len(series._buckets))
    # THEN it never held more than its bound (buckets fill up to it, then
    # merge in pairs: the size goes up and down, never past the bound)
    assert series.count == DAY * per_batch
    points = series.points()
    assert len(points) <= 4096
    assert max(sizes) <= 4096 // 2 and min(sizes[1:]) >= 4096 // 4
    # AND the chart's minimum, maximum and peak time are exact
    assert max(points, key=lambda p: p[1]) == (spike_at[0] + offsets[spike_at[1]], 900 * 2**20)
    assert min(points, key=lambda p: p[1]) == (dip_at[0] + offsets[dip_at[1]], 2**20)
    svg = process_chart.series_chart(series, [], "a day")
    data = ET.fromstring(svg).find(f".//{SVG}metadata").text.split()
    ys_drawn = [float(p.split(",")[1]) for p in data]
    assert max(ys_drawn) == 900.0 and min(ys_drawn) == 1.0  # MiB


def test_process_run_keeps_statistics_not_samples():
    # GIVEN many records with a label each  WHEN fed to the run
    run = ProcessRun(max_points=100)
    records = [record(i * 0.001, 2**20 + (i % 1000) * 10, label=f"l{i}") for i in range(20000)]
    records[5000] = record(5.0, 50 * 2**20)
    for r in records:
        run.add("SAMPLE", r)
    s = run.summaries[7]
    # THEN the statistics are those of every record, the labels are capped
    # (and counted), the series is bounded
    whole = summarise(records)[7]
    assert (s.samples, s.first_rss, s.last_rss, s.min_rss, s.max_rss) == (
        whole.samples, whole.first_rss, whole.last_rss, whole.min_rss, whole.max_rss)
    assert s.t_peak == 5.0 and s.max_rss == 50 * 2**20
    assert len(s.labels) == MAX_LABELS and s.label_count == 19999
    assert len(run.series[7].points()) <= 100
    assert run.samples == 20000


def test_a_log_is_summarised_as_it_is_read(tmp_path, capsys, monkeypatch):
    # GIVEN a log of many records, read through a generator of lines
    import json

    from pymemtrace import process
    from pymemtrace.snapshots.process_log import RecordReader

    def lines():
        for i in range(100000):
            yield json.dumps(record(i * 0.001, 2**20 + i)) + "\n"
        yield "{broken\n"

    reader = RecordReader(lines())
    # WHEN summarised straight from the reader (no list of records)
    summaries = summarise(reader)
    assert summaries[7].samples == 100000 and summaries[7].max_rss == 2**20 + 99999
    assert reader.skipped == 1
    # AND `python -m pymemtrace.process LOG` (no OUTDIR) reads that way
    log = tmp_path / "run.jsonl"
    log.write_text("".join(json.dumps(record(i, 2**20 * (i + 1))) + "\n" for i in range(3)))

    def no_whole_reads(path):
        raise AssertionError("read whole")

    monkeypatch.setattr(process, "read_log", no_whole_reads)
    assert process.summarise_log(str(log)) == 0
    with pytest.raises(AssertionError, match="read whole"):
        process.summarise_log(str(log), str(tmp_path / "plots"))  # the twin needs them all
    assert "+2.0 MiB" in capsys.readouterr().out
