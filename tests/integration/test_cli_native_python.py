"""`pymemtrace native -- python SCRIPT`: when the script imports pymemtrace's
extension, the report merges the Python stack of the allocating thread
with the native one: a C function's leak is named by the C function and by
the Python line that called it, each caller its own site."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fixtures.build import build_fixture  # noqa: E402
from native_helpers import KIB, compile_prog, needs_tracer  # noqa: E402

pytestmark = needs_tracer

# Line numbers below are the script's own (1-based).
SCRIPT = """\
import sys
import pymemtrace._native  # the extension gives the tracer Python stacks
import leaky_ext

CALL = getattr(leaky_ext, sys.argv[1])


def many():
    for _ in range(10000):
        CALL(1024)


def few():
    for _ in range(100):
        CALL(1024)


many()
few()
if sys.argv[2:] == ["threads"]:
    import threading

    def released():
        return leaky_ext.traced_alloc_nogil(4096)

    worker = threading.Thread(target=released)
    worker.start()
    worker.join()
    leaky_ext.leak_malloc_in_c_thread(8192)
if sys.argv[2:] == ["fork"]:
    import os

    pid = os.fork()
    if pid == 0:
        many()
        os._exit(0)
    os.waitpid(pid, 0)
"""
MANY_LINE = 10  # CALL(1024) in many()
FEW_LINE = 15  # CALL(1024) in few()
MANY_CALLER_LINE = 18  # many() at module level


# The same script for a program that never imports pymemtrace (same lines).
SCRIPT_UNAWARE = SCRIPT.replace("import pymemtrace._native  # the extension gives the tracer Python stacks",
                                "pass  # pymemtrace native loads the extension itself")
assert SCRIPT_UNAWARE != SCRIPT


def run(cli, tmp_path, *args, name="out", processes=1, options=(), text=SCRIPT, path_first=()):
    script = tmp_path / "prog.py"
    script.write_text(text)
    path = os.pathsep.join([*path_first, str(build_fixture("leaky_ext")), os.environ.get("PYTHONPATH", "")])
    outdir = tmp_path / name
    result = cli("native", "-o", outdir, *options, "--", sys.executable, str(script), *args, env={"PYTHONPATH": path})
    assert result.returncode == 0, result.stderr
    assert "sitecustomize" not in result.stderr, result.stderr
    report = cli("report", outdir, "--format", "json")
    assert report.returncode == 0, report.stderr
    found = json.loads(report.stdout)["processes"]
    assert len(found) == processes
    assert all(process["complete"] for process in found)
    return str(script), found[0] if processes == 1 else found


def sites_of(section, function):
    """The sites whose innermost frame is the C function ``function``."""
    return [s for s in section["sites"] if s["frames"] and s["frames"][0]["function"] == function]


def python_frames(site):
    return [f for f in site["frames"] if f["python"]]


def test_leak_named_by_c_function_and_each_python_caller(cli, tmp_path):
    # GIVEN a script whose many() leaks 1 KiB 10,000 times through a C
    # function, and few() 100 times through the same one
    script, process = run(cli, tmp_path, "leak_malloc")
    # WHEN its leaks are reported
    sites = sites_of(process["leaked"], "leak_malloc")
    # THEN the C function is named (symbolized, in the fixture's library),
    # once for each Python caller: two sites
    assert len(sites) == 2, [s["frames"][:4] for s in sites]
    for site in sites:
        assert site["frames"][0]["python"] is False
        assert "leaky_ext" in os.path.basename(site["frames"][0]["library"])
    by_line = {python_frames(s)[0]["line"]: s for s in sites}
    assert set(by_line) == {MANY_LINE, FEW_LINE}
    many, few = by_line[MANY_LINE], by_line[FEW_LINE]
    # AND the Python frames follow the C one, innermost first, with the
    # file, the function and the line (no interpreter frame between)
    first = many["frames"][1]
    assert first == {"function": "many", "file": script, "line": MANY_LINE, "library": None, "python": True}
    assert many["frames"][2]["function"] == "<module>"
    assert many["frames"][2]["line"] == MANY_CALLER_LINE
    assert all(f["python"] for f in many["frames"][1:])
    assert python_frames(few)[0]["function"] == "few"
    # AND 10 MB (+-5%) live at exit for many(), 100 KiB for few()
    assert abs(many["bytes"] - 10000 * KIB) <= 0.05 * 10000 * KIB
    assert many["blocks"] == 10000
    assert (few["bytes"], few["blocks"]) == (100 * KIB, 100)


def test_the_freeing_twin_leaves_no_site(cli, tmp_path):
    # GIVEN the same script calling malloc_ok (malloc then free)
    _, process = run(cli, tmp_path, "malloc_ok")
    # THEN nothing of it is live at exit, though all its calls were seen
    assert sites_of(process["leaked"], "malloc_ok") == []
    assert process["leaked"]["bytes"] < 10000 * KIB // 4
    (row,) = [r for r in process["functions"] if r["function"] == "malloc_ok"]
    assert (row["mallocs"], row["frees"]) == (10100, 10100)
    assert row["bytes_allocated"] == row["bytes_freed"] == 10100 * KIB


def test_threads_without_the_gil_and_c_threads(cli, tmp_path):
    # GIVEN a Python thread that mallocs inside a C call that released the
    # GIL, and a C thread that mallocs while the main thread holds the GIL
    _, process = run(cli, tmp_path, "leak_malloc", "threads")
    # THEN both leaks are found; the Python thread's with its own Python
    # frames after the native ones (read without the GIL: released() and
    # threading's frames, named or `<python>` when their code allocated
    # nothing holding the GIL; tests/integration/test_native_nogil_python.py
    # checks the names)
    (released,) = sites_of(process["leaked"], "traced_alloc_nogil")
    assert released["bytes"] == 4096
    kinds = [f["python"] for f in released["frames"]]
    assert kinds[0] is False and True in kinds
    assert all(kinds[kinds.index(True):]), released["frames"]
    assert not any(f["function"] == "<module>" for f in python_frames(released))
    # AND the C thread, which never ran Python, has native frames only
    (c_thread,) = sites_of(process["leaked"], "c_thread_leak")
    assert c_thread["bytes"] == 8192
    assert python_frames(c_thread) == []
    # AND the thread holding the GIL still has its Python frames
    assert len(sites_of(process["leaked"], "leak_malloc")) == 2


def test_a_c_program_has_no_python_frames(cli, tmp_path):
    # GIVEN a plain C program that leaks
    prog = compile_prog(tmp_path)
    result = cli("native", "-o", tmp_path / "out", "--", prog, "leak", "300")
    assert result.returncode == 0, result.stderr
    report = cli("report", tmp_path / "out", "--format", "json")
    (process,) = json.loads(report.stdout)["processes"]
    # THEN its leak is found, and no frame anywhere is a Python one
    assert sites_of(process["leaked"], "leak_kib")[0]["bytes"] == 300 * KIB
    for section in ("leaked", "peak"):
        assert not any(f["python"] for s in process[section]["sites"] for f in s["frames"])


def test_text_report_shows_the_python_line(cli, tmp_path):
    script, _ = run(cli, tmp_path, "leak_malloc")
    report = cli("report", tmp_path / "out")
    assert report.returncode == 0, report.stderr
    assert f"many {script}:{MANY_LINE}" in report.stdout
    assert f"few {script}:{FEW_LINE}" in report.stdout


def test_a_forked_child_names_its_python_frames(cli, tmp_path):
    # GIVEN a script whose forked child calls many() again (its code object
    # was seen, and written to the parent's capture by its periodic
    # snapshots, before the fork)
    script, (parent, child) = run(cli, tmp_path, "leak_malloc", "fork", processes=2,
                                  options=("--interval-ms", "1"))
    assert child["ppid"] == parent["pid"]
    # THEN the child's own capture names them too
    (site,) = sites_of(child["leaked"], "leak_malloc")
    assert (site["bytes"], site["blocks"]) == (10000 * KIB, 10000)
    assert python_frames(site)[0] == {"function": "many", "file": script, "line": MANY_LINE,
                                      "library": None, "python": True}


def many_site(process):
    return [s for s in sites_of(process["leaked"], "leak_malloc") if s["blocks"] == 10000]


def test_a_program_that_never_imports_pymemtrace_gets_its_python_frames(cli, tmp_path):
    # GIVEN the script without its import of pymemtrace
    script, process = run(cli, tmp_path, "leak_malloc", text=SCRIPT_UNAWARE)
    # THEN pymemtrace native loaded the extension into it: the Python caller
    # is named as when the script imports it
    (site,) = many_site(process)
    assert python_frames(site)[0] == {"function": "many", "file": script, "line": MANY_LINE,
                                      "library": None, "python": True}


def test_no_python_frames_when_asked_not_to_load_pymemtrace(cli, tmp_path):
    # GIVEN the same program run with --no-python-frames  THEN its leak is
    # found with native frames only
    _, process = run(cli, tmp_path, "leak_malloc", text=SCRIPT_UNAWARE, options=("--no-python-frames",))
    sites = sites_of(process["leaked"], "leak_malloc")
    assert sum(site["blocks"] for site in sites) == 10100
    assert not any(python_frames(site) for site in sites)


def test_the_programs_own_sitecustomize_still_runs(cli, tmp_path):
    # GIVEN a sitecustomize of the user's on PYTHONPATH, which the boot hides
    own = tmp_path / "own"
    own.mkdir()
    marker = tmp_path / "sitecustomize-ran"
    (own / "sitecustomize.py").write_text(
        "import sys\n"
        f"with open({str(marker)!r}, 'w') as out:\n"
        "    out.write(repr([p for p in sys.path if 'pymemtrace-native-' in p]))\n")
    _, process = run(cli, tmp_path, "leak_malloc", text=SCRIPT_UNAWARE, path_first=(str(own),))
    # THEN it ran, with our boot directory gone from sys.path
    assert marker.read_text() == "[]"
    # AND the Python frames are there
    (site,) = many_site(process)
    assert python_frames(site)[0]["function"] == "many"


def test_pytest_runs_under_the_tracer_with_warnings_as_errors(cli, tmp_path):
    # GIVEN a test file, run by pytest (with pymemtrace's plugin installed,
    # which pymemtrace native's boot imports first) under -W error
    (tmp_path / "test_small.py").write_text("def test_one():\n    assert [0] * 3 == [0, 0, 0]\n")
    result = cli("native", "-o", tmp_path / "out", "--", sys.executable, "-W", "error", "-m", "pytest",
                 "-p", "no:cacheprovider", "-q", str(tmp_path / "test_small.py"), cwd=str(tmp_path))
    # THEN it runs as it would without the tracer
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
