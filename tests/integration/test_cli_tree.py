"""`pymemtrace tree` and `python -m pymemtrace.process_tree` end to end."""
import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

# A parent whose two children start and exit one after the other.  Each
# step waits until the monitor's JSON file shows the previous one, so the
# test depends on the order of events, never on how fast the machine is.
STAGGERED = r"""
import glob, json, os, subprocess, sys, time
path = sys.argv[1]

def current():
    # until the log is complete it is under a temporary name next to path
    found = glob.glob(os.path.join(os.path.dirname(path),
                                   "." + os.path.basename(path) + ".*.tmp"))
    return found[0] if found else path

def seen(pid, state):
    try:
        with open(current()) as f:
            lines = [ln for ln in f.read().splitlines(keepends=True) if ln.endswith("\n")]
    except FileNotFoundError:
        return False
    return any(p["pid"] == pid and p["state"] == state
               for ln in lines for p in json.loads(ln).get("processes", []))

def wait_for(pid, state):
    while not seen(pid, state):
        time.sleep(0.02)

CHILD = "import sys; x = bytearray(%d << 20); sys.stdin.read()"
a = subprocess.Popen([sys.executable, "-c", CHILD % 8], stdin=subprocess.PIPE)
wait_for(a.pid, "running")
b = subprocess.Popen([sys.executable, "-c", CHILD % 32], stdin=subprocess.PIPE)
wait_for(b.pid, "running")
a.stdin.close(); a.wait()
wait_for(a.pid, "exited")
b.stdin.close(); b.wait()
wait_for(b.pid, "exited")
print(a.pid, b.pid)
"""

# A parent with a few children that live until their stdin closes.
FAMILY = r"""
import subprocess, sys
kids = [subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE) for _ in range(3)]
print("ready", flush=True)
sys.stdin.read()
for k in kids:
    k.stdin.close(); k.wait()
"""


def wait_until(predicate, what):
    """Poll ``predicate``; fail (instead of hanging) if it never comes true."""
    deadline = time.monotonic() + 120  # a hang guard, not a speed check
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def lines_in(path):
    return path.read_text().count("\n") if path.exists() else 0


def partial(path):
    """Where a streamed output is until it is complete: ``.NAME.XXXXXXXX.tmp``
    next to it (renamed to its path at the end)."""
    found = list(path.parent.glob(f".{path.name}.*.tmp"))
    assert len(found) <= 1, found
    return found[0] if found else path.parent / "(none yet)"


def read_jsonl(path):
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def samples(records):
    return [r for r in records if r["event"] == "sample"]


def states_of(records, pid):
    return [p["state"] for r in samples(records) for p in r["processes"]
            if p["pid"] == pid]


