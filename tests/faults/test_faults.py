"""Outputs that survive faults (issue 9, point 3), for every subcommand.

fork, SIGTERM, SIGINT, ``os._exit``, a full disk (``/dev/full``), a reader
that leaves (broken pipe), unwritable paths and out-of-range numbers: each
ends with complete outputs, or none and one line on stderr; never a
traceback, a 0-byte file or two reports in one file.

Signals are sent only after the target said it is ready (it creates a file
the test waits for).  No test measures time.
"""
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from pymemtrace.allocations import SCHEMA

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
PROFILE_LOG = os.path.join(FIXTURES, "profile_growth.log")
REFTRACE_LOG = os.path.join(FIXTURES, "reftrace_leak.log")
FULL = "/dev/full"
needs_dev_full = pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full")

# The line of the scripts below that keeps memory alive at exit.
KEEP = "kept = [bytearray(1000) for _ in range(300)]\n"
KEEP_LINE = 3

SLEEPER = (
    "import os, sys, time\n"
    "\n"
    + KEEP
    + "open(sys.argv[1], 'w').close()  # ready\n"
    "for _ in range(100000):\n"
    "    time.sleep(0.01)\n"
)

FORKER = (
    "import os\n"
    "\n"
    + KEEP
    + "pid = os.fork()\n"
    "if pid == 0:\n"
    "    print('child ends')\n"
    "else:\n"
    "    os.waitpid(pid, 0)\n"
    "    print('parent ends')\n"
)

FORK_OS_EXIT = (
    "import os\n"
    "\n"
    + KEEP
    + "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os._exit(7)\n"
    "_, status = os.waitpid(pid, 0)\n"
    "print('child status', os.waitstatus_to_exitcode(status) if hasattr(os, 'waitstatus_to_exitcode') else status >> 8)\n"
)

# A command that lives long enough to be sampled.
NAP = [sys.executable, "-c", "import time; time.sleep(0.5)"]

OS_EXIT = "import os\n\n" + KEEP + "os._exit(3)\n"

QUIET = "import os\n\n" + KEEP


def pymemtrace(*args):
    return [sys.executable, "-m", "pymemtrace", *map(str, args)]


def spawn(*args, **kwargs):
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(pymemtrace(*args), text=True, **kwargs)


def wait_for(path, proc):
    """Until path exists (the target is ready); fails if proc ends first."""
    for _ in range(60000):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"ended before it was ready ({proc.returncode}): {err}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"{path} never appeared")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def one_error_line(stderr):
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def leftovers(directory):
    """Temporary files an interrupted write left behind."""
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def report_sites(path):
    with open(path, encoding="utf-8") as stream:
        doc = json.load(stream)  # fails on two documents in one file
    return {(frame["file"], frame["line"]) for site in doc["sites"] for frame in site["stack"][:1]}


def snapshot_file(tmp_path, cli):
    script = write(tmp_path, "quiet.py", QUIET)
    out = tmp_path / "snap.json"
    result = cli("run", "-o", out, script)
    assert result.returncode == 0, result.stderr
    return out


# ------------------------------------------------------------------ fork


def test_a_forked_child_never_writes_the_parents_outputs(cli, tmp_path):
    # GIVEN a script that forks and whose child falls off the end too
    script = write(tmp_path, "forker.py", FORKER)
    out, svg = tmp_path / "out.json", tmp_path / "flame.svg"
    # WHEN run with a JSON and an SVG output
    result = cli("run", "-o", out, "--flamegraph", svg, script)
    # THEN one report: valid JSON, one text report on stdout, the child ran
    assert result.returncode == 0, result.stderr
    assert "child ends" in result.stdout and "parent ends" in result.stdout
    assert result.stdout.count("live at exit:") == 1, result.stdout
    assert (str(script), KEEP_LINE) in report_sites(out)
    ET.parse(svg)
    assert leftovers(tmp_path) == []


