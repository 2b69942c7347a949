"""pymemtrace.process: log_process, ProcessLoggingThread, log reading, charts."""
import gc
import json
import logging
import mmap
import os
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

import psutil
import pytest

from pymemtrace import process
from pymemtrace.reporters import svg_chart

MiB = 1 << 20
# The seed's own pattern for a record line: ours must match it.
SEED_RE = re.compile(r"^.+?ProcessLoggingThread-JSON(-START|-STOP)?\s*(.+)$")


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines():
    """Lines logged on pymemtrace.process, formatted like a log file."""
    handler = ListHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("pymemtrace.process")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler.lines
    log.removeHandler(handler)
    log.setLevel(old_level)


def parsed(lines):
    """(event, record) per seed-style record line."""
    out = []
    for line in lines:
        m = SEED_RE.match(line)
        if m:
            out.append(({"-START": "START", "-STOP": "STOP"}.get(m.group(1), "SAMPLE"),
                         json.loads(m.group(2))))
    return out


def wait_for(predicate, polls=2000, step=0.005):
    for _ in range(polls):
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def task_count():
    return len(os.listdir("/proc/self/task"))


def test_records_start_samples_stop_with_the_seed_keys(log_lines):
    # GIVEN logging on  WHEN a block runs under log_process
    with process.log_process(interval=0.01, batch=0.02) as thread:
        assert wait_for(lambda: thread.records_written >= 3)
    events = parsed(log_lines)
    # THEN the first record is START, the last STOP, samples in between
    assert events[0][0] == "START" and events[-1][0] == "STOP"
    assert {e for e, _ in events[1:-1]} == {"SAMPLE"}
    for _, record in events:
        assert set(record) >= {"timestamp", "memory_info", "cpu_times", "elapsed_time", "pid"}
        assert record["pid"] == os.getpid()
        assert record["memory_info"]["rss"] > 0
        assert set(record["cpu_times"]) >= {"user", "system"}
        time.strptime(record["timestamp"].split(".")[0], "%Y-%m-%d %H:%M:%S")
    elapsed = [r["elapsed_time"] for _, r in events]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    assert thread.uses_native_sampler


def test_nothing_is_logged_at_a_level_that_is_off(log_lines):
    logging.getLogger("pymemtrace.process").setLevel(logging.WARNING)
    with process.log_process(interval=0.01, batch=0.02, log_level=logging.DEBUG) as thread:
        assert wait_for(lambda: thread.records_written >= 3)
    assert parsed(log_lines) == []


def test_messages_label_the_next_record(log_lines, tmp_path):
    path = tmp_path / "run.jsonl"
    with process.log_process(interval=0.01, batch=0.02, path=path, label="the start") as thread:
        thread.add_message_to_queue("phase one")
        assert wait_for(lambda: thread.records_written >= 3)
        thread.add_message_to_queue("phase two")
        thread.add_message_to_queue("phase three")
    logged = [(e, r.get("label")) for e, r in parsed(log_lines)]
    assert logged[0] == ("START", "the start")
    labels = [label for _, label in logged if label is not None]
    assert labels == ["the start", "phase one", "phase two", "phase three"]
    # a plain record without a message has no label key
    assert any(label is None for e, label in logged if e == "SAMPLE")
    # the file holds the same labels
    lines = path.read_text().splitlines()
    assert [json.loads(x).get("label") for x in lines if "label" in json.loads(x)] == labels


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="ASan hands freed memory back on its own schedule: RSS may fall while pages are touched")
def test_log_process_sees_rss_grow_by_the_memory_touched(tmp_path):
    path = tmp_path / "grow.jsonl"
    size = 48 * MiB
    with process.log_process(interval=0.005, batch=0.02, path=path) as thread:
        # a sample from before the pages are touched (on a loaded machine the
        # sampler's first read can otherwise land in the middle of them)
        assert wait_for(lambda: thread.records_written >= 2)
        block = mmap.mmap(-1, size)
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1
        written = thread.records_written
        assert wait_for(lambda: thread.records_written > written + 2)
    block.close()
    records = process.read_log(path).records
    start = min(r["memory_info"]["rss"] for r in records)
    peak = max(r["memory_info"]["rss"] for r in records)
    assert 0.9 * size <= peak - start <= 1.3 * size
    summary = process.summarise(records)[os.getpid()]
    assert summary.max_rss - summary.min_rss == peak - start


