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
def test_nested_tracers_suspend_the_outer_and_give_the_slot_back(tmp_path):
    # The slot may hold another tool's tracer (3.13.0's tracemalloc.stop()
    # leaves its own there): what counts is that ours gives it back.
    before = _native._reftrace_slot()
    outer_path, inner_path = str(tmp_path / "a.log"), str(tmp_path / "b.log")
    # GIVEN a ReferenceTracing entered inside another
    with cPyMemTrace.ReferenceTracing(filepath=outer_path) as outer:
        in_outer = Leaky()
        with cPyMemTrace.ReferenceTracing(filepath=inner_path) as inner:
            in_inner = Fine()
            depth_inside = cPyMemTrace.reference_tracing_wrapper_depth()
        depth_after_inner = cPyMemTrace.reference_tracing_wrapper_depth()
        back_in_outer = Fine()
    # THEN the inner one got the objects made while it ran, the outer the rest
    assert (depth_inside, depth_after_inner) == (2, 1)
    assert inner.live_object_counts() == {f"{MODULE}.Fine": 1}
    assert outer.live_object_counts()[f"{MODULE}.Fine"] == 1
    assert outer.live_object_counts()[f"{MODULE}.Leaky"] == 1
    # AND the outer log says when it was detached (naming the new file) and re-attached
    texts = [r[3] for r in records(outer_path, "MSG:")]
    assert texts == [
        f"# Detaching this Reference Tracing file wrapper. New file: {inner_path}",
        "# Re-attaching this Reference Tracing file wrapper.",
    ]
    # AND the slot holds what it held before
    assert _native._reftrace_slot() == before
    assert cPyMemTrace.reference_tracing_wrapper_depth() == 0
    del in_outer, in_inner, back_in_outer


@NEEDS_313
def test_an_object_of_the_outer_dying_inside_the_inner_is_not_a_false_leak(tmp_path):
    # GIVEN an object recorded by the outer tracer, freed while an inner one runs
    outer_path = str(tmp_path / "a.log")
    with cPyMemTrace.ReferenceTracing(filepath=outer_path, gc_collect_on_exit=-1) as outer:
        # (freed by C code: 3.13.0-3.13.2 miss frees done by the eval loop itself)
        holder = [Leaky()]
        with cPyMemTrace.ReferenceTracing(filepath=str(tmp_path / "b.log"), gc_collect_on_exit=-1):
            holder.clear()
    # THEN the outer log has its DEL: record and does not count it live
    assert f"{MODULE}.Leaky" not in outer.live_object_counts()
    [dead] = records_of(outer_path, "DEL:", f"{MODULE}.Leaky")
    assert dead[6] != "<inferred>"  # seen when it died, not inferred at exit


@NEEDS_313
def test_default_file_names_carry_the_nesting_depth(tmp_path, monkeypatch):
    # GIVEN three nested tracers with default file names (the seed's example)
    monkeypatch.chdir(tmp_path)
    with cPyMemTrace.ReferenceTracing("ref_trace_0") as ref_trace_0:
        with cPyMemTrace.ReferenceTracing("ref_trace_1") as ref_trace_1:
            with cPyMemTrace.ReferenceTracing("ref_trace_2") as ref_trace_2:
                assert cPyMemTrace.reference_tracing_wrapper_depth() == 3
    # THEN the depth is the field after the O, and each log has its message
    paths = [t.log_file_path() for t in (ref_trace_0, ref_trace_1, ref_trace_2)]
    assert [p.split("_")[4:6] for p in paths] == [["O", "0"], ["O", "1"], ["O", "2"]]
    for i, path in enumerate(paths):
        with open(path, encoding="utf-8") as stream:
            assert stream.readline() == f"ref_trace_{i}\n"