def test_os_exit_in_a_forked_child_writes_nothing(cli, tmp_path):
    # GIVEN a script whose forked child ends with os._exit
    script = write(tmp_path, "fork_exit.py", FORK_OS_EXIT)
    out = tmp_path / "out.json"
    # WHEN run
    result = cli("run", "-o", out, script)
    # THEN the parent alone reports; the child's status is its own
    assert result.returncode == 0, result.stderr
    assert "child status 7" in result.stdout
    assert result.stdout.count("live at exit:") == 1
    assert (str(script), KEEP_LINE) in report_sites(out)


# ------------------------------------------------------------ os._exit


def test_os_exit_writes_the_report_first(cli, tmp_path):
    # GIVEN a script that ends with os._exit(3)
    script = write(tmp_path, "exit.py", OS_EXIT)
    out, html = tmp_path / "out.json", tmp_path / "out.html"
    # WHEN run
    result = cli("run", "-o", out, "--html", html, script)
    # THEN its status, and the complete report of memory live at that call
    assert result.returncode == 3, result.stderr
    assert "live at exit:" in result.stdout
    assert (str(script), KEEP_LINE) in report_sites(out)
    assert html.read_text(encoding="utf-8").rstrip().endswith("</html>")


@needs_dev_full
def test_os_exit_with_a_full_disk_says_why_in_one_line(cli, tmp_path):
    # GIVEN a script ending with os._exit and an output on a full disk
    script = write(tmp_path, "exit.py", OS_EXIT)
    # WHEN run
    result = cli("run", "-o", FULL, script)
    # THEN one line says there is no report, and why; status 1
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "os._exit(3)" in line and "no report" in line
    assert "no space left on device" in line


# ------------------------------------------------------- SIGTERM, SIGINT


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_run_still_writes_the_report(tmp_path, signum, status):
    # GIVEN `run` on a script that waits, with every file output
    script = write(tmp_path, "sleeper.py", SLEEPER)
    ready = tmp_path / "ready"
    outs = {name: tmp_path / name for name in
            ("out.json", "out.txt", "out.pb.gz", "out.svg", "out.html")}
    proc = spawn("run", "-o", outs["out.json"], "--collapsed", outs["out.txt"],
                 "--pprof", outs["out.pb.gz"], "--flamegraph", outs["out.svg"],
                 "--html", outs["out.html"], script, ready)
    wait_for(ready, proc)
    # WHEN the signal arrives
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    # THEN the status of that signal and every output complete
    assert proc.returncode == status, stderr
    assert "live at exit:" in stdout
    assert (str(script), KEEP_LINE) in report_sites(outs["out.json"])
    for path in outs.values():
        assert path.stat().st_size > 0, path
    ET.parse(outs["out.svg"])
    assert leftovers(tmp_path) == []
    if signum == signal.SIGTERM:
        assert "Traceback" not in stderr


def wait_until_open(proc, path, timeout=120):
    """Until proc has path open (Linux /proc): the command is at work."""
    fds = f"/proc/{proc.pid}/fd"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"ended before it opened {path} ({proc.returncode}): {err}")
        try:
            links = [os.readlink(os.path.join(fds, fd)) for fd in os.listdir(fds)]
        except OSError:
            links = []
        if str(path) in links:
            return
        time.sleep(0.001)
    proc.kill()
    pytest.fail(f"{path} never opened")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_report_is_one_line_and_leaves_no_output(tmp_path, signum, status):
    from synthetic_profile_log import write_log

    # GIVEN `report --svg` at work on a long log
    log = tmp_path / "long.log"
    write_log(log, 30_000_000)
    svg = tmp_path / "out.svg"
    proc = spawn("report", log, "--svg", svg)
    wait_until_open(proc, log)
    # WHEN the signal arrives
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    # THEN the status of that signal, one line, no report and no file
    assert proc.returncode == status, stderr
    name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
    assert one_error_line(stderr) == f"pymemtrace report: error: interrupted by {name}: no report"
    assert stdout == ""
    assert not svg.exists()
    assert leftovers(tmp_path) == []