def lines_of(path):
    with open(path, encoding="utf-8") as stream:
        return stream.read().splitlines()


def test_jsonl_is_written_per_record_under_a_temporary_name_then_renamed(tmp_path):
    path = tmp_path / "live.jsonl"
    with process.log_process(interval=0.01, batch=0.02, path=path) as thread:
        # WHILE the thread runs: the records are in the temporary file next
        # to the path, every line already complete; the path is not there yet
        partial = thread.partial_path
        assert os.path.dirname(partial) == str(tmp_path) and partial.endswith(".tmp")
        assert wait_for(lambda: len(lines_of(partial)) >= 4)
        lines = lines_of(partial)
        assert thread.is_alive()
        assert not path.exists()
    records = [json.loads(line) for line in lines]
    assert records[0]["event"] == "START"
    assert all(r["event"] == "SAMPLE" for r in records[1:])
    # WHEN it stops  THEN the file has its name, the temporary one is gone
    final = [json.loads(line) for line in path.read_text().splitlines()]
    assert final[-1]["event"] == "STOP"
    assert "dropped" in final[-1]
    assert final[:len(records)] == records
    assert not os.path.exists(partial)
    assert [p.name for p in tmp_path.iterdir()] == ["live.jsonl"]
    assert thread.partial_path is None


def test_a_log_cut_short_by_a_write_error_leaves_no_file(tmp_path, monkeypatch):
    # GIVEN a log whose writes fail after the START record (a full disk)
    from pymemtrace.snapshots import process_log

    path = tmp_path / "full.jsonl"
    real_write = process_log.StreamedFile.write
    writes = []

    def write(self, text):
        writes.append(text)
        if len(writes) > 2:
            raise OSError(28, "No space left on device", self.path)
        real_write(self, text)

    monkeypatch.setattr(process_log.StreamedFile, "write", write)
    with process.log_process(interval=0.01, batch=0.02, path=path) as thread:
        assert wait_for(lambda: thread.error is not None or len(writes) > 3)
    # THEN the error is kept, and neither the path nor a temporary file remains
    assert isinstance(thread.error, OSError) and thread.error.errno == 28
    assert list(tmp_path.iterdir()) == []


def test_the_thread_stops_when_the_body_raises(tmp_path):
    path = tmp_path / "raise.jsonl"
    threads_before = threading.active_count()
    with pytest.raises(ZeroDivisionError):
        with process.log_process(interval=10.0, path=path) as thread:
            assert wait_for(lambda: thread._sampler.tid is not None)
            sampler_tid = thread._sampler.tid
            raise ZeroDivisionError("planted")
    assert not thread.is_alive()
    assert not os.path.exists(f"/proc/self/task/{sampler_tid}")
    assert threading.active_count() == threads_before
    events = [json.loads(x)["event"] for x in path.read_text().splitlines()]
    assert events[0] == "START" and events[-1] == "STOP"


def test_no_thread_or_descriptor_left_behind(tmp_path):
    proc = psutil.Process()
    with process.log_process(interval=0.01, path=tmp_path / "warm.jsonl"):
        pass
    gc.collect()
    fds, tasks, threads = proc.num_fds(), task_count(), threading.active_count()
    for i in range(5):
        with process.log_process(interval=0.001, path=tmp_path / f"{i}.jsonl") as t:
            t.add_message_to_queue("x")
    gc.collect()
    assert proc.num_fds() == fds
    assert task_count() == tasks
    assert threading.active_count() == threads


