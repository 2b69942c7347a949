"""pymemtrace.process_tree: the monitor, its rows and its formatting."""
import csv
import io
import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from pymemtrace import process_tree
from pymemtrace.errors import PymemtraceError
from pymemtrace.process_tree import (METRICS, JsonLinesWriter, ProcessTreeMonitor,
                                     TableWriter, format_bytes_delta)

# A parent process driven line by line on its stdin:
#   spawn   start a child (which lives until its stdin closes), print its pid
#   spawn2  the same, the child starting a grandchild first
#   spawn3  a child starting a grandchild that sleeps for an hour; print
#           both pids
#   end PID close that child's stdin, wait for it, print "ended"
#   quit    exit (the children see end-of-file and exit too)
PARENT = r"""
import subprocess, sys
CHILD = "import sys; sys.stdin.read()"
CHILD2 = ("import subprocess, sys; "
          "g = subprocess.Popen([sys.executable, '-c', %r]); "
          "print('ready', flush=True); sys.stdin.read(); g.wait()" % CHILD)
CHILD3 = ("import subprocess, sys; "
          "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'], "
          "stdin=subprocess.DEVNULL); print(g.pid, flush=True); sys.stdin.read()")
children = {}
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd in ("spawn", "spawn2", "spawn3"):
        code = {"spawn": CHILD, "spawn2": CHILD2, "spawn3": CHILD3}[cmd]
        p = subprocess.Popen([sys.executable, "-c", code],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        extra = p.stdout.readline().decode().strip() if cmd != "spawn" else ""
        children[p.pid] = p
        print(p.pid, extra if cmd == "spawn3" else "", flush=True)
    elif cmd == "end":
        p = children.pop(int(arg))
        p.stdin.close()
        p.wait()
        print("ended", flush=True)
    elif cmd == "quit":
        break
"""