def test_a_report_that_is_not_interrupted_writes_its_output(tmp_path):
    from synthetic_profile_log import write_log

    # The twin of the test above: the same command, left to finish
    log = tmp_path / "long.log"
    write_log(log, 1_000_000)
    svg = tmp_path / "out.svg"
    proc = spawn("report", log, "--svg", svg)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "Still held at the end" in stdout
    ET.parse(svg)


def test_a_killed_run_leaves_the_previous_output_intact(tmp_path):
    # GIVEN an output file from an earlier run
    script = write(tmp_path, "sleeper.py", SLEEPER)
    ready, out = tmp_path / "ready", tmp_path / "out.json"
    out.write_text('{"earlier": true}\n', encoding="utf-8")
    proc = spawn("run", "-o", out, script, ready)
    wait_for(ready, proc)
    # WHEN the run is killed (no handler can run)
    proc.kill()
    proc.communicate(timeout=120)
    # THEN the earlier file is untouched: not truncated to 0 bytes
    assert json.loads(out.read_text(encoding="utf-8")) == {"earlier": True}


CHILD = (
    "import os, sys, time\n"
    "with open(sys.argv[1] + '.tmp', 'w') as f:\n"
    "    f.write(str(os.getpid()))\n"
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "for _ in range(100000):\n"
    "    time.sleep(0.01)\n"
)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_process_reaches_the_command_and_outputs_are_written(
        tmp_path, signum, status):
    # GIVEN `pymemtrace process -- CMD` with a log and a chart
    child = write(tmp_path, "child.py", CHILD)
    ready, log, svg = tmp_path / "ready", tmp_path / "run.jsonl", tmp_path / "run.svg"
    proc = spawn("process", "-q", "-i", "0.05", "-o", log, "--svg", svg, "--",
                 sys.executable, child, ready)
    wait_for(ready, proc)
    child_pid = int(ready.read_text())
    # WHEN the signal is sent to pymemtrace alone
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    # THEN the command died of it (128 + N), was not orphaned, outputs complete
    assert proc.returncode == status, stderr
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)
    ET.parse(svg)
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events[0] == "START" and events[-1] == "STOP", events
    # (the command's own KeyboardInterrupt traceback is its business)
    assert "pymemtrace/" not in stderr, stderr


def test_sigterm_to_tree_on_a_pid_ends_the_json_lines(tmp_path):
    # GIVEN `tree --pid` watching a process, with JSON Lines
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    jsonl = tmp_path / "tree.jsonl"
    try:
        proc = spawn("tree", "--pid", watched.pid, "-i", "0.02", "--json", jsonl)
        # ready: a sample record is written (to the temporary name, which
        # becomes tree.jsonl when monitoring ends)
        for _ in range(60000):
            partial = "".join(p.read_text() for p in tmp_path.glob(".tree.jsonl.*.tmp"))
            if proc.poll() is not None or '"event":"sample"' in partial:
                break
            time.sleep(0.005)
        assert proc.poll() is None, proc.communicate()
        # WHEN SIGTERM arrives
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        watched.kill()
        watched.wait()
    # THEN status 143, and the last record says why it ended
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    last = json.loads(jsonl.read_text().splitlines()[-1])
    assert last["event"] == "end" and last["reason"] == "terminated", last
    assert list(tmp_path.glob(".tree.jsonl.*")) == []


# ------------------------------------------------------------ full disk


def _full_disk_cases():
    quiet = "{quiet}"
    snap = "{snap}"
    return [
        ("run", ["-o", FULL, quiet], None),
        ("run", ["--collapsed", FULL, quiet], None),
        ("run", ["--pprof", FULL, quiet], None),
        ("run", ["--flamegraph", FULL, quiet], None),
        ("run", ["--html", FULL, quiet], None),
        ("run", [quiet], FULL),
        ("process", ["-o", FULL, "--", *NAP], None),
        ("process", ["--svg", FULL, "--", *NAP], None),
        ("process", ["-q", "--", *NAP], FULL),
        ("process", ["--summary", "{log}"], FULL),
        ("tree", ["--count", "2", "-i", "0.01", "-o", FULL], None),
        ("tree", ["--count", "2", "-i", "0.01", "--json", FULL], None),
        ("tree", ["--count", "2", "-i", "0.01"], FULL),
        ("report", [snap, "--svg", FULL], None),
        ("report", [snap, "--html", FULL], None),
        ("report", [snap], FULL),
        ("report", [PROFILE_LOG, "--svg", FULL], None),
        ("report", [PROFILE_LOG, "--format", "json"], FULL),
        ("report", [snap, "--format", "json"], FULL),
        ("report", [REFTRACE_LOG, "--svg", FULL], None),
        ("report", [REFTRACE_LOG], FULL),
    ]