@pytest.mark.parametrize("interval", [0, -0.5, float("nan"), float("inf"), "1", True, None])
def test_bad_interval_is_a_value_error(interval):
    with pytest.raises(ValueError, match="interval must be"):
        process.ProcessLoggingThread(interval=interval)
    with pytest.raises(ValueError, match="interval must be"):
        with process.log_process(interval=interval):
            pass  # pragma: no cover


def test_bad_log_level_is_a_value_error():
    with pytest.raises(ValueError, match="log_level"):
        process.ProcessLoggingThread(log_level="LOUD")


def test_bad_pids():
    with pytest.raises(ValueError, match="pid"):
        process.ProcessLoggingThread(pid=0)
    with pytest.raises(ValueError, match="pid"):
        process.ProcessLoggingThread(pid="1")
    # a pid that existed and is gone
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProcessLookupError, match=f"no process with pid {child.pid}"):
        with process.log_process(pid=child.pid):
            pass  # pragma: no cover


def test_unwritable_path_is_an_oserror_naming_it_and_leaves_nothing(tmp_path):
    proc = psutil.Process()
    bad = tmp_path / "missing-dir" / "run.jsonl"
    fds, tasks = proc.num_fds(), task_count()
    with pytest.raises(OSError) as info:
        with process.log_process(interval=0.01, path=bad):
            pass  # pragma: no cover
    assert info.value.filename == str(bad)
    assert proc.num_fds() == fds and task_count() == tasks


def test_own_pid_uses_the_c_sampler():
    thread = process.ProcessLoggingThread(pid=os.getpid())
    assert thread.uses_native_sampler and thread.pid == os.getpid()


def test_another_process_is_watched_through_psutil(tmp_path):
    # GIVEN a child that grows by 32 MiB after a moment
    code = ("import time; time.sleep(0.3); b = bytearray(32 << 20); "
            "time.sleep(0.6)")
    child = subprocess.Popen([sys.executable, "-c", code])
    path = tmp_path / "child.jsonl"
    try:
        with process.log_process(interval=0.05, pid=child.pid, path=path) as thread:
            assert not thread.uses_native_sampler
            child.wait()
            assert wait_for(lambda: thread.process_exited or not thread.is_alive())
    finally:
        child.kill()
        child.wait()
    records = process.read_log(path).records
    assert {r["pid"] for r in records} == {child.pid}
    assert records[0]["event"] == "START" and records[-1]["event"] == "STOP"
    assert "vms" in records[0]["memory_info"]  # psutil's full memory_info
    s = process.summarise(records)[child.pid]
    assert s.max_rss - s.first_rss >= 28 * MiB


def test_log_process_dec_with_and_without_arguments(log_lines):
    @process.log_process_dec(interval=0.01, label="decorated")
    def work(x):
        return x * 2

    @process.log_process_dec
    def bare():
        return "ok"

    assert work(21) == 42
    assert bare() == "ok"
    events = parsed(log_lines)
    assert [e for e, _ in events].count("START") == 2
    assert [e for e, _ in events].count("STOP") == 2
    assert events[0][1]["label"] == "decorated"
    with pytest.raises(ValueError):
        process.log_process_dec(interval=-1)


# -- reading and summarising logs --------------------------------------------

def record(pid, t, rss, label=None, **extra):
    r = {"timestamp": "2024-01-01 00:00:00.000000", "memory_info": {"rss": rss},
         "cpu_times": {"user": t / 2, "system": 0.0}, "elapsed_time": t, "pid": pid}
    if label is not None:
        r["label"] = label
    r.update(extra)
    return r