class Parent:
    def __init__(self):
        self.popen = subprocess.Popen([sys.executable, "-c", PARENT],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
        self.pid = self.popen.pid

    def ask(self, line):
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()
        return self.popen.stdout.readline().strip()

    def spawn(self, nested=False):
        return int(self.ask("spawn2" if nested else "spawn"))

    def spawn_with_sleeping_grandchild(self):
        return tuple(map(int, self.ask("spawn3").split()))

    def end(self, pid):
        assert self.ask(f"end {pid}") == "ended"

    def quit(self):
        if self.popen.poll() is None:
            self.popen.stdin.write("quit\n")
            self.popen.stdin.close()
        self.popen.wait()
        self.popen.stdout.close()


@pytest.fixture
def parent():
    p = Parent()
    yield p
    p.quit()


RSS_CPU = [METRICS["rss"], METRICS["cpu_percent"]]


def metrics_failing_for(pid, error, when=(True,)):
    """An rss metric whose psutil call raises ``error`` for ``pid`` (when
    ``when`` is not empty), as psutil does for other users' processes,
    zombies and processes that vanish."""
    def read(proc):
        if proc.pid == pid and when:
            raise error(proc.pid)
        return proc.memory_info().rss

    return [process_tree.Metric("rss", "rss", "bytes", read)]


def by_pid(sample):
    return {row.pid: row for row in sample.rows}


def test_follows_children_that_start_and_exit(parent):
    # GIVEN a monitor on a parent with no children yet
    monitor = ProcessTreeMonitor(parent.pid, RSS_CPU)
    first = monitor.sample()
    assert [(r.pid, r.state, r.depth) for r in first.rows] == [(parent.pid, "new", 0)]

    # WHEN two children start
    a, b = parent.spawn(), parent.spawn()
    rows = by_pid(monitor.sample())
    # THEN both appear as new, one level down, with their memory
    assert rows[parent.pid].state == "running"
    for pid in (a, b):
        assert rows[pid].state == "new"
        assert rows[pid].depth == 1
        assert rows[pid].ppid == parent.pid
        assert rows[pid].values["rss"] > 0

    # WHEN one of them exits
    parent.end(a)
    sample = monitor.sample()
    rows = by_pid(sample)
    # THEN it is reported as exited (after the live rows), the other runs on
    # with a change since the last sample
    assert rows[a].state == "exited"
    assert rows[b].state == "running"
    assert "rss" in rows[b].deltas
    assert sample.rows[-1].pid == a

    # AND the exited child is reported only once
    rows = by_pid(monitor.sample())
    assert a not in rows
    assert rows[b].state == "running"

    # WHEN a child with a grandchild starts
    c = parent.spawn(nested=True)
    sample = monitor.sample()
    rows = by_pid(sample)
    grandchildren = [r for r in sample.rows if r.ppid == c]
    # THEN the grandchild is two levels down, right after its parent
    assert rows[c].depth == 1
    assert len(grandchildren) == 1 and grandchildren[0].depth == 2
    order = [r.pid for r in sample.rows]
    assert order.index(grandchildren[0].pid) == order.index(c) + 1
    assert not monitor.root_exited

    # WHEN the root exits
    parent.quit()
    sample = monitor.sample()
    # THEN the root is reported exited and monitoring knows it is over
    assert monitor.root_exited
    assert by_pid(sample)[parent.pid].state == "exited"


def test_orphaned_grandchild_is_reported_as_left(parent):
    # GIVEN a child whose own child outlives it
    child, grandchild = parent.spawn_with_sleeping_grandchild()
    try:
        monitor = ProcessTreeMonitor(parent.pid, RSS_CPU)
        assert by_pid(monitor.sample())[grandchild].depth == 2
        # WHEN the child exits (the grandchild is re-parented out of the tree)
        parent.end(child)
        rows = by_pid(monitor.sample())
        # THEN the child exited and the grandchild left the tree, once
        assert rows[child].state == "exited"
        assert rows[grandchild].state == "left"
        rows = by_pid(monitor.sample())
        assert child not in rows and grandchild not in rows
    finally:
        psutil.Process(grandchild).kill()


def test_run_leaves_no_descriptor_or_thread_behind(parent, tmp_path, capsys):
    # GIVEN a first run (imports and lazy set-up done)
    args = ["-p", str(parent.pid), "-i", "0.01", "--count", "3",
            "--json", str(tmp_path / "t.jsonl")]
    parent.spawn()
    assert process_tree.main(args) == 0
    me = psutil.Process()
    fds, threads = me.num_fds(), me.num_threads()
    # WHEN the monitor runs again in this process
    assert process_tree.main(args) == 0
    # THEN it wrote its samples and left nothing open
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 5
    assert (me.num_fds(), me.num_threads()) == (fds, threads)
    assert "exited" not in capsys.readouterr().out


def test_no_such_pid_is_a_user_error():
    pid = max(psutil.pids()) + 100000
    with pytest.raises(PymemtraceError, match=f"^no process with pid {pid}$"):
        ProcessTreeMonitor(pid, RSS_CPU)


def test_access_denied_metric_is_reported_not_raised(parent, monkeypatch):
    # GIVEN a child whose memory the system refuses to give
    child = parent.spawn()
    metrics = metrics_failing_for(child, psutil.AccessDenied) + RSS_CPU[1:]
    monitor = ProcessTreeMonitor(parent.pid, metrics)
    # WHEN sampling
    sample = monitor.sample()
    row = by_pid(sample)[child]
    # THEN rss is marked denied, the other metrics are there
    assert row.state == "new"
    assert row.denied == ["rss"]
    assert "rss" not in row.values and "cpu_percent" in row.values
    assert by_pid(sample)[parent.pid].values["rss"] > 0
    # AND the table says so
    out = io.StringIO()
    TableWriter(out, metrics).write(sample)
    line = [ln for ln in out.getvalue().splitlines() if f" {child} " in ln + " "][0]
    assert "denied" in line


def test_process_with_every_metric_denied_is_shown_as_access_denied(parent, monkeypatch):
    child = parent.spawn()
    metrics = metrics_failing_for(child, psutil.AccessDenied)
    sample = ProcessTreeMonitor(parent.pid, metrics).sample()
    out = io.StringIO()
    TableWriter(out, metrics).write(sample)
    line = [ln for ln in out.getvalue().splitlines() if str(child) in ln][0]
    assert line.endswith("access denied")


@pytest.mark.parametrize("error", [psutil.ZombieProcess, psutil.NoSuchProcess])
def test_process_vanishing_while_read_is_reported_exited(parent, monkeypatch, error):
    # GIVEN a child that turns into a zombie (or vanishes) while being read
    child = parent.spawn()
    fail = []
    monitor = ProcessTreeMonitor(parent.pid, metrics_failing_for(child, error, fail))
    assert by_pid(monitor.sample())[child].state == "new"
    fail.append(True)
    # WHEN sampling  THEN it is shown exited, nothing raises
    rows = by_pid(monitor.sample())
    assert rows[child].state == "exited"
    assert rows[parent.pid].state == "running"


def test_children_listing_denied_does_not_crash(parent, monkeypatch):
    def children(self, recursive=False):
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "children", children)
    sample = ProcessTreeMonitor(parent.pid, RSS_CPU).sample()
    assert [r.pid for r in sample.rows] == [parent.pid]