@NEEDS_313
def test_leaving_out_of_order_unlinks_without_breaking_the_innermost(tmp_path):
    # GIVEN two nested tracers left in the wrong order (as threads may do)
    outer = cPyMemTrace.ReferenceTracing(filepath=str(tmp_path / "a.log"))
    inner = cPyMemTrace.ReferenceTracing(filepath=str(tmp_path / "b.log"))
    before = _native._reftrace_slot()
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)
    # THEN the inner one still traces, alone, and the slot is ours
    assert _native._reftrace_stack() == [inner]
    assert _native._reftrace_slot()[1] is True
    kept = Leaky()
    inner.__exit__(None, None, None)
    assert inner.live_object_counts()[f"{MODULE}.Leaky"] == 1
    assert _native._reftrace_slot() == before
    del kept


@NEEDS_313
def test_module_functions_follow_the_innermost_reference_tracing(tmp_path):
    # GIVEN nothing active
    assert cPyMemTrace.reference_tracing_wrapper_depth() == 0
    assert cPyMemTrace.reference_tracing_log_path() is None
    with pytest.raises(RuntimeError, match="no active ReferenceTracing"):
        cPyMemTrace.reference_tracing_write_message_to_log("nobody")
    with pytest.raises(RuntimeError, match="no active ReferenceTracing"):
        cPyMemTrace.reference_tracing_live_object_counts()
    path = str(tmp_path / "m.log")
    # WHEN one is active
    with cPyMemTrace.ReferenceTracing(filepath=path) as rt:
        assert cPyMemTrace.reference_tracing_log_path() == path
        cPyMemTrace.reference_tracing_write_message_to_log("from the module")
        kept = Leaky()
        counts = cPyMemTrace.reference_tracing_live_object_counts()
        # a ReferenceTracingSimple on top does not hide it
        with cPyMemTrace.ReferenceTracingSimple():
            assert cPyMemTrace.reference_tracing_simple_wrapper_depth() == 1
            assert cPyMemTrace.reference_tracing_wrapper_depth() == 1
            assert cPyMemTrace.reference_tracing_log_path() == path
    # THEN they acted on it
    assert counts == {f"{MODULE}.Leaky": 1}
    assert "from the module" in [r[3] for r in records(path, "MSG:")]
    # AND after exit the object still has its path, the module none
    assert rt.log_file_path() == path
    assert cPyMemTrace.reference_tracing_log_path() is None
    assert cPyMemTrace.reference_tracing_simple_wrapper_depth() == 0
    del kept


@NEEDS_313
def test_reference_tracing_simple_counts_and_nests():
    # GIVEN the seed's documented example of two nested simple tracers
    with cPyMemTrace.ReferenceTracingSimple() as profiler_a:
        made_in_a = [Fine() for _ in range(10)]
        with cPyMemTrace.ReferenceTracingSimple() as profiler_b:
            made_in_b = [Fine() for _ in range(100)]
            del made_in_b
            inner = (profiler_b.count_new(), profiler_b.count_del())
        outer = (profiler_a.count_new(), profiler_a.count_del())
        assert len(made_in_a) == 10  # kept alive through the inner block
    # THEN each counted what happened while it received the events
    assert inner[0] >= 100 and inner[1] >= 100
    assert 10 <= outer[0] < 100
    frozen = (profiler_b.count_new(), profiler_b.count_del())
    more = [Fine() for _ in range(10)]
    assert (profiler_b.count_new(), profiler_b.count_del()) == frozen  # no counting after exit
    del more
    assert not profiler_a.active
    assert _native._reftrace_stack() == []


@NEEDS_313
def test_reference_tracing_simple_inside_reference_tracing(logpath):
    # GIVEN a ReferenceTracingSimple entered inside a ReferenceTracing
    with cPyMemTrace.ReferenceTracing(filepath=logpath) as rt:
        with cPyMemTrace.ReferenceTracingSimple() as simple:
            hidden = Leaky()
        seen = Leaky()
    # THEN the simple one took the creation; the log says it was detached and back
    assert simple.count_new() >= 1
    assert rt.live_object_counts()[f"{MODULE}.Leaky"] == 1
    texts = [r[3] for r in records(logpath, "MSG:")]
    assert texts == [
        "# Detaching this Reference Tracing file wrapper. New tracer: ReferenceTracingSimple",
        "# Re-attaching this Reference Tracing file wrapper.",
    ]
    del hidden, seen


