"""`pymemtrace native -- COMMAND` when COMMAND is killed by SIGTERM or SIGHUP
left to their default action (no destructor runs): the tracer's hidden
handler writes the exit snapshot first, so the capture is complete and
holds what was live; then the process dies by the same signal.  The
program never sees the handler; one that sets its own (or SIG_IGN) keeps
it.  Twin: the same program killed by SIGKILL, which no handler sees,
leaves an incomplete capture without its blocks (periodic snapshots are
off in these tests: the interval is a day)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_helpers import KIB, compile_prog, needs_tracer, site_bytes  # noqa: E402

pytestmark = needs_tracer

NO_PERIODIC = ("--interval-ms", "86400000")
MIB = 1024 * KIB

# Line numbers below are the script's own (1-based).
SCRIPT = """\
import os
import signal
import sys
import time

READY, MODE = sys.argv[1], sys.argv[2]


def on_term(signum, frame):
    print("handled", signum, flush=True)
    sys.exit(0)


if MODE == "handler":
    print("previous", signal.signal(signal.SIGTERM, on_term) is signal.SIG_DFL, flush=True)
if MODE == "restored":
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
if MODE == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("default", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
      signal.getsignal(signal.SIGHUP) is signal.SIG_DFL, flush=True)
keep = [bytearray(1024 * 1024) for _ in range(8)]
with open(READY + ".tmp", "w") as stream:
    stream.write(str(os.getpid()))
os.rename(READY + ".tmp", READY)
while not os.path.exists(READY + ".stop"):
    time.sleep(0.01)
"""
KEEP_LINE = 23  # keep = [bytearray(...) ...]


def _default_signals():
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.fixture(scope="module")
def signal_prog(tmp_path_factory):
    return compile_prog(tmp_path_factory.mktemp("native_signal_prog"))


class Traced:
    """`pymemtrace native -o OUTDIR -- COMMAND READY...` running; READY
    receives the pid of the process that waits for the signal."""

    def __init__(self, tmp_path, command, options=NO_PERIODIC, name="out"):
        self.outdir = tmp_path / name
        self.ready = tmp_path / (name + ".ready")
        argv = [sys.executable, "-m", "pymemtrace", "native", "-o", str(self.outdir), *options, "--",
                *[str(word) for word in command]]
        argv = [word.replace("{READY}", str(self.ready)) for word in argv]
        # Its own process group (a run that hangs is killed whole), and
        # the signals at their defaults whatever this suite inherited (under
        # nohup SIGHUP is ignored, and an ignored signal is left ignored).
        self.runner = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       start_new_session=True, preexec_fn=_default_signals)

    def wait_ready(self):
        """The waiting process's pid, once it has allocated its blocks."""
        deadline = time.monotonic() + 60  # a hung run fails, it does not hang the suite
        while not self.ready.exists():
            if self.runner.poll() is not None or time.monotonic() > deadline:
                self.kill_all()
                out, err = self.runner.communicate(timeout=30)
                pytest.fail(f"never ready (status {self.runner.returncode}): {out} {err}")
            time.sleep(0.01)
        return int(self.ready.read_text())

    def stop(self):
        """Ask the program to end by itself (the scripts that are not killed)."""
        (self.ready.parent / (self.ready.name + ".stop")).write_text("")

    def finish(self):
        try:
            out, err = self.runner.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # The program holds the runner's pipes: both go, or reading
            # them would wait for good.
            self.kill_all()
            out, err = self.runner.communicate(timeout=30)
            pytest.fail(f"still running after 60 s: {out} {err}")
        return self.runner.returncode, out, err

    def kill_all(self):
        for kill in (lambda: os.killpg(self.runner.pid, signal.SIGKILL),
                     lambda: os.kill(int(self.ready.read_text()), signal.SIGKILL)):
            try:
                kill()
            except (OSError, ValueError):
                pass

    def processes(self, cli):
        report = cli("report", self.outdir, "--format", "json")
        assert report.returncode == 0, report.stderr
        return json.loads(report.stdout)["processes"]


