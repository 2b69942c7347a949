"""ref_trace_analyse: the seed project's options and console script."""
import os
import shutil
import subprocess
import sysconfig

import pytest

from pymemtrace.util.ref_trace_analyse import analyse_file, main

HEAD = "SOF\nHDR:\tEvent\tClock\tAddress\tType\tLive\tFile\t#line\tFunction\n"


def write(path, body):
    path.write_text(HEAD + body + "EOF\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def nested(tmp_path):
    """An outer log naming an inner one (as a nested ReferenceTracing writes them)."""
    inner = write(
        tmp_path / "inner.log",
        "NEW:\t1\t0.1\t0x10\tm.Inner\t1\t/src/pkg/m.py\t5\tf\n"
        "NEW:\t2\t0.2\t0x20\tm.Tmp\t1\t/src/pkg/m.py\t6\tf\n"
        "DEL:\t3\t0.3\t0x20\tm.Tmp\t0\t/src/pkg/m.py\t7\tf\n",
    )
    outer = write(
        tmp_path / "outer.log",
        "NEW:\t1\t0.1\t0x30\tm.Outer\t1\t/src/pkg/m.py\t2\tg\n"
        "DEL:\t2\t0.15\t0x99\tm.Old\t0\t/src/pkg/m.py\t3\tg\n"
        f"MSG:\t3\t0.2\t# Detaching this Reference Tracing file wrapper. New file: {inner}\n"
        "MSG:\t3\t0.5\t# Re-attaching this Reference Tracing file wrapper.\n",
    )
    return outer, inner


def test_recurse_files_adds_the_nested_logs(nested):
    outer, inner = nested
    # WHEN read alone, then with recurse_files
    alone = analyse_file(outer)
    both = analyse_file(outer, recurse_files=True)
    # THEN only the recursive read knows the inner log's objects
    assert "m.Inner" not in alone.types and alone.nested_files == [inner]
    assert both.files == [outer, inner]
    assert both.types["m.Inner"].live == 1 and both.types["m.Outer"].live == 1
    assert both.n_new == 3 and both.n_del == 2


def test_recurse_files_finds_a_relative_name_beside_the_log(tmp_path, monkeypatch):
    # GIVEN a nested log named relative to another cwd (the traced program's)
    write(tmp_path / "child.log", "NEW:\t1\t0.1\t0x10\tm.C\t1\tm.py\t5\tf\n")
    outer = write(
        tmp_path / "outer.log",
        "MSG:\t1\t0.2\t# Detaching this Reference Tracing file wrapper. New file: elsewhere/child.log\n",
    )
    monkeypatch.chdir("/")
    # THEN it is found beside the outer log
    assert analyse_file(outer, recurse_files=True).types["m.C"].created == 1


def test_include_historical_keeps_the_pairs_only_when_asked(nested):
    outer, inner = nested
    assert analyse_file(inner).historical == []
    [pair] = analyse_file(inner, include_historical=True).historical
    assert pair[0] == "0x20" and pair[1] == "m.Tmp" and (pair[2].line, pair[4].line) == (6, 7)


def test_cli_seed_options(nested, capsys):
    outer, _ = nested
    # WHEN the script runs with every option of the seed's script
    rc = main([outer, "--recurse-files", "--include-historical", "--include-untracked", "-l", "30"])
    out = capsys.readouterr().out
    # THEN it lists logs read, untracked, live and previous objects, short file names
    assert rc == 0
    assert "Logs read [2]:" in out
    assert "Untracked objects (DEL: without NEW:) [1]:" in out and "m.Old" in out
    assert "0x10 0.100000 m.Inner f m.py#5" in out
    assert "Previous objects, sorted by clock [1]:" in out and "0x20 m.Tmp NEW: t: 0.200000 m.py#6" in out
    assert "/src/pkg/" not in out
    # AND --full-path keeps the directories; without the options those listings are absent
    main([outer, "--full-path"])
    out = capsys.readouterr().out
    assert "/src/pkg/m.py" in out
    assert "Untracked objects" not in out and "Previous objects" not in out and "Logs read" not in out


def _script():
    scripts = sysconfig.get_path("scripts")
    found = os.path.join(scripts, "pymemtrace_ref_trace_analyse")
    return found if os.path.exists(found) else shutil.which("pymemtrace_ref_trace_analyse")


@pytest.mark.skipif(_script() is None, reason="package not installed with its console scripts")
def test_console_script_is_installed(nested):
    outer, _ = nested
    done = subprocess.run([_script(), outer, "--recurse-files"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "m.Inner" in done.stdout
    bad = subprocess.run([_script(), outer + ".missing"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
