"""Profile and Trace say what went wrong (issue 8, point 4): a hook replaced
by another tool, a subinterpreter's exit, a bad path, a long message; and
the seed's API pieces of the tracer itself (log_file_path() after exit,
the *_file_wrapper attributes, a block without events).  GIVEN/WHEN/THEN.
"""
import cProfile
import mmap
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from pymemtrace import _native, cPyMemTrace

from cpymemtrace_logreader import parse

TRACERS = [cPyMemTrace.Profile, cPyMemTrace.Trace]
IDS = ["Profile", "Trace"]
SETTERS = {cPyMemTrace.Profile: sys.setprofile, cPyMemTrace.Trace: sys.settrace}
GETTERS = {cPyMemTrace.Profile: sys.getprofile, cPyMemTrace.Trace: sys.gettrace}
ZEROS = bytes(8 << 20)


@pytest.fixture
def legacy_backend():
    old = _native._set_default_backend("legacy")
    yield
    _native._set_default_backend(old)


def _python_hook(frame, event, arg):
    return None


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_a_hook_replaced_inside_the_block_gives_a_warn_record_and_a_runtime_warning(cls, tmp_path, legacy_backend):
    # GIVEN a legacy tracer
    path = tmp_path / "displaced.log"
    setter, getter = SETTERS[cls], GETTERS[cls]
    before = getter()
    tracer = cls(filepath=str(path))
    tracer.__enter__()
    try:
        # WHEN another tool replaces its hook inside the block
        setter(_python_hook)
    finally:
        # THEN exit warns (RuntimeWarning naming the log)
        with pytest.warns(RuntimeWarning, match="replaced the hook"):
            tracer.__exit__(None, None, None)
        setter(before)
    # AND the log has a WARN: record saying so, and is complete
    log = parse(path)
    assert log.complete
    assert len(log.warnings) == 1 and "another tool replaced" in log.warnings[0][2]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="cProfile uses sys.monitoring on 3.12+: nothing is replaced")