def test_real_zombie_is_reported_exited_once():
    # GIVEN a child of this process that exited but was not reaped
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        proc = psutil.Process(zombie.pid)
        while proc.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)
        monitor = ProcessTreeMonitor(os.getpid(), RSS_CPU)
        # WHEN sampled twice
        states = [by_pid(monitor.sample()).get(zombie.pid) for _ in range(2)]
        # THEN it shows as exited once, then no more
        assert states[0] is not None and states[0].state == "exited"
        assert states[1] is None
    finally:
        zombie.wait()


def test_status_change_is_reported_as_the_old_value(monkeypatch):
    statuses = iter(["running", "sleeping", "sleeping"])
    metric = process_tree.Metric("status", "status", "text", lambda p: next(statuses))
    monitor = ProcessTreeMonitor(os.getpid(), [metric])
    deltas = [monitor.sample().rows[0].deltas for _ in range(3)]
    assert deltas == [{}, {"status": "running"}, {}]


def test_unsupported_metric_is_marked(monkeypatch):
    def unsupported(proc):
        raise process_tree._Unsupported

    metric = process_tree.Metric("page_faults", "faults", "count", unsupported)
    row = ProcessTreeMonitor(os.getpid(), [metric]).sample().rows[0]
    assert row.unsupported == ["page_faults"] and row.values == {}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_page_faults_grow_when_memory_is_touched():
    monitor = ProcessTreeMonitor(os.getpid(), [METRICS["page_faults"]])
    monitor.sample()
    block = bytearray(32 << 20)  # zeroed pages: touched, so faulted in
    delta = monitor.sample().rows[0].deltas["page_faults"]
    del block
    assert delta >= (32 << 20) // (64 << 10)


def test_every_metric_reads_on_this_process():
    # GIVEN every metric of -a -u -x --cmdline  WHEN reading this process
    row = ProcessTreeMonitor(os.getpid(), list(METRICS.values())).sample().rows[0]
    # THEN each is a value, or marked denied/unsupported, nothing raises
    for key in METRICS:
        assert key in row.values or key in row.denied or key in row.unsupported
    assert row.values["threads"] >= 1
    assert "python" in row.values["cmdline"].lower()


# -- formatting ---------------------------------------------------------------


@pytest.mark.parametrize("delta, text", [
    (0, "+0 B"), (512, "+512 B"), (-4096, "-4.0 KiB"), (3 << 20, "+3.0 MiB"),
    ((5 << 30) + (1 << 29), "+5.5 GiB"), (1536 * 1024, "+1.5 MiB"),
])
def test_format_bytes_delta(delta, text):
    assert format_bytes_delta(delta) == text


def make_sample(index, rows):
    return process_tree.Sample(index, 1700000000.0 + index, float(index), 10, rows)


def row(pid, depth, state, rss, delta=None, ppid=1, name="python"):
    deltas = {} if delta is None else {"rss": delta}
    return process_tree.ProcessRow(pid, ppid, depth, name, state,
                                   {"rss": rss, "cpu_percent": 1.5}, deltas)