def test_parse_lines_reads_logging_output_and_jsonl_and_counts_corrupt_lines():
    lines = [
        "2024-01-01 INFO starting the service\n",
        f"2024-01-01 INFO ProcessLoggingThread-JSON-START {json.dumps(record(7, 1.0, 100))}\n",
        f"2024-01-01 INFO ProcessLoggingThread-JSON {json.dumps(record(7, 2.0, 300, 'a'))}\n",
        "2024-01-01 INFO ProcessLoggingThread-JSON {not json\n",
        json.dumps({"event": "SAMPLE", **record(8, 1.0, 50)}) + "\n",
        '{"truncated": \n',
        json.dumps({"pid": 9}) + "\n",  # valid JSON, not a record
        f"x ProcessLoggingThread-JSON-STOP {json.dumps(record(7, 3.0, 200))}\n",
    ]
    contents = process.parse_lines(lines)
    assert contents.skipped == 3
    assert [(r["pid"], r["event"]) for r in contents.records] == [
        (7, "START"), (7, "SAMPLE"), (8, "SAMPLE"), (7, "STOP")]


def test_summarise_per_pid_without_macos_fields():
    records = [record(7, 1.0, 100 * MiB), record(7, 3.0, 90 * MiB, "low"),
               record(7, 5.0, 140 * MiB), record(8, 0.0, 10 * MiB)]
    summaries = process.summarise(records)
    s = summaries[7]
    assert (s.first_rss, s.last_rss, s.min_rss, s.max_rss) == (
        100 * MiB, 140 * MiB, 90 * MiB, 140 * MiB)
    assert s.growth == 40 * MiB and s.duration == 4.0 and s.rate == 10 * MiB
    assert s.labels == [(3.0, "low")]
    assert summaries[8].rate == 0.0
    table = process.format_summary(summaries, skipped=2)
    assert "+40.0 MiB" in table and "+10.0 MiB/s" in table and "1: low" in table
    assert "skipped 2 unreadable lines" in table


def test_main_prints_the_table_and_writes_plots(tmp_path, capsys):
    log = tmp_path / "service.log"
    with log.open("w") as f:
        f.write("unrelated line\n")
        for i, rss in enumerate([10, 12, 15, 19]):
            prefix = "ProcessLoggingThread-JSON" + ("-START" if i == 0 else "")
            lab = "warm" if i == 2 else None
            f.write(f"t INFO {prefix} {json.dumps(record(42, float(i), rss * MiB, lab))}\n")
        f.write("t INFO ProcessLoggingThread-JSON {broken\n")
    outdir = tmp_path / "plots"
    assert process.main([str(log), str(outdir)]) == 0
    out = capsys.readouterr().out
    assert "42" in out and "+9.0 MiB" in out and "skipped 1 unreadable line" in out
    names = sorted(p.name for p in outdir.iterdir())
    assert names == ["service.log_42.dat", "service.log_42.plt", "service.log_42.svg"]
    dat = (outdir / "service.log_42.dat").read_text().splitlines()
    assert dat[0].startswith("#t(s)") and len(dat) == 5 and "# warm" in dat[3]
    plt = (outdir / "service.log_42.plt").read_text()
    assert 'plot "service.log_42.dat"' in plt and '"warm"' in plt
    root = ET.parse(outdir / "service.log_42.svg").getroot()
    assert root.tag.endswith("svg")


