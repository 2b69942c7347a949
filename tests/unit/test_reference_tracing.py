"""ReferenceTracing (reftrace.c): every object created and destroyed, 3.13+.

The logs are read back with pymemtrace.util.ref_trace_analyse, so these
tests also check that the writer and the reader agree on the format.
"""
import gc
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import warnings

import pytest

from pymemtrace import _native, cPyMemTrace
from pymemtrace.util.ref_trace_analyse import analyse_file

NEEDS_313 = pytest.mark.skipif(
    sys.version_info < (3, 13), reason="ReferenceTracing needs CPython 3.13+ (PyRefTracer)"
)
MODULE = __name__


class Leaky:
    pass


class Fine:
    pass


class MyDict(dict):
    pass


class Grüße:
    pass


def records(path, tag):
    with open(path, encoding="utf-8") as stream:
        return [line.rstrip("\n").split("\t") for line in stream if line.startswith(tag + "\t")]


def records_of(path, tag, type_name):
    return [r for r in records(path, tag) if r[4] == type_name]


@pytest.fixture
def logpath(tmp_path):
    return str(tmp_path / "rt.log")


# --------------------------------------------------------------------------
# Before 3.13


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="this Python has PyRefTracer")
def test_older_python_gets_a_clear_error():
    # GIVEN a CPython older than 3.13  WHEN ReferenceTracing is constructed
    with pytest.raises(RuntimeError) as info:
        cPyMemTrace.ReferenceTracing()
    # THEN the error names the version needed and the one running
    message = str(info.value)
    assert "3.13" in message
    assert "%d.%d" % sys.version_info[:2] in message


# --------------------------------------------------------------------------
# 3.13+


@NEEDS_313
def test_objects_kept_show_as_new_without_del_and_in_live_counts(logpath):
    # GIVEN objects of a user class created and kept inside the block
    kept = []
    with cPyMemTrace.ReferenceTracing(filepath=logpath) as rt:
        for _ in range(5):
            kept.append(Leaky())
        inside = rt.live_object_counts()
    # THEN they are counted live, inside and after, and logged NEW without DEL
    name = f"{MODULE}.Leaky"
    assert inside[name] == 5
    assert rt.live_object_counts()[name] == 5
    assert len(records_of(logpath, "NEW:", name)) == 5
    assert records_of(logpath, "DEL:", name) == []
    new = records_of(logpath, "NEW:", name)[0]
    assert new[6].endswith("test_reference_tracing.py")
    assert new[8] == "test_objects_kept_show_as_new_without_del_and_in_live_counts"
    del kept


@NEEDS_313
def test_objects_freed_show_as_new_and_del(logpath):
    # GIVEN user objects created and freed inside the block (freed by C code,
    # list.clear, which reports DESTROY on every 3.13)
    holder = []
    with cPyMemTrace.ReferenceTracing(filepath=logpath) as rt:
        for _ in range(4):
            holder.append(Fine())
        holder.clear()
        temp = Fine()
        del temp  # freed by the eval loop: a DESTROY event only from 3.13.3
    # THEN each NEW has its DEL and none is live
    name = f"{MODULE}.Fine"
    assert len(records_of(logpath, "NEW:", name)) == 5
    dels = records_of(logpath, "DEL:", name)
    assert len(dels) == 5
    assert sum(1 for r in dels if r[6] != "<inferred>") >= 4
    assert name not in rt.live_object_counts()
    analysis = analyse_file(logpath)
    assert analysis.types[name].live == 0


@NEEDS_313
def test_the_twin_leaks_and_the_fixed_one_does_not(logpath):
    # GIVEN a leaking loop and its fixed twin in one block
    cache = []

    def leaky(i):
        cache.append(Leaky())

    def fine(i):
        local = [Fine()]
        local.clear()

    with cPyMemTrace.ReferenceTracing(filepath=logpath):
        for i in range(20):
            leaky(i)
            fine(i)
    # THEN the analysis names Leaky, created in leaky(), and not Fine
    analysis = analyse_file(logpath)
    grown = {t.name: t.live for t in analysis.growing_types()}
    assert grown == {f"{MODULE}.Leaky": 20}
    site, tname, alive, created = analysis.survivor_sites()[0]
    assert (tname, alive, created) == (f"{MODULE}.Leaky", 20, 20)
    assert site.function.endswith("leaky")
    cache.clear()


