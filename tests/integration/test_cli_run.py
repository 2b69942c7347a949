"""`pymemtrace run --allocations`: the script's behaviour, reports and JSON contract."""

import gzip
import json
import sys
import textwrap

import pytest

BLOCK = sys.getsizeof(bytes(1024))

SCRIPT = textwrap.dedent("""\
    import sys
    print("argv:", sys.argv[1:], __name__)
    kept = [bytes(1024) for _ in range(10_000)]
    tmp = [bytes(1000) for _ in range(5_000)]
    del tmp
    if sys.argv[1:] == ["raise"]:
        raise ValueError("planted")
    if sys.argv[1:] == ["exit"]:
        sys.exit(3)
""")
KEEP_LINE, TMP_LINE = 3, 4


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "leaky.py"
    path.write_text(SCRIPT)
    return path


def site_bytes(sites, path, line):
    return sum(
        s["bytes"] for s in sites if s["file"] == str(path) and s["line"] == line
    )


def test_exact_run_reports_the_line_at_exit_and_the_freed_line_at_peak(
    cli, script, tmp_path
):
    out = tmp_path / "out.json"
    # WHEN the script runs under the exact tracker
    result = cli("run", "--allocations", "-o", out, script, "a", "b")
    # THEN it ran as __main__ with its arguments and succeeded
    assert result.returncode == 0, result.stderr
    assert "argv: ['a', 'b'] __main__" in result.stdout
    doc = json.loads(out.read_text())
    # AND the JSON keeps its contract
    assert doc["schema"] == 1
    assert isinstance(doc["peak_bytes"], int)
    for key in ("sites", "peak_sites"):
        sites = doc[key]
        assert [s["bytes"] for s in sites] == sorted(
            (s["bytes"] for s in sites), reverse=True
        )
        for s in sites:
            assert set(s) >= {"file", "line", "function", "stack", "bytes", "blocks"}
            assert all(set(f) == {"file", "line", "function"} for f in s["stack"])
    # AND the kept line holds 10,000 x 1 KiB within 5%, the freed line nothing
    expected = 10_000 * BLOCK
    assert (
        abs(site_bytes(doc["sites"], script, KEEP_LINE) - expected) <= 0.05 * expected
    )
    assert doc["sites"][0]["line"] == KEEP_LINE
    # (up to the comprehension's cached frame object on 3.9/3.10)
    assert site_bytes(doc["sites"], script, TMP_LINE) < 1024
    # AND at the peak the freed line is there too
    assert site_bytes(doc["peak_sites"], script, TMP_LINE) >= 5_000 * 1000
    assert doc["peak_bytes"] >= expected + 5_000 * 1000
    # AND stacks start at the script, not at pymemtrace's own frames
    assert all("pymemtrace" not in f["file"] for f in doc["sites"][0]["stack"])
    # AND the text report names the line
    assert f"{script}:{KEEP_LINE}" in result.stdout
    assert "live at exit" in result.stdout and "live at peak" in result.stdout