def test_main_on_an_unreadable_file_is_one_line(tmp_path, capsys):
    assert process.main([str(tmp_path / "nope.log")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read" in err and "nope.log" in err


def test_python_dash_m_runs(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"event": "START", **record(5, 0.0, MiB)}) + "\n")
    result = subprocess.run([sys.executable, "-m", "pymemtrace.process", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "1.0 MiB" in result.stdout


# -- the SVG chart ----------------------------------------------------------

SVG_NS = "{http://www.w3.org/2000/svg}"


def test_svg_chart_is_valid_xml_with_data_axes_and_markers():
    points = [(float(t), 10.0 + t * 0.5) for t in range(50)]
    text = svg_chart.line_chart(points, title="RSS <of> pid 1", x_label="time (s)",
                                y_label="RSS (MiB)", markers=[(10.0, "phase & 2")])
    root = ET.fromstring(text)
    texts = [t.text for t in root.iter(SVG_NS + "text")]
    assert "RSS <of> pid 1" in texts and "time (s)" in texts and "RSS (MiB)" in texts
    assert "phase & 2" in texts
    polyline = root.find(f".//{SVG_NS}polyline")
    assert len(polyline.get("points").split()) == 50
    data = root.find(f".//{SVG_NS}metadata").text.split()
    assert [tuple(map(float, p.split(","))) for p in data] == points
    # tick labels on both axes
    assert "0" in texts and "10" in texts


def test_svg_chart_with_no_data_still_renders():
    root = ET.fromstring(svg_chart.line_chart([], title="t", x_label="x", y_label="y"))
    assert "no data" in [t.text for t in root.iter(SVG_NS + "text")]


def test_nice_ticks_cover_the_range_with_round_steps():
    ticks = svg_chart.nice_ticks(0.3, 9.7)
    assert ticks[0] <= 0.3 and ticks[-1] >= 9.7
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert steps == {2.0}
    assert len(svg_chart.nice_ticks(5, 5)) >= 2


def test_downsample_keeps_the_extremes():
    points = [(float(i), float(i % 97)) for i in range(20000)]
    points[12345] = (12345.0, 1000.0)
    shown = svg_chart.downsample(points, 1000)
    assert len(shown) <= 1002
    assert max(y for _, y in shown) == 1000.0
    assert shown[-1] == points[-1]


def test_rss_chart_marks_labels():
    records = [record(1, 0.0, 10 * MiB), record(1, 1.0, 20 * MiB, "load")]
    root = ET.fromstring(process.rss_chart(records))
    assert "load" in [t.text for t in root.iter(SVG_NS + "text")]


def test_format_bytes():
    assert process.format_bytes(512) == "512 B"
    assert process.format_bytes(1536) == "1.5 KiB"
    assert process.format_bytes(3 * MiB, signed=True) == "+3.0 MiB"
    assert process.format_bytes(-3 * MiB, signed=True) == "-3.0 MiB"


def test_records_are_written_in_batches_of_about_a_second_by_default():
    assert process.ProcessLoggingThread(interval=0.01)._batch == 1.0
    assert process.ProcessLoggingThread(interval=3.0)._batch == 3.0
    assert process.ProcessLoggingThread(interval=60.0)._batch == 5.0
    assert process.ProcessLoggingThread(interval=0.01, batch=0.1)._batch == 0.1
    with pytest.raises(ValueError, match="batch"):
        process.ProcessLoggingThread(batch=0)


def test_start_twice_is_refused_and_the_first_run_is_intact(tmp_path):
    path = tmp_path / "once.jsonl"
    with process.log_process(interval=0.01, batch=0.02, path=path) as thread:
        with pytest.raises(RuntimeError, match="once"):
            thread.start()
        assert wait_for(lambda: thread.records_written >= 3)
    events = [json.loads(x)["event"] for x in path.read_text().splitlines()]
    assert events[0] == "START" and events[-1] == "STOP" and events.count("START") == 1


def test_a_string_put_straight_on_the_queue_still_labels(log_lines):
    with process.log_process(interval=0.01, batch=0.02) as thread:
        thread.process_queue.put("old style")
        assert wait_for(lambda: thread.records_written >= 3)
    assert "old style" in [r.get("label") for _, r in parsed(log_lines)]


def test_capacity_holds_four_batches():
    assert process.ProcessLoggingThread(interval=0.001)._capacity == 4001
    assert process.ProcessLoggingThread(interval=1.0)._capacity == 1024
    with pytest.raises(ValueError, match="capacity"):
        process.ProcessLoggingThread(capacity=0)