@NEEDS_313
def test_reference_tracing_simple_takes_no_arguments():
    with pytest.raises(TypeError):
        cPyMemTrace.ReferenceTracingSimple(1)


@NEEDS_313
def test_log_file_path_after_exit_is_the_path(logpath):
    with cPyMemTrace.ReferenceTracing(filepath=logpath) as rt:
        pass
    assert rt.log_file_path() == logpath
    assert (rt.count_new(), rt.count_del()) == (rt.stats()["new"], rt.stats()["del"])


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
    tracers = {}
    try:
        for gen in (-1, 0, 2):
            path = str(tmp_path / f"g{gen}.log")
            with cPyMemTrace.ReferenceTracing(filepath=path, gc_collect_on_exit=gen) as tracers[gen]:
                cycle()
    finally:
        gc.enable()
        gc.collect()
    # THEN -1 collects nothing (the cycle is live at exit); a generation collects it
    assert tracers[-1].live_object_counts().get(f"{MODULE}.Leaky") == 2
    for gen in (0, 2):
        assert f"{MODULE}.Leaky" not in tracers[gen].live_object_counts()
        assert len(records_of(str(tmp_path / f"g{gen}.log"), "DEL:", f"{MODULE}.Leaky")) == 2


@NEEDS_313
@pytest.mark.parametrize("bad", [-2, 3])
def test_gc_collect_on_exit_is_a_generation_or_minus_one(bad):
    with pytest.raises(ValueError, match="gc_collect_on_exit"):
        cPyMemTrace.ReferenceTracing(gc_collect_on_exit=bad)


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


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="this Python has PyRefTracer")
def test_older_python_reference_tracing_api_says_what_it_needs():
    # GIVEN a CPython older than 3.13
    # THEN the simple tracer's error names it and the version needed
    with pytest.raises(RuntimeError, match="ReferenceTracingSimple needs CPython 3.13"):
        cPyMemTrace.ReferenceTracingSimple()
    # AND the module functions behave as with nothing active
    assert cPyMemTrace.reference_tracing_wrapper_depth() == 0
    assert cPyMemTrace.reference_tracing_simple_wrapper_depth() == 0
    assert cPyMemTrace.reference_tracing_log_path() is None
    with pytest.raises(RuntimeError, match="no active ReferenceTracing"):
        cPyMemTrace.reference_tracing_live_object_counts()
    with pytest.raises(RuntimeError, match="no active ReferenceTracing"):
        cPyMemTrace.reference_tracing_write_message_to_log("x")


# --------------------------------------------------------------------------
# The seed project's documented examples, unchanged (pymemtrace 0.6:
# tests/test_cpymemtrace.py and pymemtrace/examples/ex_cPyMemTrace_RefTrace.py)

SEED_BYTES_WRAPPERS = '''
import random
import time

from pymemtrace import cPyMemTrace


class BytesWrapper:
    def __init__(self, length: int):
        self.bytes = b' ' * length


def exercise_bytes_wrapper():
    """Creates a bunch of BytesWrapper objects containing different lengths of bytes."""
    l = []
    for i in range(4):
        length = random.randint(512, 1024) + 1024 ** 2
        l.append(BytesWrapper(length))
        time.sleep(0.25)
    while len(l):
        p = l.pop()
        del p
        time.sleep(0.25)


def make_bytes_wrappers_with_reference_tracing() -> str:
    with cPyMemTrace.ReferenceTracing() as profiler:
        exercise_bytes_wrapper()
        return profiler.log_file_path()


print(make_bytes_wrappers_with_reference_tracing())
'''