@NEEDS_313
def test_user_subclass_of_dict_is_recorded_when_builtins_are_excluded(logpath):
    # GIVEN a user subclass of dict and a plain dict, builtins excluded
    with cPyMemTrace.ReferenceTracing(filepath=logpath, include_builtins=False) as rt:
        mine = MyDict(a=1)
        plain = {"a": 1}
    # THEN the subclass is the user's type and is recorded; dict is not
    counts = rt.live_object_counts()
    assert counts.get(f"{MODULE}.MyDict") == 1
    assert "dict" not in counts
    assert records_of(logpath, "NEW:", "dict") == []
    del mine, plain


@NEEDS_313
def test_include_builtins_records_builtin_types(logpath):
    # GIVEN builtins included  WHEN a dict is created and kept
    with cPyMemTrace.ReferenceTracing(filepath=logpath, include_builtins=True) as rt:
        kept = {"x": [1, 2, 3]}
    # THEN dict objects are recorded
    assert records_of(logpath, "NEW:", "dict")
    assert rt.live_object_counts().get("dict", 0) >= 1
    del kept


@NEEDS_313
@pytest.mark.parametrize(
    "make",
    [
        lambda names: list(names),
        lambda names: set(names),
        lambda names: tuple(names),
        lambda names: (n for n in names),
        lambda names: dict.fromkeys(names),
    ],
    ids=["list", "set", "tuple", "generator", "dict"],
)
def test_include_and_exclude_accept_any_iterable(logpath, make):
    # GIVEN include and exclude lists in several container types, with a
    # qualified name and a bare qualname
    with cPyMemTrace.ReferenceTracing(
        filepath=logpath,
        include_tp_names=make([f"{MODULE}.Leaky", "Fine", "dict"]),
        exclude_tp_names=make(["Fine"]),
    ) as rt:
        kept = [Leaky(), Fine(), MyDict(), {"a": 1}]
    counts = rt.live_object_counts()
    # THEN only the included, not excluded, types are recorded (an explicit
    # include of a builtin wins over include_builtins=False)
    assert counts.get(f"{MODULE}.Leaky") == 1
    assert f"{MODULE}.Fine" not in counts
    assert f"{MODULE}.MyDict" not in counts
    assert counts.get("dict", 0) >= 1
    del kept


@NEEDS_313
def test_exclude_by_qualified_name(logpath):
    with cPyMemTrace.ReferenceTracing(filepath=logpath, exclude_tp_names=[f"{MODULE}.Leaky"]) as rt:
        kept = [Leaky(), Fine()]
    counts = rt.live_object_counts()
    assert f"{MODULE}.Leaky" not in counts
    assert counts[f"{MODULE}.Fine"] == 1
    del kept


@NEEDS_313
@pytest.mark.parametrize("bad", ["Leaky", b"Leaky", 42, [1]])
def test_names_must_be_an_iterable_of_str(bad):
    with pytest.raises(TypeError, match="type names"):
        cPyMemTrace.ReferenceTracing(include_tp_names=bad)


