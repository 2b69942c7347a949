"""The cached DWARF unwinder of exact mode (native/unwind.c) gives the very
frames glibc's backtrace() gives: with PYMEMTRACE_NATIVE_UNWIND_CHECK=1
every stack is taken both ways and the differences are counted (one line
per process on stderr at exit); a planted difference shows the count can
fail, and unloading code switches the cache off."""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_helpers import compile_prog, needs_tracer  # noqa: E402

pytestmark = [
    needs_tracer,
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="the cached unwinder is x86-64 only"),
]

CHECK_LINE = re.compile(r"unwind check: pid (\d+), (\d+) stacks, (\d+) by the cache, (\d+) differ")

PY_PROGRAM = """\
import decimal
import json
import re
import threading


def work(seed):
    table = {}
    for i in range(3000):
        key = f"k{seed}-{i}"
        table[key] = [i, str(i) * (i % 7), {"n": i, "s": key}]
    text = json.dumps(table)
    back = json.loads(text)
    words = re.findall(r"k\\d+-(\\d+)", text)
    total = sum(decimal.Decimal(w) / 7 for w in words[:500])
    return len(back), total


threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
for thread in threads:
    thread.start()
work(99)
for thread in threads:
    thread.join()
"""


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    return compile_prog(tmp_path_factory.mktemp("native_prog"))


def checked(cli, outdir, *command, depth=16, check="1"):
    """Runs command under the tracer with the check on: the check lines."""
    result = cli("native", "-o", outdir, "--depth", str(depth), "--", *command,
                 env={"PYMEMTRACE_NATIVE_UNWIND_CHECK": check}, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [tuple(int(g) for g in m.groups()) for m in CHECK_LINE.finditer(result.stderr)]
    assert lines, result.stderr
    return lines


@pytest.mark.parametrize("depth", [16, 64])
@pytest.mark.parametrize("args", [("leak", "2000"), ("free", "2000"), ("threads", "4", "500"),
                                  ("fork", "200"), ("forkbusy", "20"), ("kinds", "50")])
def test_c_program_stacks_are_backtraces_own(cli, prog, tmp_path, args, depth):
    # GIVEN the planted-leak program in one of its modes, every stack taken
    # both ways (depth 64 reaches _start and the threads' first frame)
    lines = checked(cli, tmp_path / "out", prog, *args, depth=depth)
    # THEN no stack differs, in any process, and the cache did the walking
    # (a stack it declines goes to backtrace() whole: right, only slower;
    # a fork among busy threads meets one now and then)
    for _pid, stacks, cached, differ in lines:
        assert differ == 0, lines
        assert stacks > 0 and cached >= 0.99 * stacks, lines
    if args[0].startswith("fork"):
        assert len(lines) >= 2, lines


@pytest.mark.parametrize("depth", [16, 64])
def test_python_program_stacks_are_backtraces_own(cli, tmp_path, depth):
    # GIVEN a Python program with threads: dicts, lists, json, re, decimal
    script = tmp_path / "mixed.py"
    script.write_text(PY_PROGRAM)
    # WHEN it runs with every stack taken both ways (Python frames on)
    (_pid, stacks, cached, differ), = checked(cli, tmp_path / "out", sys.executable, script, depth=depth)
    # THEN tens of thousands of stacks, nearly all walked by the cache, none
    # differ
    assert differ == 0
    assert stacks > 10000
    assert cached >= 0.99 * stacks


def test_a_planted_difference_is_counted(cli, prog, tmp_path):
    # GIVEN the check told to drop a frame of the cached walk (its twin,
    # the real check, is every test above)
    lines = checked(cli, tmp_path / "out", prog, "leak", "300", check="planted")
    # THEN every stack of the program is counted as different
    (_pid, stacks, cached, differ), = lines
    assert stacks >= 300 and differ == cached == stacks


def test_unloading_code_switches_the_cache_off(cli, tmp_path):
    # GIVEN a program that dlcloses a library halfway, and its twin that
    # does not
    body = ("import ctypes, _ctypes, json\n"
            "handle = ctypes.CDLL('libm.so.6')\n"
            "a = [json.dumps({'a': list(range(i))}) for i in range(300)]\n"
            "if CLOSE:\n"
            "    _ctypes.dlclose(handle._handle)\n"
            "b = [json.dumps({'a': list(range(i))}) for i in range(300)]\n")
    closes = tmp_path / "closes.py"
    closes.write_text("CLOSE = True\n" + body)
    keeps = tmp_path / "keeps.py"
    keeps.write_text("CLOSE = False\n" + body)
    (_, stacks, cached, differ), = checked(cli, tmp_path / "c", sys.executable, closes)
    (_, twin_stacks, twin_cached, twin_differ), = checked(cli, tmp_path / "k", sys.executable, keeps)
    # THEN after the dlclose backtrace() takes the stacks; before it and
    # in the twin the cache does; nothing differs
    assert differ == twin_differ == 0
    assert 0 < cached < stacks - 300
    assert twin_cached == twin_stacks


def test_the_cache_can_be_switched_off(cli, prog, tmp_path):
    result = cli("native", "-o", tmp_path / "out", "--", prog, "leak", "100",
                 env={"PYMEMTRACE_NATIVE_UNWIND_CHECK": "1", "PYMEMTRACE_NATIVE_UNWIND_CACHE": "0"})
    assert result.returncode == 0, result.stderr
    # the check compares nothing: no stack went through the cache
    assert "unwind check" not in result.stderr