def test_cprofile_enabled_inside_a_profile_is_reported(tmp_path):
    # GIVEN a Profile (legacy hooks on 3.9-3.11)
    path = tmp_path / "cprof.log"
    profiler = cProfile.Profile()
    tracer = cPyMemTrace.Profile(filepath=str(path)).__enter__()
    try:
        # WHEN cProfile is enabled inside the block
        profiler.enable()
        sum(range(10))
        profiler.disable()
    finally:
        with pytest.warns(RuntimeWarning):
            tracer.__exit__(None, None, None)
    # THEN the log says so
    assert len(parse(path).warnings) == 1


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_an_undisturbed_tracer_writes_no_warn(cls, tmp_path, legacy_backend):
    # GIVEN a legacy tracer nobody disturbs (the twin of the test above)
    path = tmp_path / "quiet.log"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with cls(filepath=str(path)):
            sum(range(10))
    # THEN no WARN: record
    log = parse(path)
    assert log.complete and log.warnings == []


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_a_nul_byte_in_filepath_raises_value_error(cls, tmp_path):
    # GIVEN a path with a NUL byte (str and bytes)
    for bad in (str(tmp_path / "a\0b.log"), os.fsencode(str(tmp_path / "a\0b.log"))):
        # WHEN a tracer is made with it  THEN ValueError, nothing created
        with pytest.raises(ValueError, match="NUL"):
            cls(filepath=bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_a_message_longer_than_4096_bytes_is_written_whole(cls, tmp_path):
    # GIVEN messages of 10,000 characters (one with non-ASCII text and
    # characters that are escaped)
    long_ascii = "x" * 9999 + "!"
    long_mixed = ("é\tline\n" * 1500)[:10000]
    path = tmp_path / "long.log"
    # WHEN they are the start message and a message of the block
    with cls(message=long_ascii, filepath=str(path)) as tracer:
        tracer.write_message_to_log(long_mixed)
    # THEN both are in the log whole
    log = parse(path)
    assert log.message == long_ascii
    assert any(m[-1] == long_mixed for m in log.messages), [len(m[-1]) for m in log.messages]


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_log_file_path_still_answers_after_exit(cls, tmp_path):
    # GIVEN a tracer that has exited
    path = str(tmp_path / "after.log")
    with cls(filepath=path) as tracer:
        pass
    # THEN log_file_path() returns where the log is (the seed's API)
    assert tracer.log_file_path() == path
    # AND before enter it is still an error
    with pytest.raises(RuntimeError):
        cls(filepath=path).log_file_path()


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_the_seeds_file_wrapper_attributes_write_messages(cls, tmp_path):
    # GIVEN the seed's documented way to write a message
    path = tmp_path / "wrapper.log"
    with cls(0, message="# level0", filepath=str(path)) as tracer:
        wrapper = tracer.trace_file_wrapper if cls is cPyMemTrace.Trace else tracer.profile_file_wrapper
        wrapper.write_message_to_log("# Level 0 __enter__")
    # THEN the message is in the log
    log = parse(path)
    assert log.message == "# level0"
    assert [m[-1] for m in log.messages][-1] == "# Level 0 __enter__"


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_last_reads_memory_at_exit(cls, tmp_path):
    # GIVEN a tracer whose block keeps 8 MiB (an anonymous map written
    # through: pages a free list already holds would not grow RSS)
    path = tmp_path / "last.log"
    with cls(filepath=str(path)):
        keep = mmap.mmap(-1, 8 << 20)
        keep.write(ZEROS)
    # THEN LAST: carries the memory read at exit (FRST + NEXT + LAST sum
    # to the growth)
    log = parse(path)
    last = log.tagged("LAST:")[0]
    first = log.tagged("FRST:")[0]
    assert last.mem - first.mem >= 7 << 20
    keep.close()


def _shared_gil_interpreter_code():
    return textwrap.dedent(
        """
        import importlib, sys
        for name in ("_interpreters", "_xxsubinterpreters"):
            try:
                api = importlib.import_module(name)
                break
            except ImportError:
                api = None
        def create():
            try:
                return api.create(isolated=False)
            except TypeError:
                return api.create("legacy")
        """
    )


@pytest.mark.skipif(sys.platform != "linux", reason="subinterpreter API checked on Linux")
def test_a_destroyed_subinterpreter_leaves_the_main_interpreters_tracers_alone(tmp_path):
    # GIVEN a Profile active in the main interpreter
    main_log, sub_log = tmp_path / "main.log", tmp_path / "sub.log"
    inner = textwrap.dedent(
        f"""
        import sys
        sys.path[:] = {sys.path!r}
        from pymemtrace import cPyMemTrace
        with cPyMemTrace.Profile(filepath={str(sub_log)!r}) as p:
            x = [1] * 10
        left_open = cPyMemTrace.Profile(filepath={str(sub_log) + ".open"!r}).__enter__()
        """
    )
    code = _shared_gil_interpreter_code() + textwrap.dedent(
        f"""
        from pymemtrace import cPyMemTrace
        def grow():
            return " " * (4 << 20)
        with cPyMemTrace.Profile(filepath={str(main_log)!r}) as p:
            interp = create()
            api.run_string(interp, {inner!r})
            api.destroy(interp)
            # WHEN the subinterpreter, which imported the module, used a
            # tracer and left one open, is destroyed
            active = p.active
            keep = grow()
        print("active" if active else "closed")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if "api.create" in done.stderr and "NoneType" in done.stderr:
        pytest.skip("no subinterpreter API in this CPython")
    assert done.returncode == 0, done.stderr
    # THEN the main tracer was still active afterwards and logged the growth
    assert done.stdout.strip() == "active", done.stdout + done.stderr
    log = parse(main_log)
    assert log.complete
    assert [r for r in log.tagged("NEXT:") if r.function.endswith("grow") and r.d_mem >= 3 << 20]
    # AND the subinterpreter's logs are complete too (its exit closed the
    # one it left open)
    assert parse(sub_log).complete
    assert parse(str(sub_log) + ".open").complete


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_a_fork_inside_a_block_leaves_both_processes_well(cls, tmp_path):
    # GIVEN an active tracer (page-fault counters and release wrappers on)
    path = tmp_path / "fork.log"

    def grow():
        data = mmap.mmap(-1, 4 << 20)
        data.write(ZEROS[: 4 << 20])
        return data

    with cls(filepath=str(path)):
        # WHEN the process forks and the child allocates, frees and exits
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                grow().close()
                " ".join(["x"] * 100_000)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        kept = grow()
    # THEN the child ended normally (no signal, no crash)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    # AND the parent's log is complete and has its own growth
    log = parse(path)
    assert log.complete
    assert [r for r in log.tagged("NEXT:") if r.function.endswith("grow") and r.d_mem >= 3 << 20]
    kept.close()


def test_a_default_log_name_never_follows_a_planted_symlink(tmp_path):
    # GIVEN a shared working directory where someone planted symbolic links
    # under the names the next default logs of a process would take
    code = textwrap.dedent(
        """
        import os, sys, time
        from pymemtrace import cPyMemTrace
        victim = os.path.abspath("victim.txt")
        with open(victim, "w") as f:
            f.write("precious")
        now = time.time()
        planted = set()
        for dt in (0, 1, 2):
            stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(now + dt))
            for n in range(5):
                for kind in "PT":
                    name = f"{stamp}_{n}_{os.getpid()}_{kind}_0_PY{sys.version.split()[0]}.log"
                    os.symlink(victim, name)
                    planted.add(name)
        # WHEN tracers with default names are entered
        with cPyMemTrace.Profile() as p, cPyMemTrace.Trace() as t:
            x = [0] * 1000
        # THEN they wrote new files of their own, and the victim is intact
        assert open(victim).read() == "precious", open(victim).read()
        for tracer in (p, t):
            path = tracer.log_file_path()
            assert path not in planted and not os.path.islink(path), path
            assert open(path).read().endswith("EOF\\n")
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


@pytest.mark.skipif(sys.version_info < (3, 12), reason="on the legacy hooks __exit__ itself is an event (C_CALL)")
def test_a_block_without_events_still_shows_its_growth(tmp_path):
    # GIVEN a Profile (sys.monitoring) around a block with no call at all,
    # which makes 64 MiB (above glibc's largest mmap threshold: new pages,
    # never ones a free list holds)
    path = tmp_path / "noevent.log"
    with cPyMemTrace.Profile(filepath=str(path)):
        data = b"x" * (64 << 20)
    # THEN the log has a LAST: at the exit, whose dRSS (from the memory at
    # enter) shows them
    log = parse(path)
    assert log.complete and not log.tagged("FRST:"), log.records
    (last,) = log.tagged("LAST:")
    assert last.what == "EXIT" and last.d_mem >= 63 << 20, last
    del data