@NEEDS_313
def test_log_is_complete_after_exit(logpath):
    # GIVEN a message  WHEN the block ends
    with cPyMemTrace.ReferenceTracing(message="my\nrun", filepath=logpath) as rt:
        kept = Leaky()
        rt.write_message_to_log("half\tway")
    # THEN the file has the message line, SOF, HDR, MSG, LIVE, END and EOF
    with open(logpath, encoding="utf-8") as stream:
        lines = stream.read().splitlines()
    assert lines[0] == "my\\nrun"
    assert lines[1] == "SOF"
    assert "HDR:\tEvent\tClock\tAddress\tType\tLive\tFile\t#line\tFunction" in lines
    assert any(line.startswith("MSG:\t") and line.endswith("\thalf\\tway") for line in lines)
    assert any(line.startswith(f"LIVE:\t{MODULE}.Leaky\t1\t1\t0") for line in lines)
    assert lines[-2].startswith("END:\t")
    assert lines[-1] == "EOF"
    analysis = analyse_file(logpath)
    assert analysis.complete and analysis.message == "my\nrun"
    assert [m.text for m in analysis.messages] == ["half\tway"]
    assert rt.log_file_path() == logpath
    del kept


@NEEDS_313
def test_default_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with cPyMemTrace.ReferenceTracing() as rt:
        pass
    name = rt.log_file_path()
    assert os.path.exists(tmp_path / name)
    parts = name.split("_")
    assert parts[4] == "O" and name.endswith(f"PY{sys.version.split()[0]}.log")
    assert parts[3] == str(os.getpid())


@NEEDS_313
def test_non_ascii_type_names_are_utf8(logpath):
    with cPyMemTrace.ReferenceTracing(filepath=logpath) as rt:
        kept = Grüße()
    assert rt.live_object_counts()[f"{MODULE}.Grüße"] == 1
    assert records_of(logpath, "NEW:", f"{MODULE}.Grüße")
    del kept


@NEEDS_313
def test_methods_outside_the_block_raise_clear_errors(logpath):
    rt = cPyMemTrace.ReferenceTracing(filepath=logpath)
    with pytest.raises(RuntimeError, match="active"):
        rt.write_message_to_log("too early")
    with rt:
        pass
    with pytest.raises(RuntimeError, match="active"):
        rt.write_message_to_log("too late")
    with pytest.raises(RuntimeError, match="already used"):
        rt.__enter__()
    assert rt.live_object_counts() == {}


@NEEDS_313
def test_two_active_at_once_is_refused(tmp_path):
    # The slot may hold another tool's tracer (3.13.0's tracemalloc.stop()
    # leaves its own there): what counts is that ours gives it back.
    before = _native._reftrace_slot()
    with cPyMemTrace.ReferenceTracing(filepath=str(tmp_path / "a.log")):
        with pytest.raises(RuntimeError, match="already active"):
            with cPyMemTrace.ReferenceTracing(filepath=str(tmp_path / "b.log")):
                pass
    assert _native._reftrace_slot() == before


@NEEDS_313
def test_unwritable_path_raises_oserror_naming_it(tmp_path):
    path = str(tmp_path / "missing" / "rt.log")
    before = _native._reftrace_slot()
    rt = cPyMemTrace.ReferenceTracing(filepath=path)
    with pytest.raises(OSError) as info:
        rt.__enter__()
    assert info.value.filename == path
    assert _native._reftrace_slot() == before


@NEEDS_313
def test_gc_collect_on_exit_turns_garbage_cycles_into_del(tmp_path):
    # GIVEN a reference cycle of user objects made garbage inside the block
    def cycle():
        a, b = Leaky(), Leaky()
        a.other, b.other = b, a

    gc.disable()
    try:
        with cPyMemTrace.ReferenceTracing(filepath=str(tmp_path / "g0.log"), gc_collect_on_exit=0) as rt0:
            cycle()
        with cPyMemTrace.ReferenceTracing(filepath=str(tmp_path / "g1.log"), gc_collect_on_exit=1) as rt1:
            cycle()
    finally:
        gc.enable()
        gc.collect()
    # THEN without a collection the cycle is still live at exit; with one, gone
    assert rt0.live_object_counts().get(f"{MODULE}.Leaky") == 2
    assert f"{MODULE}.Leaky" not in rt1.live_object_counts()
    assert len(records_of(str(tmp_path / "g1.log"), "DEL:", f"{MODULE}.Leaky")) == 2


