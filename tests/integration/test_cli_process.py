"""`pymemtrace process` and `python -m pymemtrace.process` end to end."""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

MiB = 1 << 20
# Grows by 32 MiB in steps, then exits with the status given as argv[1].
GROWER = (
    "import sys, time\n"
    "keep = []\n"
    "time.sleep(0.2)\n"
    "for _ in range(8):\n"
    "    keep.append(bytearray(4 << 20))\n"
    "    time.sleep(0.05)\n"
    "time.sleep(0.2)\n"
    "sys.exit(int(sys.argv[1]))\n"
)


def one_line_error(result, code):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("pymemtrace process: error: ")


def test_run_a_command_log_chart_and_summary(cli, tmp_path):
    log, svg = tmp_path / "run.jsonl", tmp_path / "run.svg"
    result = cli("process", "-i", "0.05", "-o", log, "--svg", svg, "--",
                 sys.executable, "-c", GROWER, "0")
    assert result.returncode == 0, result.stderr
    # stdout is not a terminal: no live lines, only the summary
    lines = result.stdout.splitlines()
    assert lines[0].startswith("pid")
    assert any("growth +" in line for line in lines)
    assert f"log: {log}" in lines and f"chart: {svg}" in lines
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["event"] == "START" and records[-1]["event"] == "STOP"
    assert len({r["pid"] for r in records}) == 1
    rss = [r["memory_info"]["rss"] for r in records]
    assert max(rss) - rss[0] >= 28 * MiB
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_the_exit_status_of_the_command_is_returned(cli):
    result = cli("process", "-q", "-i", "0.05", "--", sys.executable, "-c", GROWER, "3")
    assert result.returncode == 3
    assert "growth" in result.stdout


def test_watch_a_pid_for_a_duration(cli, tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    log = tmp_path / "pid.jsonl"
    try:
        result = cli("process", "--pid", child.pid, "--duration", "0.4", "-i", "0.05",
                     "-o", log)
    finally:
        child.kill()
        child.wait()
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["pid"] for r in records} == {child.pid}
    assert records[-1]["event"] == "STOP" and len(records) >= 3


def test_watch_a_pid_until_it_exits(cli):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    try:
        result = cli("process", "--pid", child.pid, "-i", "0.05")
    finally:
        child.kill()
        child.wait()
    assert result.returncode == 0, result.stderr
    assert str(child.pid) in result.stdout


def test_summary_of_an_existing_log_with_plots(cli, tmp_path):
    log = tmp_path / "service.log"
    rec = {"timestamp": "2024-01-01 00:00:00.000000", "memory_info": {"rss": 5 * MiB},
           "cpu_times": {"user": 0.1, "system": 0.0}, "elapsed_time": 1.0, "pid": 77}
    rec2 = dict(rec, memory_info={"rss": 9 * MiB}, elapsed_time=3.0, label="batch")
    log.write_text(
        f"x ProcessLoggingThread-JSON-START {json.dumps(rec)}\n"
        "x ProcessLoggingThread-JSON {corrupt\n"
        f"x ProcessLoggingThread-JSON-STOP {json.dumps(rec2)}\n"
    )
    result = cli("process", "--summary", log, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "+4.0 MiB" in result.stdout and "+2.0 MiB/s" in result.stdout
    assert "1: batch" in result.stdout and "skipped 1 unreadable line" in result.stdout
    assert (tmp_path / "out" / "service.log_77.svg").exists()
    # the module entry point reads the same file
    module = subprocess.run([sys.executable, "-m", "pymemtrace.process", str(log)],
                            capture_output=True, text=True)
    assert module.returncode == 0 and "+4.0 MiB" in module.stdout


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["-i", "0", "--", "true"], 2, "interval"),
        (["-i", "soon", "--", "true"], 2, "interval"),
        (["--pid", "0"], 2, "pid"),
        (["--pid", "-5"], 2, "pid"),
        ([], 2, "exactly one"),
        (["--pid", "1", "--", "true"], 2, "exactly one"),
        (["--duration", "1", "--", "true"], 2, "--duration"),
        (["--summary", "a", "b", "c"], 2, "--summary"),
        # the one child runner's statuses, as a shell's
        (["--", "no-such-command-pmt"], 127, "command not found: no-such-command-pmt"),
        (["--", __file__], 126, "permission denied"),
        (["-o", "/nonexistent-dir/x.jsonl", "--", "true"], 1, "/nonexistent-dir/x.jsonl"),
        (["--svg", "/nonexistent-dir/x.svg", "--", "true"], 1, "/nonexistent-dir/x.svg"),
        (["--summary", "/nonexistent-dir/x.log"], 1, "cannot read /nonexistent-dir/x.log"),
        (["--summary", __file__], 1, "no process records in"),
    ],
)
def test_user_errors_are_one_line(cli, args, code, words):
    result = cli("process", *args)
    one_line_error(result, code)
    assert words in result.stderr


