"""Every public name of the seed modules still imports (issue 9: the code
moved into layers, the names stay).

The names are listed here, not read from the modules, so that a name
dropped from a module's ``__all__`` fails this test: they are the
``__all__`` of each module on main before issue 9, the modules
docs/techniques.md and the seed's techniques.rst point users to
(``process``, ``debug_malloc_stats``, ``trace_malloc``), and the ``util``
names docs/report.md's examples import.
"""

import importlib

import pytest

SEED_NAMES = {
    "pymemtrace.process": [
        "LOGGER_PREFIX", "LOGGER_PREFIX_START", "LOGGER_PREFIX_STOP", "ProcessLoggingThread",
        "ProcessSummary", "format_summary", "log_process", "log_process_dec", "main", "read_log",
        "summarise", "write_plots",
    ],
    "pymemtrace.process_tree": [
        "JsonLinesWriter", "METRICS", "Metric", "ProcessRow", "ProcessTreeMonitor", "SCHEMA",
        "Sample", "TableWriter", "add_arguments", "main", "run",
    ],
    "pymemtrace.cPyMemTrace": [
        "Profile", "ReferenceTracing", "ReferenceTracingSimple", "Trace", "page_size",
        "profile_log_path", "profile_wrapper_depth", "profile_write_message_to_log",
        "reference_tracing_live_object_counts", "reference_tracing_log_path",
        "reference_tracing_simple_wrapper_depth", "reference_tracing_wrapper_depth",
        "reference_tracing_write_message_to_log", "rss", "rss_peak", "trace_log_path",
        "trace_wrapper_depth", "trace_write_message_to_log",
    ],
    "pymemtrace.cpymemtrace_decs": [
        "profile", "profile_log_path", "profile_wrapper_depth", "profile_write_message_to_log",
        "reference_tracing", "reference_tracing_live_object_counts", "reference_tracing_log_path",
        "reference_tracing_simple_wrapper_depth", "reference_tracing_wrapper_depth",
        "reference_tracing_write_message_to_log", "trace", "trace_log_path",
        "trace_wrapper_depth", "trace_write_message_to_log",
    ],
    "pymemtrace.trace_malloc": ["TraceMalloc", "trace_malloc_log", "trace_malloc_report"],
    "pymemtrace.debug_malloc_stats": [
        "DebugMallocArenas", "DebugMallocPoolsBlocks", "DebugMallocStat", "DebugTypeStat",
        "DiffSysDebugMallocStats", "SysDebugMallocStats", "diff_debugmallocstats",
        "get_debugmallocstats", "interpreter_allocator",
    ],
    "pymemtrace.redirect_stdout": ["stderr_redirector", "stdout_redirector"],
    # The seed's C module of leaks made on purpose (issue 10), with the
    # leak/no-leak twins it gained (docs/cmemleak.md).
    "pymemtrace.cMemLeak": [
        "CMalloc", "PyMalloc", "PyRawMalloc", "py_bytes_of_size", "py_decref", "py_incref",
        "py_refcnt_of_address", "py_refcnt_of_object",
        "leak_incref", "leak_list", "leak_malloc", "leak_pymem", "leak_pymem_raw",
        "no_leak_incref", "no_leak_list", "no_leak_malloc", "no_leak_pymem",
        "no_leak_pymem_raw",
    ],
    # Not seed modules, but public before issue 9 and documented
    # (docs/allocations.md, docs/report.md): they keep working too.
    "pymemtrace.allocations": [
        "AllocationSnapshot", "Frame", "Site", "SiteDiff", "counters", "counting",
        "group_sites", "is_tracking", "load", "reset_peak", "snapshot", "start", "stats",
        "stop", "tracker_memory", "tracking",
    ],
    "pymemtrace.util.ref_trace_analyse": [
        "LogFormatError", "RefTraceAnalysis", "Site", "TypeStats", "analyse_file",
        "analyse_lines", "main",
    ],
    "pymemtrace.util.profile_analyse": [
        "DEFAULT_TOP", "Growth", "MAX_KEPT_MESSAGES", "OPENED_BY", "OPENING",
        "ProfileAccumulator", "ProfileAnalysis", "RetainedStack", "SiteBytes", "SiteTotal",
        "TIMELINE_POINTS", "analyse", "analyse_file", "analyse_lines",
    ],
    "pymemtrace.util.cpymemtrace_log": [
        "LogFormatError", "Message", "ProfileLog", "Record", "RecordTuple", "iter_records",
        "open_log", "parse_lines", "read_log",
    ],
    "pymemtrace.util.logtext": ["LogFormatError", "signed_int", "unescape"],
}

def public_name(module: str, name: str):
    return getattr(importlib.import_module(module), name)


CASES = [(module, name) for module, names in SEED_NAMES.items() for name in names]


@pytest.mark.parametrize("module, name", CASES, ids=[f"{m}.{n}" for m, n in CASES])
def test_a_public_name_still_imports(module, name):
    # WHEN the name is imported from its module  THEN it is there
    assert public_name(module, name) is not None


@pytest.mark.parametrize("module", sorted(SEED_NAMES))
def test_star_import_gives_the_names(module):
    # GIVEN the module's __all__ (when it has one) WHEN `from module import *`
    namespace = {}
    exec(f"from {module} import *", namespace)  # noqa: S102
    mod = importlib.import_module(module)
    if hasattr(mod, "__all__"):
        # THEN every name it had is among them
        assert set(SEED_NAMES[module]) <= set(namespace)


def test_the_moved_readers_are_the_same_objects():
    # GIVEN the util names kept as shims  THEN they are the moved objects,
    # not copies (isinstance and except clauses keep working)
    from pymemtrace.analyses import profile, reftrace
    from pymemtrace.snapshots import logtext, profile_log
    from pymemtrace.util import cpymemtrace_log, profile_analyse, ref_trace_analyse
    from pymemtrace.util import logtext as old_logtext

    assert cpymemtrace_log.read_log is profile_log.read_log
    assert profile_analyse.analyse_file is profile.analyse_file
    assert ref_trace_analyse.analyse_file is reftrace.analyse_file
    assert old_logtext.LogFormatError is logtext.LogFormatError is cpymemtrace_log.LogFormatError


def test_a_missing_name_is_caught():
    # The twin: a name that was never there fails the check above.
    with pytest.raises(AttributeError):
        public_name("pymemtrace.trace_malloc", "NoSuchName")