def python_line_bytes(section, script, line):
    """Bytes of the sites whose Python frames include script:line."""
    return sum(site["bytes"] for site in section["sites"]
               if any(f["python"] and f["file"] == script and f["line"] == line for f in site["frames"]))


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "prog.py"
    path.write_text(SCRIPT)
    return str(path)


@pytest.mark.parametrize("signum, to, mode", [
    (signal.SIGTERM, "runner", "plain"),    # forwarded by pymemtrace native
    (signal.SIGHUP, "program", "plain"),    # not forwarded: sent to the program
    (signal.SIGTERM, "program", "restored"),  # its handler set, then SIG_DFL again
])
def test_python_program_killed_while_idle_leaves_a_complete_capture(cli, tmp_path, script, signum, to, mode):
    # GIVEN a Python program holding 8 MiB from one line, then idle (no
    # allocation: no periodic snapshot could follow)
    traced = Traced(tmp_path, [sys.executable, script, "{READY}", mode])
    pid = traced.wait_ready()
    # WHEN it is sent the signal (through the runner, or directly)
    os.kill(traced.runner.pid if to == "runner" else pid, signum)
    status, out, err = traced.finish()
    # THEN it died by that signal, as without the tracer
    assert status == 128 + signum, err
    assert "default True True" in out
    assert "handled" not in out
    # AND its capture ends with the exit snapshot, the 8 MiB live at its line
    (process,) = traced.processes(cli)
    assert process["complete"] is True
    assert python_line_bytes(process["leaked"], script, KEEP_LINE) >= 8 * MIB


def test_twin_sigkill_leaves_the_blocks_out(cli, tmp_path, script):
    # GIVEN the same program, killed by SIGKILL (no handler runs)
    traced = Traced(tmp_path, [sys.executable, script, "{READY}", "plain"])
    pid = traced.wait_ready()
    os.kill(pid, signal.SIGKILL)
    status, _, err = traced.finish()
    assert status == 128 + signal.SIGKILL, err
    # THEN the capture has no exit snapshot, and no snapshot holding the
    # 8 MiB: what the SIGTERM test would see without the handler
    (process,) = traced.processes(cli)
    assert process["complete"] is False
    assert python_line_bytes(process["leaked"], script, KEEP_LINE) == 0


def test_program_sees_the_default_disposition(tmp_path):
    # GIVEN a script printing what Python and the raw sigaction say about
    # SIGTERM and SIGHUP, run with and without the tracer
    code = ("import ctypes, signal\n"
            "libc = ctypes.CDLL(None)\n"
            "buf = ctypes.create_string_buffer(256)\n"
            "raw = [libc.sigaction(s, None, buf) == 0 and ctypes.c_void_p.from_buffer(buf).value is None\n"
            "       for s in (signal.SIGTERM, signal.SIGHUP)]\n"
            "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,\n"
            "      signal.getsignal(signal.SIGHUP) is signal.SIG_DFL, raw)\n")
    # (both from the defaults, whatever this suite inherited)
    traced = subprocess.run([sys.executable, "-m", "pymemtrace", "native", "-o", str(tmp_path / "out"),
                             "--", sys.executable, "-c", code],
                            capture_output=True, text=True, preexec_fn=_default_signals)
    bare = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          preexec_fn=_default_signals)
    # THEN both say SIG_DFL (sa_handler NULL), the traced one as the bare one
    assert traced.returncode == 0, traced.stderr
    assert bare.stdout == "True True [True, True]\n"
    assert traced.stdout == bare.stdout


def test_program_handler_is_called_and_the_capture_complete(cli, tmp_path, script):
    # GIVEN the program with its own SIGTERM handler (it prints, then exits 0)
    traced = Traced(tmp_path, [sys.executable, script, "{READY}", "handler"])
    pid = traced.wait_ready()
    os.kill(pid, signal.SIGTERM)
    status, out, err = traced.finish()
    # THEN its handler ran (the previous one it got back was SIG_DFL), it
    # exited 0, and the destructor wrote the exit snapshot
    assert status == 0, err
    assert "previous True" in out and f"handled {int(signal.SIGTERM)}" in out
    (process,) = traced.processes(cli)
    assert process["complete"] is True
    assert python_line_bytes(process["peak"], script, KEEP_LINE) >= 8 * MIB