@NEEDS_313
def test_max_log_bytes_caps_the_log_but_not_the_counts(logpath):
    with cPyMemTrace.ReferenceTracing(filepath=logpath, max_log_bytes=2000) as rt:
        kept = [Leaky() for _ in range(200)]
    assert rt.live_object_counts()[f"{MODULE}.Leaky"] == 200
    assert os.path.getsize(logpath) < 2000 + 1000
    with open(logpath, encoding="utf-8") as stream:
        text = stream.read()
    assert "max_log_bytes reached" in text and text.endswith("EOF\n")
    assert f"LIVE:\t{MODULE}.Leaky\t200\t200\t0" in text
    del kept


@NEEDS_313
def test_a_tracer_installed_before_is_chained_and_restored(logpath):
    # GIVEN tracemalloc, which installs its own reference tracer
    tracemalloc.start()
    try:
        before = _native._reftrace_slot()
        assert before is not None and before[1] is False
        with cPyMemTrace.ReferenceTracing(filepath=logpath) as rt:
            assert _native._reftrace_slot()[1] is True
            kept = Leaky()
        after = _native._reftrace_slot()
    finally:
        tracemalloc.stop()
    # THEN ours was in the slot while tracing, and tracemalloc's is back after
    assert after == before
    assert rt.tracer_displaced is None
    assert rt.live_object_counts()[f"{MODULE}.Leaky"] == 1
    with open(logpath, encoding="utf-8") as stream:
        assert "# previous_tracer: chained" in stream.read()
    del kept


@NEEDS_313
def test_tracemalloc_started_while_tracing_is_reported(logpath):
    # GIVEN tracing  WHEN tracemalloc.start() takes the slot inside the block
    rt = cPyMemTrace.ReferenceTracing(filepath=logpath)
    try:
        with pytest.warns(RuntimeWarning, match="tracemalloc took the reference tracer slot"):
            with rt:
                kept = Leaky()
                tracemalloc.start()
                lost = Leaky()
        slot_after = _native._reftrace_slot()
    finally:
        tracemalloc.stop()
    # THEN the caller is told (warning and attribute), the log says so, the
    # log is still complete, and tracemalloc's slot was left alone
    assert "tracemalloc" in rt.tracer_displaced
    assert slot_after is not None and slot_after[1] is False
    analysis = analyse_file(logpath)
    assert analysis.complete
    assert any("tracemalloc" in w.text for w in analysis.warnings)
    assert analysis.types[f"{MODULE}.Leaky"].created == 1
    del kept, lost


@NEEDS_313
def test_tracemalloc_stopped_while_tracing_is_handled(logpath):
    # GIVEN tracemalloc before us (chained)  WHEN it stops inside the block.
    # Some CPythons clear the slot in tracemalloc.stop() (ours with it),
    # 3.13.0 leaves its own tracer there (we stay installed and chained).
    tracemalloc.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with cPyMemTrace.ReferenceTracing(filepath=logpath) as rt:
                tracemalloc.stop()
                cleared = _native._reftrace_slot() is None
                kept = Leaky()
    finally:
        tracemalloc.stop()
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if cleared:
        # THEN the loss is reported, never silent
        assert rt.tracer_displaced is not None and "removed" in rt.tracer_displaced
        assert runtime
    else:
        # THEN tracing went on
        assert rt.tracer_displaced is None and not runtime
        assert rt.live_object_counts()[f"{MODULE}.Leaky"] == 1
    assert analyse_file(logpath).complete
    del kept


@NEEDS_313
def test_threads_creating_objects_do_not_crash(logpath):
    # GIVEN threads that create and drop user objects while tracing
    kept = []
    lock = threading.Lock()

    def work():
        for i in range(200):
            obj = Leaky()
            if i % 10 == 0:
                with lock:
                    kept.append(obj)

    with cPyMemTrace.ReferenceTracing(filepath=logpath) as rt:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # THEN every object is accounted for and the kept ones are live
    analysis = analyse_file(logpath)
    leaky = analysis.types[f"{MODULE}.Leaky"]
    assert leaky.created == 800
    assert rt.live_object_counts()[f"{MODULE}.Leaky"] == 80 == leaky.live
    assert any(site.function.endswith("work") for site, _, _, _ in analysis.survivor_sites())
    kept.clear()


