"""fork.c: one pthread_atfork registration takes every lock in one order.

A child forked while every concern with a lock or a thread is busy (the
sampler thread, the allocation tracker with its raw lock, a Profile log and
its writer thread, the RSS poller, the shrink watch) must find each of them
usable: no lock left held by a thread that does not exist there.
"""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

C_DIR = Path(__file__).resolve().parents[2] / "src" / "pymemtrace" / "_c"


def test_the_extension_registers_one_fork_handler_in_fork_c():
    # GIVEN every C source of the extension (core/ included; native/ is the
    # preload library, a shared object of its own with its own handler)
    calls = []
    for path in sorted(C_DIR.rglob("*.c")):
        if path.relative_to(C_DIR).parts[0] == "native":
            continue
        text = re.sub(r"/\*.*?\*/", "", path.read_text(encoding="utf-8"), flags=re.S)
        calls += [path.relative_to(C_DIR).as_posix()] * len(re.findall(r"\bpthread_atfork\s*\(", text))
    # THEN only fork.c calls pthread_atfork, once
    assert calls == ["fork.c"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_children_forked_while_every_concern_is_busy_can_use_each(tmp_path):
    code = f"""
        import os, threading, warnings
        from pymemtrace import _native, cPyMemTrace
        warnings.simplefilter("ignore", DeprecationWarning)
        _native._shrinkwatch_acquire()
        _native.alloc_counting_start()
        _native.alloc_start(mode="exact", depth=4)
        sampler = _native.Sampler(0.0005)
        sampler.start()
        stop = threading.Event()
        def churn():  # allocations (raw lock) and records on another thread
            while not stop.is_set():
                [bytearray(600) for _ in range(50)]
        worker = threading.Thread(target=churn)
        worker.start()
        bad = 0
        with cPyMemTrace.Profile(0, filepath={str(tmp_path / "parent.log")!r}):
            for i in range(20):
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        _native.alloc_stop()
                        _native.alloc_start(mode="sampled")
                        _native.alloc_snapshot()
                        _native.alloc_stop()
                        with _native.Sampler(0.001) as fresh:
                            pass
                        child_log = {str(tmp_path)!r} + "/child%d.log" % i
                        with cPyMemTrace.Profile(0, filepath=child_log):
                            [object() for _ in range(100)]
                        _native._shrinkwatch_release()
                        code = 0
                    finally:
                        os._exit(code)
                _, status = os.waitpid(pid, 0)
                bad += os.waitstatus_to_exitcode(status) != 0
        stop.set()
        worker.join()
        sampler.stop()
        _native.alloc_stop()
        _native.alloc_counting_stop()
        _native._shrinkwatch_release()
        print("bad children:", bad)
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["bad", "children:", "0"]
    # each child wrote its own complete log, the parent's stayed whole
    for i in range(20):
        assert (tmp_path / f"child{i}.log").read_text().endswith("EOF\n")
    assert (tmp_path / "parent.log").read_text().endswith("EOF\n")