def test_sampled_run_is_within_20_percent(cli, script, tmp_path):
    out = tmp_path / "out.json"
    result = cli(
        "run",
        "--allocations",
        "--sample-bytes",
        "32K",
        "--seed",
        "7",
        "-o",
        out,
        script,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert doc["mode"] == "sampled"
    expected = 10_000 * BLOCK
    assert (
        abs(site_bytes(doc["sites"], script, KEEP_LINE) - expected) <= 0.20 * expected
    )


def test_script_exception_is_its_own_traceback_and_status_1(cli, script):
    result = cli("run", "--allocations", script, "raise")
    assert result.returncode == 1
    assert "ValueError: planted" in result.stderr
    assert str(script) in result.stderr
    assert "pymemtrace/cli" not in result.stderr
    assert "live at exit" in result.stdout  # the report still comes


def test_system_exit_code_is_kept(cli, script):
    result = cli("run", "--allocations", script, "exit")
    assert result.returncode == 3
    assert "live at exit" in result.stdout


def test_collapsed_and_pprof_outputs(cli, script, tmp_path):
    col, pb = tmp_path / "out.txt", tmp_path / "out.pb.gz"
    result = cli("run", "--allocations", "--collapsed", col, "--pprof", pb, script)
    assert result.returncode == 0, result.stderr
    lines = col.read_text().splitlines()
    assert lines
    for line in lines:
        stack, _, count = line.rpartition(" ")
        assert int(count) > 0
        # Allocations made with no Python frame running (interpreter start-up
        # and shutdown, threads without the GIL) have one sentinel frame.
        assert stack == "<no Python frame>" or all(
            frame.count(":") >= 2 for frame in stack.split(";")
        )
    assert any(line.startswith(f"{script}:<module>:{KEEP_LINE}") for line in lines)
    assert gzip.decompress(pb.read_bytes())  # a valid gzip stream


def test_module_mode(cli, tmp_path):
    (tmp_path / "mymod.py").write_text(
        "import sys\nx = [bytes(2048) for _ in range(100)]\n"
        "print('mod', sys.argv[1:])\n"
    )
    out = tmp_path / "o.json"
    result = cli("run", "--allocations", "-o", out, "-m", "mymod", "z", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mod ['z']" in result.stdout
    doc = json.loads(out.read_text())
    assert any(s["file"].endswith("mymod.py") and s["line"] == 2 for s in doc["sites"])


def test_missing_script_is_a_one_line_usage_error(cli, tmp_path):
    result = cli("run", "--allocations", tmp_path / "nope.py")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "can't open file" in result.stderr


def test_unwritable_output_is_a_one_line_error(cli, script, tmp_path):
    result = cli(
        "run", "--allocations", "-o", tmp_path / "no" / "dir" / "x.json", script
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "cannot write" in result.stderr
    assert "argv:" not in result.stdout  # failed before running the script


def test_flamegraph_output(cli, script, tmp_path):
    import xml.etree.ElementTree as ET

    svg = tmp_path / "flame.svg"
    result = cli("run", "--allocations", "--flamegraph", svg, script)
    assert result.returncode == 0, result.stderr
    root = ET.fromstring(svg.read_text(encoding="utf-8"))
    tips = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    # the planted site is a box of its own, named by its line
    assert any(f"{script}:{KEEP_LINE}" in tip for tip in tips), tips[:5]


def test_flamegraph_to_an_unwritable_path_is_one_line(cli, script, tmp_path):
    result = cli("run", "--allocations", "--flamegraph", tmp_path / "no" / "f.svg", script)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr


# -- issue 9, point 6: what a new user tripped on ----------------------------

PACKAGE_DIR = str(__import__("pathlib").Path(__import__("pymemtrace").__file__).parent)

THREAD_SCRIPT = textwrap.dedent("""\
    import threading, time
    KEEP = []
    def late_alloc():
        time.sleep({delay})
        KEEP.append(bytearray(4 << 20))
    threading.Thread(target=late_alloc, daemon={daemon}).start()
    print("body done")
""")


def late_alloc_bytes(doc):
    return sum(s["bytes"] for s in doc["sites"] if s["function"] == "late_alloc")


def test_run_waits_for_non_daemon_threads_before_its_snapshot(cli, tmp_path):
    # GIVEN a script whose non-daemon thread allocates 4 MiB and keeps it
    # after the main body has ended
    script = tmp_path / "threads.py"
    script.write_text(THREAD_SCRIPT.format(delay=0.3, daemon=False))
    out = tmp_path / "o.json"
    # WHEN it runs under the tracker
    result = cli("run", "--allocations", "-o", out, script)
    # THEN run waited for the thread, as Python's exit does: its 4 MiB are
    # live at exit, at the thread's line
    assert result.returncode == 0, result.stderr
    assert "body done" in result.stdout
    assert late_alloc_bytes(json.loads(out.read_text())) >= 4 << 20
    assert f"{script}:5 (late_alloc)" in result.stdout


def test_run_does_not_wait_for_daemon_threads(cli, tmp_path):
    # GIVEN the same script with a daemon thread (the twin): Python's exit
    # does not wait for it
    script = tmp_path / "daemon.py"
    script.write_text(THREAD_SCRIPT.format(delay=30, daemon=True))
    out = tmp_path / "o.json"
    # WHEN it runs under the tracker
    result = cli("run", "--allocations", "-o", out, script, timeout=20)
    # THEN run ends without it, and its memory is not in the snapshot
    assert result.returncode == 0, result.stderr
    assert late_alloc_bytes(json.loads(out.read_text())) == 0


OWN_FRAMES_SCRIPT = textwrap.dedent("""\
    import threading
    from pymemtrace.reporters._units import format_bytes
    KEEP = [format_bytes(i * 1000.5) for i in range(3000)]
    t = threading.Thread(target=lambda: KEEP.append(bytes(100_000)))
    t.start()
    raise ValueError("planted")
""")


def own_frames(doc):
    return [
        f["file"]
        for key in ("sites", "peak_sites")
        for s in doc[key]
        for f in [{"file": s["file"]}, *s["stack"]]
        if f["file"].startswith(PACKAGE_DIR)
    ]


@pytest.mark.parametrize("group_by", ["line", "stack"])
def test_pymemtrace_frames_never_appear_in_run_output(cli, tmp_path, group_by):
    # GIVEN a script that calls a pymemtrace function which allocates the
    # strings it keeps, starts a thread and ends with an exception (the
    # runner then prints its traceback and takes the snapshot)
    script = tmp_path / "own.py"
    script.write_text(OWN_FRAMES_SCRIPT)
    out = tmp_path / "o.json"
    # WHEN it runs under the tracker
    result = cli("run", "--allocations", "--group-by", group_by, "-o", out, script)
    assert result.returncode == 1 and "ValueError: planted" in result.stderr
    doc = json.loads(out.read_text())
    # THEN no site and no stack frame is a file of the pymemtrace package,
    # in the JSON or in the text report
    assert own_frames(doc) == []
    assert PACKAGE_DIR not in result.stdout
    # AND the memory pymemtrace's function allocated for the script is the
    # script's line (the twin: left out frames, not left out memory)
    assert site_bytes(doc["sites"], script, 3) >= 3000 * 40
    assert f"{script}:3" in result.stdout


def test_own_frames_check_sees_a_pymemtrace_frame(tmp_path):
    # GIVEN a document with a site in a pymemtrace file (the planted case)
    frame = {"file": PACKAGE_DIR + "/cli/run.py", "line": 1, "function": "f"}
    doc = {"sites": [{**frame, "stack": [frame]}], "peak_sites": []}
    # THEN the check used above finds it
    assert own_frames(doc) == [frame["file"]] * 2


DEEP_SCRIPT = textwrap.dedent("""\
    def inner():
        return [bytes(1000) for _ in range(300)]
    def outer():
        return inner()
    kept = outer()
""")


@pytest.mark.parametrize("group_by", ["stack", "line"])
def test_group_by_stack_shows_whole_stacks(cli, tmp_path, group_by):
    # GIVEN a script whose memory is allocated two calls deep
    script = tmp_path / "deep.py"
    script.write_text(DEEP_SCRIPT)
    # WHEN it runs with --group-by stack (and, the twin, by line)
    result = cli("run", "--allocations", "--group-by", group_by, script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    top = next(i for i, x in enumerate(lines) if x.endswith(f"{script}:2 (<listcomp>)")
               or x.endswith(f"{script}:2 (inner)"))
    callers = [f"{script}:2 (inner)", f"{script}:4 (outer)", f"{script}:5 (<module>)"]
    below = [x.strip() for x in lines[top + 1:top + 4]]
    if group_by == "stack":
        # THEN the site is followed by its callers, innermost first, indented
        # under the site's own frame
        assert [c for c in callers if c in below or lines[top].endswith(c)] == callers
        column = lines[top].index(str(script))
        assert lines[top + 1].index(str(script)) == column
    else:
        # THEN by line only the allocating line is shown
        assert not any(c in below for c in callers[1:])


@pytest.mark.parametrize(
    "options, expected", [([], None), (["--sample-bytes", "64K"], 64 * 1024)]
)
def test_json_sample_bytes_is_null_in_exact_mode(cli, script, tmp_path, options, expected):
    out = tmp_path / "o.json"
    # WHEN a script runs in exact mode (and, the twin, sampled)
    result = cli("run", "--allocations", *options, "-o", out, script)
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    # THEN the key is there, null in exact mode, the interval when sampled
    assert "sample_bytes" in doc
    assert doc["sample_bytes"] == expected
    assert doc["mode"] == ("exact" if expected is None else "sampled")


C_SCRIPT = textwrap.dedent("""\
    import sys
    import leaky_ext
    for _ in range(48):
        getattr(leaky_ext, sys.argv[1])(1 << 20)
""")


@pytest.mark.parametrize("call, outside", [("leak_malloc", True), ("malloc_ok", False)])
def test_memory_taken_below_pythons_allocators_is_pointed_to_native(cli, tmp_path, call, outside):
    import os

    from fixtures.build import build_fixture

    # GIVEN a script whose C calls keep 48 MiB from malloc (and its twin,
    # which frees them)
    path = tmp_path / "c_leak.py"
    path.write_text(C_SCRIPT)
    env = {"PYTHONPATH": os.pathsep.join([str(build_fixture("leaky_ext")), os.environ.get("PYTHONPATH", "")])}
    # WHEN it runs under run --allocations
    result = cli("run", "--allocations", "-o", tmp_path / "out.json", path, call, env=env)
    assert result.returncode == 0, result.stderr
    stats = json.loads((tmp_path / "out.json").read_text())["stats"]
    note = [line for line in result.stdout.splitlines() if "outside them" in line]
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        # THEN (under ASan, whose RSS is its own) nothing is compared
        assert "rss_start" not in stats and not note
        return
    # THEN the leak's RSS shows outside Python's allocators, with the command
    # that finds it; the twin gets no such line
    assert stats["rss_end"] >= stats["rss_start"]
    if outside:
        assert len(note) == 1 and "pymemtrace native -- python SCRIPT" in note[0], result.stdout
        assert stats["rss_end"] - stats["rss_start"] >= 40 << 20
    else:
        assert note == [], result.stdout