SEED_DECORATOR_EXAMPLE = '''
import datetime
import random
import string

from pymemtrace import cpymemtrace_decs
from pymemtrace import cPyMemTrace


class StringAndTime:
    def __init__(self, size: int):
        self.now = datetime.datetime.now()
        self.str = ''.join(random.choices(string.printable, k=size))


@cpymemtrace_decs.reference_tracing(
    message='With include_builtins=False',
    include_builtins=False,
)
def example_reference_tracing():
    print(f'example_reference_tracing()')
    print(f'Logging to {cPyMemTrace.reference_tracing_log_path()}')
    list_of_str_and_time = []
    for i in range(4):
        str_len = random.randint(1024, 2048)
        v = StringAndTime(str_len)
        list_of_str_and_time.append(v)
        print(cPyMemTrace.reference_tracing_live_object_counts())


def main():
    example_reference_tracing()
    return 0


if __name__ == '__main__':
    exit(main())
'''


@NEEDS_313
def test_seed_make_bytes_wrappers_example_runs_unchanged(tmp_path):
    # GIVEN the seed's make_bytes_wrappers example, run as a program
    done = _run(SEED_BYTES_WRAPPERS, tmp_path)
    assert done.returncode == 0, done.stderr
    path = tmp_path / done.stdout.strip().splitlines()[-1]
    # THEN its log has NEW: and DEL: records of the four BytesWrapper objects
    new = records_of(str(path), "NEW:", "__main__.BytesWrapper")
    dead = records_of(str(path), "DEL:", "__main__.BytesWrapper")
    assert len(new) == 4 and len(dead) == 4
    assert {r[8] for r in new} == {"exercise_bytes_wrapper"}
    assert path.name.split("_")[4:6] == ["O", "0"]


