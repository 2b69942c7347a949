"""Faults on the process tools (`pymemtrace process`, `pymemtrace tree`,
`python -m pymemtrace.process`): issue 9, points 3 and 4.

SIGTERM and SIGINT reach the watched command (never orphaned) and the
outputs are complete; a full disk, an unwritable path, a reader that
leaves give one line (or none) and exit 1; ``kill -9`` leaves no partial
file at the output's path; a long run at the fastest interval keeps the
monitor's memory flat.

Signals are sent only once the target said it is ready (a file appears,
or the log holds records).  No test measures time.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import psutil
import pytest

FULL = "/dev/full"
needs_dev_full = pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full")

# Writes its pid to argv[1] when ready, then sleeps (default SIGTERM/SIGINT
# actions: it dies of them).  With argv[2], starts a grandchild first and
# writes "pid grandchild-pid".
SLEEPER = (
    "import os, subprocess, sys, time\n"
    "pids = [os.getpid()]\n"
    "if len(sys.argv) > 2:\n"
    "    g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "    pids.append(g.pid)\n"
    "with open(sys.argv[1] + '.part', 'w') as f:\n"
    "    f.write(' '.join(map(str, pids)))\n"
    "os.rename(sys.argv[1] + '.part', sys.argv[1])\n"
    "try:\n"
    "    time.sleep(600)\n"
    "except KeyboardInterrupt:\n"
    "    raise SystemExit(130)\n"
)
NAP = [sys.executable, "-c", "import time; time.sleep(0.3)"]


def pymemtrace(*args):
    return [sys.executable, "-m", "pymemtrace", *map(str, args)]


def spawn(*args, **kwargs):
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(pymemtrace(*args), text=True, **kwargs)


def wait_until(predicate, proc, what):
    for _ in range(60000):
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"ended ({proc.returncode}) before {what}: {err}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"never {what}")


def wait_gone(pid):
    """True once no process has this pid (an orphan's zombie is reaped by init)."""
    for _ in range(20000):
        if not psutil.pid_exists(pid):
            return True
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                # reaped by its parent (init for an orphan) shortly
                time.sleep(0.005)
                continue
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.005)
    return False


