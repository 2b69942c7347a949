"""pymemtrace._child: the one child runner (spawn, forward signals, exit codes)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from pymemtrace._child import NOT_EXECUTABLE, NOT_FOUND, Child, ChildError, exit_status
from pymemtrace.errors import PymemtraceError

# Writes its pid to argv[1] when ready, then sleeps; on SIGTERM exits 7.
POLITE = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda n, f: sys.exit(7))\n"
    "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
    "for _ in range(60000):\n"
    "    time.sleep(0.01)\n"
)
# Same, but SIGTERM keeps its default action (death by the signal).
PLAIN = POLITE.replace("signal.signal(signal.SIGTERM, lambda n, f: sys.exit(7))\n", "")


def wait_ready(path, child):
    for _ in range(60000):
        if path.exists() and path.read_text():
            return
        assert child.poll() is None, "the command ended before it was ready"
        time.sleep(0.005)
    pytest.fail("never ready")


def test_exit_status_is_passed_through():
    with Child.start([sys.executable, "-c", "raise SystemExit(42)"]) as child:
        assert child.wait() == 42
    assert child.exit_code == 42 and child.poll() == 42


def test_not_found_is_127_and_one_line(tmp_path):
    with pytest.raises(ChildError) as info:
        Child.start([str(tmp_path / "no-such-program")])
    assert info.value.exit_code == NOT_FOUND == 127
    assert isinstance(info.value, PymemtraceError)
    assert str(info.value) == f"command not found: {tmp_path / 'no-such-program'}"


def test_not_executable_is_126(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    with pytest.raises(ChildError) as info:
        Child.start([str(script)])
    assert info.value.exit_code == NOT_EXECUTABLE == 126
    assert "permission denied" in str(info.value)
    # its executable twin runs
    script.chmod(0o755)
    with Child.start([str(script)]) as child:
        assert child.wait() == 0


def test_killed_by_a_signal_is_128_plus_n():
    with Child.start([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"]) as child:
        assert child.wait() == 128 + signal.SIGKILL
    assert exit_status(-15) == 143 and exit_status(3) == 3


def test_sigterm_to_us_is_forwarded_and_the_childs_status_returned(tmp_path):
    # GIVEN a command that exits 7 on SIGTERM, forwarding on
    ready = tmp_path / "ready"
    with Child.start([sys.executable, "-c", POLITE, str(ready)]) as child:
        with child.forwarding():
            wait_ready(ready, child)
            # WHEN SIGTERM reaches us
            os.kill(os.getpid(), signal.SIGTERM)
            status = child.wait()
    # THEN it went on to the command, whose own status comes back; we live on
    assert status == 7
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_forwarded_sigterm_that_kills_the_child_is_143(tmp_path):
    ready = tmp_path / "ready"
    with Child.start([sys.executable, "-c", PLAIN, str(ready)]) as child:
        with child.forwarding():
            wait_ready(ready, child)
            os.kill(os.getpid(), signal.SIGTERM)
            assert child.wait() == 143


def test_leaving_the_block_never_leaves_the_command_running(tmp_path):
    ready = tmp_path / "ready"
    with pytest.raises(ZeroDivisionError):
        with Child.start([sys.executable, "-c", PLAIN, str(ready)]) as child:
            wait_ready(ready, child)
            raise ZeroDivisionError("planted")
    assert child.exit_code == 143
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)  # reaped: not even a zombie


def test_stop_kills_a_command_that_ignores_sigterm(tmp_path):
    ready = tmp_path / "ready"
    stubborn = POLITE.replace("lambda n, f: sys.exit(7)", "signal.SIG_IGN")
    with Child.start([sys.executable, "-c", stubborn, str(ready)]) as child:
        wait_ready(ready, child)
        assert child.stop(grace=0.2) == 128 + signal.SIGKILL


def test_a_sigint_to_us_alone_reaches_the_command_after_the_grace(tmp_path):
    # GIVEN a command that ignores nothing and a KeyboardInterrupt in our wait
    ready = tmp_path / "ready"
    with Child.start([sys.executable, "-c", PLAIN, str(ready)],
                     stderr=subprocess.DEVNULL) as child:
        wait_ready(ready, child)
        # the interrupt is raised as the wait begins (as a SIGINT would)
        calls = []
        real_wait = child.popen.wait

        def wait(timeout=None):
            if not calls:
                calls.append(timeout)
                raise KeyboardInterrupt
            calls.append(timeout)
            return real_wait(timeout)

        child.popen.wait = wait
        status = child.wait_through_interrupts(grace=0.05)
    # THEN after the grace SIGINT went on to the command, which died of it
    assert calls[:2] == [None, 0.05]
    assert status == 128 + signal.SIGINT


def test_forwarding_outside_the_main_thread_does_nothing():
    import threading

    seen = []

    def body():
        with Child.start([sys.executable, "-c", "pass"]) as child:
            with child.forwarding():
                seen.append(signal.getsignal(signal.SIGTERM))
            seen.append(child.wait())

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.SIG_DFL, 0]