def test_table_rows_are_indented_by_depth_and_aligned():
    out = io.StringIO()
    writer = TableWriter(out, RSS_CPU)
    writer.write(make_sample(0, [row(10, 0, "new", 100 << 20),
                                 row(11, 1, "new", 5 << 20, ppid=10),
                                 row(12, 2, "new", 1 << 20, ppid=11)]))
    writer.write(make_sample(1, [row(10, 0, "running", 101 << 20, 1 << 20),
                                 row(11, 1, "running", 5 << 20, 4096, ppid=10),
                                 process_tree.ProcessRow(12, 11, 2, "python", "exited")]))
    lines = out.getvalue().splitlines()
    header, body = lines[0], lines[1:]
    assert header.split() == ["time(s)", "pid", "name", "rss", "cpu", "note"]
    # indentation of the pid column shows the depth
    pid_col = header.index("pid")
    assert [ln[pid_col:].split()[0] for ln in body] == ["10", "11", "12"] * 2
    assert [len(ln[pid_col:]) - len(ln[pid_col:].lstrip()) for ln in body] == [0, 2, 4] * 2
    # every value ends in the same column; changes follow their value
    rss_end = header.index("rss") + len("rss")
    assert all(ln[:rss_end].endswith("MiB") for ln in body if "exited" not in ln)
    assert "101.0 MiB (+1.0 MiB)" in body[3]
    assert "5.0 MiB (+4.0 KiB)" in body[4]
    assert body[0].rstrip().endswith("new") and body[5].rstrip().endswith("exited")
    assert body[3].split()[0] == "1.0"  # the time, on the root row only
    assert body[4].split()[0] == "11"


def test_header_is_repeated_when_a_column_widens():
    out = io.StringIO()
    writer = TableWriter(out, RSS_CPU)
    writer.write(make_sample(0, [row(10, 0, "new", 1 << 20)]))
    writer.write(make_sample(1, [row(10, 0, "running", 1 << 20, 0)]))
    writer.write(make_sample(2, [row(10, 0, "running", 1 << 20, 0,
                                     name="a-very-long-process-name")]))
    headers = [ln for ln in out.getvalue().splitlines() if ln.startswith("time(s)")]
    assert len(headers) == 2


def test_separated_values_are_raw_numbers():
    out = io.StringIO()
    writer = TableWriter(out, RSS_CPU + [METRICS["cmdline"]], sep=",")
    r = row(10, 0, "running", 1 << 20, -4096)
    r.values["cmdline"] = 'python -c "a, b"'
    writer.write(make_sample(0, [r]))
    records = list(csv.reader(io.StringIO(out.getvalue())))
    assert records[0] == ["time", "pid", "ppid", "depth", "name", "state", "rss",
                          "rss_delta", "cpu_percent", "cmdline"]
    assert records[1] == ["0.000", "10", "1", "0", "python", "running", str(1 << 20),
                          "-4096", "1.5", 'python -c "a, b"']


def test_json_lines_records(tmp_path):
    path = tmp_path / "tree.jsonl"
    writer = JsonLinesWriter(str(path))
    writer.start(10, 0.5, RSS_CPU, ["python", "x.py"])
    writer.write(make_sample(0, [row(10, 0, "new", 1 << 20)]))
    writer.end(10, 1.0, 1, "root exited", 0)
    writer.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in records] == ["start", "sample", "end"]
    assert all(r["schema"] == process_tree.SCHEMA for r in records)
    sample = records[1]
    assert sample["timestamp"].startswith("2023-11-14T22:13:20")
    assert sample["time"] == 1700000000.0
    assert sample["processes"][0] == {
        "pid": 10, "ppid": 1, "depth": 0, "name": "python", "state": "new",
        "metrics": {"rss": 1 << 20, "cpu_percent": 1.5}, "deltas": {},
        "denied": [], "unsupported": []}
    assert records[0]["command"] == ["python", "x.py"]
    assert records[2]["reason"] == "root exited"


def test_json_never_writes_nan(tmp_path):
    path = tmp_path / "tree.jsonl"
    writer = JsonLinesWriter(str(path))
    r = row(10, 0, "new", 1 << 20)
    r.values["cpu_percent"] = float("nan")
    writer.write(make_sample(0, [r]))
    writer.close()
    assert json.loads(path.read_text())["processes"][0]["metrics"]["cpu_percent"] is None


def test_unwritable_json_path_is_a_user_error(tmp_path):
    with pytest.raises(PymemtraceError, match="^cannot write .*: no such file or directory$"):
        JsonLinesWriter(str(tmp_path / "missing" / "tree.jsonl"))