def one_error_line(stderr, prefix):
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def partial(path):
    """The temporary file a streamed output is written to until it is complete."""
    found = glob.glob(os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.*.tmp"))
    return found[0] if found else None


def lines_in(path):
    if path is None or not os.path.exists(path):
        return 0
    with open(path, "rb") as stream:
        return stream.read().count(b"\n")


# ------------------------------------------------------------- signals


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_process_reaches_the_command_and_the_outputs_are_complete(
        tmp_path, signum, status):
    # GIVEN `pymemtrace process -- CMD` writing a log and a chart
    child = tmp_path / "child.py"
    child.write_text(SLEEPER)
    ready, log, svg = tmp_path / "ready", tmp_path / "run.jsonl", tmp_path / "run.svg"
    proc = spawn("process", "-q", "-i", "0.02", "-o", log, "--svg", svg, "--",
                 sys.executable, child, ready)
    wait_until(ready.exists, proc, "the command was ready")
    wait_until(lambda: lines_in(partial(log)) >= 2, proc, "a sample was logged")
    child_pid = int(ready.read_text())
    assert not log.exists()  # not complete yet: under its temporary name
    # WHEN the signal is sent to pymemtrace alone
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    # THEN the command died of it (or of the SIGINT passed on), was not
    # orphaned, and both outputs are complete
    assert proc.returncode == status, stderr
    assert wait_gone(child_pid)
    ET.parse(svg)
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events[0] == "START" and events[-1] == "STOP" and "SAMPLE" in events
    assert leftovers(tmp_path) == []
    assert "Traceback" not in stderr
    assert "RSS" in stdout  # the summary


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_tree_reaches_the_command_and_the_outputs_are_complete(
        tmp_path, signum, status):
    # GIVEN `pymemtrace tree -- CMD` (CMD with a grandchild) writing a
    # table and JSON Lines
    child = tmp_path / "child.py"
    child.write_text(SLEEPER)
    ready, table, jsonl = tmp_path / "ready", tmp_path / "tree.txt", tmp_path / "tree.jsonl"
    # (stdout and stderr to files: the grandchild, orphaned when the
    # command dies, inherits them and would hold pipes open)
    out, err = open(tmp_path / "out", "w"), open(tmp_path / "err", "w")
    proc = spawn("tree", "-i", "0.02", "-o", table, "--json", jsonl, "--",
                 sys.executable, child, ready, "grandchild", stdout=out, stderr=err)
    wait_until(ready.exists, proc, "the command was ready")
    child_pid, grandchild_pid = map(int, ready.read_text().split())
    wait_until(lambda: lines_in(partial(jsonl)) >= 3, proc, "the tree was sampled")
    assert not jsonl.exists() and not table.exists()
    # WHEN the signal is sent to the monitor alone
    proc.send_signal(signum)
    proc.wait(timeout=120)
    out.close()
    err.close()
    stderr = (tmp_path / "err").read_text()
    try:
        # THEN the command died of it and was not orphaned; both files are
        # complete, the JSON Lines end with their "end" record
        assert proc.returncode == status, stderr
        assert wait_gone(child_pid)
        records = [json.loads(line) for line in jsonl.read_text().splitlines()]
        assert records[0]["event"] == "start" and records[-1]["event"] == "end"
        assert records[-1]["reason"] in ("root exited", "interrupted")
        assert str(child_pid) in table.read_text()
        assert leftovers(tmp_path) == []
        assert "Traceback" not in stderr
    finally:
        try:  # the command's own child is the command's business
            os.kill(grandchild_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("signum, status, reason", [
    (signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_to_tree_on_a_pid_ends_its_outputs_and_spares_the_pid(
        tmp_path, signum, status, reason):
    # GIVEN `tree --pid` watching a process that is not its child
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    table, jsonl = tmp_path / "tree.txt", tmp_path / "tree.jsonl"
    try:
        proc = spawn("tree", "--pid", watched.pid, "-i", "0.02", "-o", table, "--json", jsonl)
        wait_until(lambda: lines_in(partial(jsonl)) >= 2, proc, "a sample was written")
        # WHEN the signal arrives
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
        # THEN both files are complete, the last record says why; the
        # watched process lives on
        assert proc.returncode == status, stderr
        assert stderr == ""
        last = json.loads(jsonl.read_text().splitlines()[-1])
        assert last["event"] == "end" and last["reason"] == reason, last
        assert str(watched.pid) in table.read_text()
        assert leftovers(tmp_path) == []
        assert watched.poll() is None
    finally:
        watched.kill()
        watched.wait()


def test_kill_9_leaves_no_partial_file_at_the_path(tmp_path):
    # GIVEN `process -o LOG` and `tree --json` running
    log, jsonl = tmp_path / "run.jsonl", tmp_path / "tree.jsonl"
    # (no pipes: the command, orphaned by the kill, would hold them open)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [spawn("process", "-q", "-i", "0.01", "-o", log, "--", sys.executable, "-c",
                   "import time; time.sleep(600)", **quiet),
             spawn("tree", "-i", "0.01", "--json", jsonl, "-o", os.devnull, "--",
                   sys.executable, "-c", "import time; time.sleep(600)", **quiet)]
    children = []
    try:
        for proc, path in zip(procs, (log, jsonl)):
            wait_until(lambda p=path: lines_in(partial(p)) >= 3, proc, "records were written")
            children += [c.pid for c in psutil.Process(proc.pid).children()]
            # WHEN it is killed with SIGKILL
            proc.kill()
            proc.wait()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # THEN nothing is at the paths; the temporary files hold whole lines
    assert not log.exists() and not jsonl.exists()
    for path in (log, jsonl):
        with open(partial(path), encoding="utf-8") as stream:
            text = stream.read()
        assert text.endswith("\n")
        assert all(json.loads(line) for line in text.splitlines())


# ------------------------------------------- full disk, paths, pipes


@needs_dev_full
@pytest.mark.parametrize("argv, prefix", [
    (pymemtrace("process", "-o", FULL, "--", *NAP), "pymemtrace process: error: cannot write /dev/full"),
    (pymemtrace("process", "-i", "0.05", "--svg", FULL, "--", *NAP),
     "pymemtrace process: error: cannot write /dev/full"),
    (pymemtrace("tree", "--count", "2", "-i", "0.01", "-o", FULL),
     "pymemtrace tree: error: cannot write /dev/full"),
    (pymemtrace("tree", "--count", "2", "-i", "0.01", "--json", FULL),
     "pymemtrace tree: error: cannot write /dev/full"),
])
def test_an_output_on_a_full_disk_is_one_line_and_exit_1(tmp_path, argv, prefix):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr, prefix)
    assert line.endswith("no space left on device")
    assert leftovers(tmp_path) == []


def a_log(tmp_path):
    log = tmp_path / "run.jsonl"
    made = subprocess.run(pymemtrace("process", "-q", "-i", "0.02", "-o", log, "--", *NAP),
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return log


@needs_dev_full
@pytest.mark.parametrize("module", ["pymemtrace.process", "pymemtrace.process_tree"])
def test_python_dash_m_with_stdout_on_a_full_disk_is_one_line(tmp_path, module):
    # GIVEN stdout on a full disk  WHEN the seed-named modules write to it
    args = [str(a_log(tmp_path))] if module == "pymemtrace.process" else [
        "--count", "2", "-i", "0.01"]
    with open(FULL, "w") as out:
        result = subprocess.run([sys.executable, "-m", module, *args], stdout=out,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    # THEN one line, status 1
    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr, f"python -m {module}: error: cannot write")
    assert line.endswith("no space left on device")


@pytest.mark.parametrize("args", [["-i", "nan"], ["-i", "1e10"], ["-p", "0x"], ["--bogus"],
                                  ["-l", "LOUD"]])
def test_python_dash_m_process_with_a_bad_option_is_one_line(args):
    result = subprocess.run([sys.executable, "-m", "pymemtrace.process", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    one_error_line(result.stderr, "python -m pymemtrace.process: error: ")


@pytest.mark.parametrize("option", ["-o", "--svg"])
@pytest.mark.parametrize("where", ["missing-dir", "directory", "read-only-dir"])
def test_an_unwritable_path_is_one_line_and_the_command_never_runs(tmp_path, option, where):
    if where == "read-only-dir" and os.geteuid() == 0:
        pytest.skip("root writes in read-only directories")
    ran = tmp_path / "ran"
    bad = {"missing-dir": tmp_path / "missing" / "out",
           "directory": tmp_path,
           "read-only-dir": tmp_path / "ro" / "out"}[where]
    if where == "read-only-dir":
        bad.parent.mkdir()
        bad.parent.chmod(0o555)
    result = subprocess.run(
        pymemtrace("process", option, bad, "--", sys.executable, "-c",
                   f"open({str(ran)!r}, 'w')"),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    one_error_line(result.stderr, f"pymemtrace process: error: cannot write {bad}")
    assert not ran.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("which", ["process-command", "process-summary", "tree", "python-m"])
def test_a_reader_that_leaves_is_one_line_and_exit_1(tmp_path, which):
    # GIVEN stdout a pipe nobody reads (`... | head -1` after head left)
    argv = {
        "process-command": pymemtrace("process", "-i", "0.02", "--", *NAP),
        "process-summary": pymemtrace("process", "--summary", a_log(tmp_path)
                                      if which == "process-summary" else "x"),
        "tree": pymemtrace("tree", "--count", "3", "-i", "0.01"),
        "python-m": [sys.executable, "-m", "pymemtrace.process",
                     str(a_log(tmp_path)) if which == "python-m" else "x"],
    }[which]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, text=True,
                                timeout=120)
    finally:
        os.close(write_end)
    # THEN status 1 and one line on stderr
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.rstrip().endswith(": error: cannot write stdout: its reader has gone (broken pipe)"), result.stderr


# ---------------------------------------------------------- long run


def test_a_long_run_at_the_fastest_interval_keeps_the_monitors_memory_flat(tmp_path):
    # GIVEN `pymemtrace process` at its fastest interval, logging and
    # charting a command that lives until we stop it
    log, svg = tmp_path / "run.jsonl", tmp_path / "run.svg"
    env = dict(os.environ)
    # Bytes a sample the monitor may grow by: keeping each record costs
    # some 600 (1,100 measured), a flat monitor well under 64.  Under make
    # test-asan every free would wait in ASan's quarantine (up to 256 MiB),
    # so RSS would grow with the frees: the quarantine is switched off, and
    # ASan's own books (its stack depot fills as new stacks are seen) take
    # some 90 bytes a sample over this stretch.
    bound = 64
    if "libasan" in env.get("LD_PRELOAD", ""):
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0"
        bound = 256
    proc = spawn("process", "-q", "-i", "0.001", "-o", log, "--svg", svg, "--",
                 sys.executable, "-c", "import time; time.sleep(3600)", env=env)
    monitor = psutil.Process(proc.pid)
    try:
        # WHEN it has logged a first stretch of samples, then many more
        def rss_at(samples):
            wait_until(lambda: lines_in(partial(log)) >= samples, proc,
                       f"{samples} samples were logged")
            return monitor.memory_info().rss, lines_in(partial(log))

        rss_at(1000)  # warmed up: imports, caches, the first chart points
        early, n_early = rss_at(2000)
        late, n_late = rss_at(8000)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    # THEN its RSS did not grow with the samples: keeping each record would
    # cost some 600 bytes a sample, about 3.5 MiB over this stretch
    grew = late - early
    per_sample = grew / (n_late - n_early)
    assert per_sample < bound, (grew, n_late - n_early)
    # AND the run ended well, its outputs complete
    assert proc.returncode == 143, stderr
    ET.parse(svg)
    assert log.read_text().count("\n") >= n_late