def test_a_pid_that_does_not_exist(cli):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    result = cli("process", "--pid", child.pid)
    one_line_error(result, 1)
    assert f"no process with pid {child.pid}" in result.stderr


def test_help_has_an_example(cli):
    result = cli("process", "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout and "pymemtrace process --pid" in result.stdout


# -- issue 9, point 6: what a new user tripped on ----------------------------

@pytest.mark.parametrize("interval, warned", [("5", True), ("0.05", False)])
def test_a_command_that_ends_before_the_first_sample_is_warned_about(
    cli, interval, warned
):
    # GIVEN a command that lasts about 0.3 s
    # WHEN it is watched with an interval longer than that (and, the twin,
    # a much shorter one)
    result = cli("process", "-q", "-i", interval, "--",
                 sys.executable, "-c", "import time; time.sleep(0.3)")
    # THEN its exit status is kept, and only the long interval prints a
    # one-line warning that it ended before the first sample
    assert result.returncode == 0, result.stderr
    warnings = [x for x in result.stderr.splitlines() if "warning" in x]
    if warned:
        assert len(warnings) == 1 and result.stderr.count("\n") == 1
        assert warnings[0].startswith("pymemtrace process: warning: ")
        assert "ended before the first sample" in warnings[0]
    else:
        assert warnings == []


def test_the_first_sample_is_of_the_command_after_its_exec(cli, tmp_path):
    # GIVEN short commands watched from their start, several times (the
    # sample could catch the exec under way: an empty address space)
    for i in range(12):
        log = tmp_path / f"r{i}.jsonl"
        # WHEN pymemtrace process starts the command
        result = cli("process", "-q", "-i", "5", "-o", log, "--", "sleep", "0.05")
        assert result.returncode == 0, result.stderr
        start = json.loads(log.read_text().splitlines()[0])
        # THEN the START record is of the loaded program: more than a page
        # of address space, and not the Python that started it
        assert start["event"] == "START"
        if "libasan" in os.environ.get("LD_PRELOAD", ""):
            # make test-asan preloads ASan into `sleep` too: its shadow
            # reservation makes every address space ~20 TiB, so tell the
            # two apart by resident memory (`sleep` with ASan ~5 MiB, the
            # Python that started it with ASan ~40 MiB)
            assert 16 * 4096 < start["memory_info"]["rss"] < 16 * MiB, start
        else:
            assert 16 * 4096 < start["memory_info"]["vms"] < 64 * MiB, start


def test_the_seeds_process_options_are_accepted(tmp_path):
    # GIVEN a process to watch
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"])
    try:
        # WHEN the seed's command line watches it: -p PID -i INTERVAL -l LEVEL
        result = subprocess.run(
            [sys.executable, "-m", "pymemtrace.process", "-p", str(child.pid),
             "-i", "0.1", "-l", "20"],
            capture_output=True, text=True, timeout=60)
    finally:
        child.kill()
        child.wait()
    # THEN it logs the process's records at INFO until the process ends
    assert result.returncode == 0, result.stderr
    assert "INFO" in result.stderr
    assert "ProcessLoggingThread-JSON-START" in result.stderr
    assert "ProcessLoggingThread-JSON-STOP" in result.stderr
    assert f'"pid": {child.pid}' in result.stderr


@pytest.mark.parametrize(
    "options, shown", [(["-l", "20"], "INFO"), (["--log_level", "INFO"], "INFO"),
                       (["-l", "30"], "WARNING"), ([], None)]
)
def test_pymemtrace_process_accepts_the_seeds_log_level(cli, options, shown):
    # WHEN `pymemtrace process` runs a command with -l LEVEL (the twin:
    # without it)
    result = cli("process", "-q", "-i", "0.05", *options, "--",
                 sys.executable, "-c", "import time; time.sleep(0.2)")
    # THEN each record is also logged on stderr at that level, as the seed
    # did; without -l stderr stays quiet
    assert result.returncode == 0, result.stderr
    if shown is None:
        assert result.stderr == ""
    else:
        assert "ProcessLoggingThread-JSON-START" in result.stderr
        assert f" {shown} " in result.stderr


def test_a_bad_log_level_is_one_line(cli):
    result = cli("process", "-l", "bogus", "--", "true")
    one_line_error(result, 2)
    assert "log level" in result.stderr