@NEEDS_313
def test_seed_decorator_example_runs_unchanged(tmp_path):
    # GIVEN the seed's ex_cPyMemTrace_RefTrace.py, run as a program
    done = _run(SEED_DECORATOR_EXAMPLE, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # THEN it printed the log path and the live counts growing one by one
    assert lines[0] == "example_reference_tracing()"
    path = lines[1].removeprefix("Logging to ")
    counts = [line for line in lines[2:] if line.startswith("{")]
    assert [eval(c)["__main__.StringAndTime"] for c in counts] == [1, 2, 3, 4]
    # AND the log starts with the message and records the objects and their DEL:
    with open(tmp_path / path, encoding="utf-8") as stream:
        assert stream.readline() == "With include_builtins=False\n"
    assert len(records_of(str(tmp_path / path), "NEW:", "__main__.StringAndTime")) == 4
    assert len(records_of(str(tmp_path / path), "DEL:", "__main__.StringAndTime")) == 4
    assert len(records_of(str(tmp_path / path), "NEW:", "datetime.datetime")) == 4


# --------------------------------------------------------------------------
# Faults: a full disk, SIGTERM, fork (the log goes through core/logwriter)


def _whole_records(text):
    """The NEW:/DEL: lines of a log, each checked to be a whole record."""
    lines = text.split("\n")
    assert lines[-1] == "", "the log ends inside a line"
    out = []
    for line in lines[:-1]:
        if line.startswith(("NEW:\t", "DEL:\t")):
            fields = line.split("\t")
            assert len(fields) == 9, f"torn record: {line!r}"
            int(fields[3], 16)
            int(fields[7])
            out.append(fields)
    return out


@NEEDS_313
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_log_on_a_full_disk_is_refused_at_enter():
    # GIVEN a log that cannot be written (every write: ENOSPC)
    rt = cPyMemTrace.ReferenceTracing(filepath="/dev/full")
    # WHEN entered  THEN the error says so, and nothing is left tracing
    with pytest.raises(OSError) as info:
        rt.__enter__()
    assert info.value.errno == 28 and info.value.filename == "/dev/full"
    assert cPyMemTrace.reference_tracing_wrapper_depth() == 0
    assert _native._reftrace_stack() == []


@NEEDS_313
@pytest.mark.parametrize("limit", [None, 300_000])
def test_a_log_that_fills_the_disk_ends_with_whole_records_and_says_so(tmp_path, limit):
    # GIVEN a file size limit (the disk fills half-way) or, the twin, none
    log = tmp_path / "full.log"
    result = _run(
        f"""
        import resource, signal
        from pymemtrace import cPyMemTrace
        if {limit!r} is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, ({limit!r}, hard))
        class Node: pass
        try:
            with cPyMemTrace.ReferenceTracing(filepath={str(log)!r}) as rt:
                kept = [Node() for _ in range(20000)]
                try:
                    rt.write_message_to_log("after the nodes")
                except OSError as exc:
                    print("message", exc.errno)
        except OSError as exc:
            print("exit", exc.errno)
        else:
            print("ok")
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    text = log.read_text(encoding="utf-8")
    new = [r for r in _whole_records(text) if r[0] == "NEW:" and r[4] == "__main__.Node"]
    if limit is None:
        assert result.stdout.split() == ["ok"]
        assert len(new) == 20000 and text.endswith("EOF\n")
    else:
        # THEN the next Python-visible call and __exit__ raise the errno
        # (EFBIG), and the file stops at the last whole record before the
        # limit
        assert result.stdout.split() == ["message", "27", "exit", "27"]
        assert 0 < len(new) < 20000 and len(text.encode()) <= limit
        assert "EOF" not in text


@NEEDS_313
def test_a_log_that_fills_the_disk_at_interpreter_exit_says_so_on_stderr(tmp_path):
    # GIVEN a block never left, whose log hits the file size limit
    log = tmp_path / "full_at_exit.log"
    result = _run(
        f"""
        import resource, signal, sys
        from pymemtrace import cPyMemTrace
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, hard))
        class Node: pass
        rt = cPyMemTrace.ReferenceTracing(filepath={str(log)!r})
        rt.__enter__()
        kept = [Node() for _ in range(20000)]
        sys.exit(0)
        """,
        tmp_path,
    )
    # THEN one line says the log could not be written, and which
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines == [
        f"pymemtrace: ReferenceTracing could not write its log {str(log)!r}: "
        "File too large"
    ]
    _whole_records(log.read_text(encoding="utf-8"))


@NEEDS_313
def test_sigterm_inside_the_block_leaves_every_record_whole(tmp_path):
    # GIVEN a program killed by SIGTERM while two threads trace: records
    # in the writer's queue and in the buffer, one perhaps half formatted
    log = tmp_path / "term.log"
    result = _run(
        f"""
        import os, signal, threading
        from pymemtrace import cPyMemTrace
        class Node: pass
        class Busy: pass
        rt = cPyMemTrace.ReferenceTracing(filepath={str(log)!r})
        rt.__enter__()
        kept = [Node() for _ in range(30000)]
        def churn():
            while True:
                Busy()
        threading.Thread(target=churn, daemon=True).start()
        while rt.count_new() < 60000:
            pass
        os.kill(os.getpid(), signal.SIGTERM)
        """,
        tmp_path,
    )
    assert result.returncode == -15, result.stderr
    # THEN nothing buffered is lost, no record is torn, and the log says why
    # it ends
    text = log.read_text(encoding="utf-8")
    rows = _whole_records(text)
    assert sum(1 for r in rows if r[0] == "NEW:" and r[4] == "__main__.Node") == 30000
    assert text.endswith("\n# fatal signal: log ends here\n")
    assert not analyse_file(log).complete


@NEEDS_313
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_that_fills_buffers_and_exits_the_block_writes_nothing(logpath):
    # GIVEN a child that records more than a buffer holds and leaves the block
    with cPyMemTrace.ReferenceTracing(filepath=logpath) as rt:
        kept = [Leaky() for _ in range(3)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                more = [Fine() for _ in range(20000)]  # noqa: F841
                rt.__exit__(None, None, None)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        kept.append(Leaky())
    # THEN the child ended cleanly and the parent's log holds only its own
    assert os.waitstatus_to_exitcode(status) == 0
    with open(logpath, encoding="utf-8") as stream:
        text = stream.read()
    assert f"\t{MODULE}.Fine\t" not in text
    assert text.count("\nEOF\n") == 1
    analysis = analyse_file(logpath)
    assert analysis.complete and analysis.types[f"{MODULE}.Leaky"].created == 4
    del kept