@needs_dev_full
@pytest.mark.parametrize("command, args, stdout", _full_disk_cases())
def test_a_full_disk_is_one_line_and_exit_1(cli, tmp_path, command, args, stdout):
    # GIVEN an output (a file, or stdout) on a full disk
    names = {"quiet": write(tmp_path, "quiet.py", QUIET), "snap": None, "log": None}
    if "{snap}" in args:
        names["snap"] = snapshot_file(tmp_path, cli)
    if "{log}" in args:
        names["log"] = tmp_path / "run.jsonl"
        made = subprocess.run(pymemtrace("process", "-q", "-i", "0.05", "-o", names["log"],
                                         "--", *NAP), capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
    argv = [a.format(**names) if "{" in a else a for a in args]
    # WHEN the command runs
    with open(stdout or os.devnull, "w") as out:
        result = subprocess.run(pymemtrace(command, *argv), stdout=out,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    # THEN one line on stderr says what could not be written; status 1
    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr)
    assert line.startswith(f"pymemtrace {command}: error: cannot write "), line
    assert line.endswith("no space left on device"), line
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------- broken pipe


@pytest.mark.parametrize("command, args", [
    ("report", ["{snap}"]),
    ("report", ["{snap}", "--format", "json"]),
    ("report", [PROFILE_LOG]),
    ("report", [REFTRACE_LOG, "--format", "json"]),
    ("run", ["{quiet}"]),
    ("tree", ["--count", "3", "-i", "0.01"]),
    ("process", ["--summary", "{log}"]),
])
def test_a_reader_that_leaves_is_one_line_and_exit_1(cli, tmp_path, command, args):
    # GIVEN a reader of stdout that has gone (`pymemtrace report X | head -1`)
    names = {"quiet": write(tmp_path, "quiet.py", QUIET), "snap": None, "log": None}
    if "{snap}" in args:
        names["snap"] = snapshot_file(tmp_path, cli)
    if "{log}" in args:
        names["log"] = tmp_path / "run.jsonl"
        made = subprocess.run(pymemtrace("process", "-q", "-i", "0.05", "-o", names["log"],
                                         "--", *NAP), capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
    argv = [a.format(**names) if "{" in a else a for a in args]
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: every write is EPIPE
    # WHEN the command writes its report
    try:
        result = subprocess.run(pymemtrace(command, *argv), stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    # THEN status 1 and one line: no traceback, no "Exception ignored"
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.rstrip().endswith(": error: cannot write stdout: its reader has gone (broken pipe)"), result.stderr


# ------------------------------------------------------- unwritable paths


@pytest.mark.parametrize("command, option", [
    ("run", "-o"), ("run", "--collapsed"), ("run", "--pprof"), ("run", "--flamegraph"),
    ("run", "--html"), ("process", "-o"), ("process", "--svg"), ("tree", "-o"),
    ("tree", "--json"), ("report", "--svg"), ("report", "--html"),
])
@pytest.mark.parametrize("where", ["missing-dir", "directory"])
def test_an_unwritable_path_is_one_line_before_any_work(cli, tmp_path, command, option, where):
    # GIVEN an output path in a missing directory, or that is a directory
    script = write(tmp_path, "quiet.py", "print('the script ran')\n" + KEEP)
    bad = tmp_path / "missing" / "out" if where == "missing-dir" else tmp_path
    tail = {
        "run": [script],
        "process": ["--", sys.executable, script],
        "tree": ["--count", "1", "--", sys.executable, script],
        "report": [snapshot_file(tmp_path, cli)],
    }[command]
    # WHEN the command runs
    result = cli(command, option, bad, *tail)
    # THEN one line names the path; status 1; nothing ran, nothing created
    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr)
    assert line.startswith(f"pymemtrace {command}: error: cannot write {bad}"), line
    assert "the script ran" not in result.stdout
    assert not (tmp_path / "missing").exists()
    assert leftovers(tmp_path) == []


# ------------------------------------------------------ numeric options


@pytest.mark.parametrize("command, option, value", [
    ("run", "--sample-bytes", "inf"),
    ("run", "--sample-bytes", "nan"),
    ("run", "--sample-bytes", "0"),
    ("run", "--sample-bytes", "2T"),
    ("run", "--depth", "0"),
    ("run", "--depth", "257"),
    ("run", "--seed", "-1"),
    ("run", "--seed", str(2**64)),
    ("run", "--top", "0"),
    ("process", "--interval", "1e10"),
    ("process", "--interval", "nan"),
    ("process", "--interval", "-inf"),
    ("process", "--pid", "0"),
    ("process", "--pid", str(2**31)),
    ("process", "--duration", "inf"),
    ("tree", "--interval", "1e10"),
    ("tree", "--interval", "inf"),
    ("tree", "--pid", str(2**31)),
    ("tree", "--pid", "-2"),
    ("tree", "--count", "-1"),
    ("tree", "--count", "1e3"),
    ("tree", "--duration", "nan"),
    ("report", "--top", "-1"),
    ("report", "--top", "1e99"),
])
def test_an_out_of_range_number_is_one_line(cli, command, option, value):
    # GIVEN a numeric option out of its range (or inf, nan, not a number)
    # WHEN the command line is parsed
    result = cli(command, f"{option}={value}", "x")
    # THEN one line names the option and its range; usage status 2
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert line.startswith(f"pymemtrace {command}: error: {option} must be "), line
    assert line.endswith(f", not {value!r}"), line


@pytest.mark.parametrize("option, value", [
    ("max_traces", -1), ("max_traces", 2**64 - 1), ("max_traces", 2**63), ("max_traces", 2**41),
    ("max_stacks", -1), ("max_stacks", 2**64), ("max_traces", 1.5), ("max_traces", True),
])
def test_the_python_api_refuses_a_negative_or_absurd_table_cap(option, value):
    from pymemtrace import allocations

    # GIVEN a cap < 0 (it wrapped to a huge unsigned cap before) or beyond
    # what a machine could hold
    # WHEN the tracker is started  THEN ValueError naming it, and it is not running
    with pytest.raises(ValueError, match=option):
        allocations.start(**{option: value})
    assert not allocations.is_tracking()


@pytest.mark.parametrize("value", [0, 1, 2**40])
def test_the_python_api_takes_a_sane_table_cap(value):
    from pymemtrace import allocations

    # The twin: 0 (no cap) up to the largest cap start
    allocations.start(max_traces=value, max_stacks=value)
    try:
        assert allocations.is_tracking()
    finally:
        allocations.stop()


# ------------------------------------------------------- bad JSON input


@pytest.mark.parametrize("text, reason", [
    ('{"sites": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
    ('{"schema": %d, "sites": [], "peak_bytes": 1%s}' % (SCHEMA, "0" * 30), "out of range"),
    ('{"schema": %d, "sites": [], "peak_bytes": 1%s}' % (SCHEMA, "0" * 5000), ""),
    ('{"schema": %d, "sites": [}' % SCHEMA, ""),
], ids=["deep", "64-bit", "5000-digits", "invalid"])
def test_bad_snapshot_json_is_one_line_and_exit_1(cli, tmp_path, text, reason):
    # GIVEN a snapshot file nested too deeply, with a huge integer, or broken
    path = write(tmp_path, "bad.json", text)
    # WHEN reported
    result = cli("report", path)
    # THEN one line, status 1
    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr)
    assert line.startswith(f"pymemtrace report: error: {path} is not an allocation snapshot: ")
    assert reason in line
    assert len(line) < 400