def _run(code, cwd):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )


@NEEDS_313
def test_interpreter_exit_inside_the_block_still_ends_the_log(tmp_path):
    # GIVEN a program that exits without leaving the block
    log = tmp_path / "exit.log"
    result = _run(
        f"""
        import sys
        from pymemtrace import cPyMemTrace
        class Node: pass
        rt = cPyMemTrace.ReferenceTracing(filepath={str(log)!r})
        rt.__enter__()
        kept = [Node() for _ in range(3)]
        sys.exit(0)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # THEN the log is complete
    analysis = analyse_file(log)
    assert analysis.complete
    assert analysis.types["__main__.Node"].created == 3


@NEEDS_313
def test_fatal_signal_flushes_the_log(tmp_path):
    # GIVEN a program that aborts while tracing (records still buffered)
    log = tmp_path / "abort.log"
    result = _run(
        f"""
        import os
        from pymemtrace import cPyMemTrace
        class Node: pass
        rt = cPyMemTrace.ReferenceTracing(filepath={str(log)!r})
        rt.__enter__()
        kept = [Node() for _ in range(3)]
        os.abort()
        """,
        tmp_path,
    )
    assert result.returncode != 0
    # THEN the records written so far are on disk
    with open(log, encoding="utf-8") as stream:
        text = stream.read()
    assert text.count("\t__main__.Node\t") == 3
    assert "# fatal signal" in text
    analysis = analyse_file(log)
    assert not analysis.complete


@NEEDS_313
@pytest.mark.parametrize("name", ["dict", "builtins.dict"])
def test_builtin_names_with_or_without_module(logpath, name):
    with cPyMemTrace.ReferenceTracing(filepath=logpath, include_tp_names=[name]) as rt:
        kept = {"a": 1}
        other = Leaky()
    counts = rt.live_object_counts()
    assert counts.get("dict", 0) >= 1 and f"{MODULE}.Leaky" not in counts
    del kept, other


@NEEDS_313
def test_max_objects_bounds_the_table_and_says_so(logpath):
    # GIVEN room for 10 objects  WHEN 30 are kept
    with cPyMemTrace.ReferenceTracing(filepath=logpath, max_objects=10) as rt:
        kept = [Leaky() for _ in range(30)]
    # THEN 10 are recorded, 20 counted as dropped, and the log says so
    assert rt.live_object_counts()[f"{MODULE}.Leaky"] == 10
    assert rt.stats()["dropped"] == 20
    analysis = analyse_file(logpath)
    assert any("max_objects reached" in w.text for w in analysis.warnings)
    del kept


@NEEDS_313
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_does_not_write_into_the_parents_log(logpath):
    # GIVEN records still buffered when the process forks
    with cPyMemTrace.ReferenceTracing(filepath=logpath) as rt:
        kept = [Leaky() for _ in range(3)]
        with warnings.catch_warnings():
            # 3.12+ warns about fork() when other threads run (none of ours).
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: make objects, flush, leave at once
            more = [Leaky() for _ in range(5)]  # noqa: F841
            rt.write_message_to_log("from the child")
            os._exit(0)
        os.waitpid(pid, 0)
        kept.append(Leaky())
    # THEN the parent's log holds its own 4 objects once each, then EOF
    analysis = analyse_file(logpath)
    assert analysis.complete
    assert analysis.types[f"{MODULE}.Leaky"].created == 4
    assert analysis.messages == []
    assert rt.live_object_counts()[f"{MODULE}.Leaky"] == 4
    del kept


@NEEDS_313
def test_filepath_may_be_a_path_object(tmp_path):
    path = tmp_path / "as_path.log"
    with cPyMemTrace.ReferenceTracing(filepath=path) as rt:
        pass
    assert rt.log_file_path() == str(path)
    assert analyse_file(path).complete