def test_ignored_sigterm_stays_ignored(cli, tmp_path, script, signal_prog):
    # GIVEN a Python program and a C one (signal()) that ignore SIGTERM
    for name, command in (("py", [sys.executable, script, "{READY}", "ignore"]),
                          ("c", [signal_prog, "ignore", "300", "{READY}"])):
        traced = Traced(tmp_path, command, name=name)
        pid = traced.wait_ready()
        # WHEN SIGTERM comes, then the request to end
        os.kill(pid, signal.SIGTERM)
        traced.stop()
        status, _, err = traced.finish()
        # THEN the program ran on and ended by itself
        assert status == 0, (name, err)
        (process,) = traced.processes(cli)
        assert process["complete"] is True


def test_c_program_killed_while_paused(cli, tmp_path, signal_prog):
    # GIVEN a C program leaking 300 KiB, then in pause()
    traced = Traced(tmp_path, [signal_prog, "pause", "300", "{READY}"])
    traced.wait_ready()
    # WHEN pymemtrace native is sent SIGTERM (it forwards it)
    os.kill(traced.runner.pid, signal.SIGTERM)
    status, _, err = traced.finish()
    # THEN 143, and the complete capture names the leak
    assert status == 128 + signal.SIGTERM, err
    (process,) = traced.processes(cli)
    assert process["complete"] is True
    assert site_bytes(process["leaked"], "leak_kib") == 300 * KIB


def test_forked_child_killed_writes_its_own_capture(cli, tmp_path, signal_prog):
    # GIVEN a C program whose forked child leaks 700 KiB, then pauses
    traced = Traced(tmp_path, [signal_prog, "forkpause", "700", "{READY}"])
    child_pid = traced.wait_ready()
    # WHEN the child is sent SIGTERM (the parent reaps it, exits 128 + 15)
    os.kill(child_pid, signal.SIGTERM)
    status, _, err = traced.finish()
    assert status == 128 + signal.SIGTERM, err
    # THEN the child's own capture is complete, with its leak
    processes = traced.processes(cli)
    by_pid = {p["pid"]: p for p in processes}
    assert len(processes) == 2 and child_pid in by_pid
    child = by_pid[child_pid]
    parent = by_pid[child["ppid"]]
    assert child["complete"] is True
    assert site_bytes(child["leaked"], "child_leak") == 700 * KIB
    # AND the parent's is its own: complete (it exited), without the child's leak
    assert parent["complete"] is True
    assert site_bytes(parent["leaked"], "child_leak") == 0
    assert site_bytes(parent["peak"], "parent_keep") >= 700 * KIB


BUSY_SCRIPT = """\
import os
import sys
import threading

keep = [bytearray(1024 * 1024) for _ in range(8)]


def churn():
    while True:
        [bytes(100 + i) for i in range(200)]


for _ in range(2):
    threading.Thread(target=churn, daemon=True).start()
with open(sys.argv[1] + ".tmp", "w") as stream:
    stream.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
churn()
"""
BUSY_KEEP_LINE = 5


def test_program_allocating_on_three_threads_when_killed(cli, tmp_path):
    # GIVEN a program allocating without pause on three threads (the signal
    # may land on any of them, inside the tracer or holding its lock)
    script = tmp_path / "busy.py"
    script.write_text(BUSY_SCRIPT)
    traced = Traced(tmp_path, [sys.executable, script, "{READY}"])
    pid = traced.wait_ready()
    os.kill(pid, signal.SIGTERM)
    status, _, err = traced.finish()
    # THEN it died by SIGTERM, its capture complete, the 8 MiB live
    assert status == 128 + signal.SIGTERM, err
    (process,) = traced.processes(cli)
    assert process["complete"] is True
    assert python_line_bytes(process["leaked"], str(script), BUSY_KEEP_LINE) >= 8 * MIB