@pytest.fixture
def family():
    popen = subprocess.Popen([sys.executable, "-c", FAMILY], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert popen.stdout.readline() == "ready\n"
    yield popen
    popen.stdin.close()
    popen.wait()
    popen.stdout.close()


def test_follows_children_that_start_and_exit(cli, tmp_path):
    # GIVEN a command whose children start and exit one after the other
    script = tmp_path / "parent.py"
    script.write_text(STAGGERED)
    jsonl, table = tmp_path / "tree.jsonl", tmp_path / "table.txt"
    # WHEN it is run under the monitor
    result = cli("tree", "-i", "0.05", "--json", jsonl, "-o", table, "--",
                 sys.executable, script, jsonl)
    # THEN the command ran to its end, which ended the monitoring
    assert result.returncode == 0, result.stderr
    a, b = map(int, result.stdout.split())
    records = read_jsonl(jsonl)
    assert records[0]["event"] == "start" and records[-1]["event"] == "end"
    assert records[-1]["reason"] == "root exited" and records[-1]["returncode"] == 0
    root = records[0]["root"]
    # AND each child was new, then running, then exited exactly once
    for pid in (a, b):
        states = states_of(records, pid)
        assert states[0] == "new" and states[-1] == "exited"
        assert states.count("exited") == 1 and "running" in states
        rows = [p for r in samples(records) for p in r["processes"] if p["pid"] == pid]
        assert all(p["ppid"] == root and p["depth"] == 1 for p in rows)
    # AND the second child's 32 MiB show
    b_rss = max(p["metrics"].get("rss", 0) for r in samples(records)
                for p in r["processes"] if p["pid"] == b)
    assert b_rss >= 32 << 20
    # AND the text table shows both exits
    lines = table.read_text().splitlines()
    assert any(f" {a} " in ln and ln.endswith("exited") for ln in lines)
    assert any(f" {b} " in ln and ln.endswith("exited") for ln in lines)
    # AND every sample has a wall-clock timestamp, in order
    times = [r["time"] for r in samples(records)]
    assert times == sorted(times)
    assert all(r["timestamp"].endswith("+00:00") for r in records)


def test_kill_9_leaves_parseable_json_lines(tmp_path, family):
    # GIVEN a monitor writing many long records as fast as it can
    jsonl = tmp_path / "tree.jsonl"
    monitor = subprocess.Popen(
        [sys.executable, "-m", "pymemtrace", "tree", "-p", str(family.pid), "-i",
         "0.001", "-a", "--cmdline", "--json", str(jsonl)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # WHEN it is killed with SIGKILL in the middle of its run
        wait_until(lambda: monitor.poll() is not None or lines_in(partial(jsonl)) >= 30,
                   "30 records")
        assert monitor.poll() is None, monitor.stderr.read()
        monitor.send_signal(signal.SIGKILL)
    finally:
        monitor.wait()
        monitor.stderr.close()
    # THEN nothing is at the path (the log is not complete), and every line
    # of the temporary file left behind is a whole JSON record
    assert monitor.returncode == -signal.SIGKILL
    assert not jsonl.exists()
    records = read_jsonl(partial(jsonl))
    assert len(records) >= 30
    for r in samples(records):
        assert len(r["processes"]) == 4
    # (records written before the kill are all there: flushed per sample)
    assert [r["sample"] for r in samples(records)] == list(range(len(samples(records))))


def test_ctrl_c_ends_cleanly(tmp_path, family):
    # GIVEN a monitor that has written some samples
    jsonl = tmp_path / "tree.jsonl"
    monitor = subprocess.Popen(
        [sys.executable, "-m", "pymemtrace", "tree", "-p", str(family.pid), "-i",
         "0.02", "--json", str(jsonl)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: monitor.poll() is not None or lines_in(partial(jsonl)) >= 3,
               "3 records")
    assert monitor.poll() is None
    # WHEN it gets SIGINT (Ctrl-C)
    monitor.send_signal(signal.SIGINT)
    out, err = monitor.communicate()
    # THEN it stops with 130, no traceback, and says why in the JSON
    assert monitor.returncode == 130
    assert "Traceback" not in err and err == ""
    records = read_jsonl(jsonl)
    assert records[-1]["event"] == "end" and records[-1]["reason"] == "interrupted"
    assert not list(tmp_path.glob(".*.tmp"))  # renamed: no temporary file left
    # AND the watched process is untouched
    assert family.poll() is None


def test_monitoring_ends_when_the_root_exits(cli, tmp_path):
    # GIVEN a process that exits when its stdin closes
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    jsonl = tmp_path / "tree.jsonl"
    monitor = subprocess.Popen(
        [sys.executable, "-m", "pymemtrace.process_tree", "-p", str(proc.pid),
         "-i", "0.02", "--json", str(jsonl)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: lines_in(partial(jsonl)) >= 2, "2 records")
    # WHEN it exits
    proc.stdin.close()
    proc.wait()
    out, err = monitor.communicate(timeout=120)
    # THEN the monitor reports it and ends by itself
    assert monitor.returncode == 0, err
    records = read_jsonl(jsonl)
    assert records[-1]["reason"] == "root exited"
    assert states_of(records, proc.pid)[-1] == "exited"
    assert out.splitlines()[-1].endswith("exited")


def test_command_exit_status_is_returned(cli, tmp_path):
    jsonl = tmp_path / "tree.jsonl"
    result = cli("tree", "-i", "0.05", "--json", jsonl, "--", sys.executable, "-c",
                 "raise SystemExit(3)")
    assert result.returncode == 3
    end = read_jsonl(jsonl)[-1]
    assert end["reason"] == "root exited" and end["returncode"] == 3


def test_command_killed_by_signal_gives_128_plus_signal(cli):
    result = cli("tree", "-i", "0.05", "--", sys.executable, "-c",
                 "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert result.returncode == 128 + signal.SIGTERM


def test_count_stops_and_stops_the_command(cli, tmp_path):
    # GIVEN a command whose children would run for an hour
    jsonl = tmp_path / "tree.jsonl"
    # WHEN monitoring is limited to 5 samples
    result = cli("tree", "-i", "0.2", "--count", "5", "--json", jsonl, "--",
                 "sh", "-c", "sleep 3600 & sleep 3600")
    # THEN exactly 5 samples are written and the command and its children stop
    assert result.returncode == 0, result.stderr
    records = read_jsonl(jsonl)
    assert len(samples(records)) == 5
    assert records[-1]["reason"] == "count reached"
    pids = {p["pid"] for r in samples(records) for p in r["processes"]}
    assert len(pids) >= 2

    def ended(pid):
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    for pid in pids:
        wait_until(lambda pid=pid: ended(pid), f"pid {pid} to end")


def test_omit_first_gives_changes_on_every_row(cli, family):
    result = cli("tree", "-p", family.pid, "-i", "0.02", "--count", "2", "-1",
                 "--sep", ",")
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[1:]
    assert len(rows) == 2 * 4
    header = result.stdout.splitlines()[0].split(",")
    delta = header.index("rss_delta")
    assert all(row.split(",")[delta] != "" for row in rows)
    assert {row.split(",")[header.index("state")] for row in rows} == {"running"}


def test_json_to_stdout_replaces_the_table(cli, family):
    result = cli("tree", "-p", family.pid, "-i", "0.02", "--count", "2", "--json", "-")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["event"] for r in records] == ["start", "sample", "sample", "end"]


def test_duration_stops(cli, family):
    result = cli("tree", "-p", family.pid, "-i", "0.05", "-d", "0.2", "--json", "-")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["reason"] == "duration reached"


def test_help_has_an_example(cli):
    result = cli("tree", "--help")
    assert result.returncode == 0
    assert "example" in result.stdout and "pymemtrace tree -p 1234" in result.stdout
    assert "--omit-first" in result.stdout and "--uss" in result.stdout


MISSING_PID = str(4 * 1024 * 1024 + 12345)  # above Linux's pid_max limit


@pytest.mark.parametrize("entry", [["tree"], ["-m", "pymemtrace.process_tree"]])
@pytest.mark.parametrize("args, status, message", [
    (["-p", MISSING_PID], 1, f"no process with pid {MISSING_PID}"),
    (["-i", "0"], 2, "--interval must be a number between 0.001 and 86400, not '0'"),
    (["--interval=-1"], 2, "--interval must be a number between 0.001 and 86400, not '-1'"),
    (["-i", "nan"], 2, "--interval must be a number between 0.001 and 86400, not 'nan'"),
    (["--count", "0"], 2, "--count must be an integer between 1 and 1000000000, not '0'"),
    (["-d", "0"], 2, "--duration must be a number between 0.001 and 31536000, not '0'"),
    (["-p", "0"], 2, "pid must be a positive integer (or -1 for this process), not 0"),
    (["--json", "/nonexistent-dir/tree.jsonl"], 1,
     "cannot write /nonexistent-dir/tree.jsonl: no such file or directory"),
    (["-p", "1", "--", "true"], 2, "give either --pid or a command, not both"),
    (["--", "no-such-command-pmt"], 127, "command not found: no-such-command-pmt"),
])
def test_bad_input_is_one_line_error(entry, args, status, message):
    # GIVEN a bad command line  WHEN run  THEN one line on stderr, the status
    result = subprocess.run([sys.executable, *(["-m", "pymemtrace"] if entry == ["tree"]
                                               else []), *entry, *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == status
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    prog = "pymemtrace tree" if entry == ["tree"] else "python -m pymemtrace.process_tree"
    assert lines[0] == f"{prog}: error: {message}"
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["--interval", "abc"], ["--count", "x"]])
def test_unparsable_numbers_are_usage_errors(cli, args):
    result = cli("tree", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"pymemtrace tree: error: {args[0]} must be a"
        f"{'n integer' if args[0] == '--count' else ' number'} between"
        f" {'1 and 1000000000' if args[0] == '--count' else '0.001 and 86400'}, not {args[1]!r}"
    ]


@pytest.mark.parametrize("level, logged", [("20", True), ("INFO", True), ("30", False)])
def test_the_seeds_log_level_option_is_accepted(cli, level, logged):
    # GIVEN the seed's process_tree -l LEVEL option
    for args in (("tree",), ()):
        # WHEN pymemtrace tree (and python -m pymemtrace.process_tree) watch
        # this process once at that level
        cmd = [sys.executable, "-m", "pymemtrace.process_tree"] if not args else None
        run = (subprocess.run(cmd + ["-l", level, "--count", "1"], capture_output=True,
                              text=True, timeout=60) if cmd
               else cli(*args, "-l", level, "--count", "1"))
        # THEN it runs, and says what it watches on stderr at INFO only
        assert run.returncode == 0, run.stderr
        assert ("INFO" in run.stderr and "watching pid" in run.stderr) == logged
