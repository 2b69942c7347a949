"""The names of the log readers and analyses before issue 9 (kept working).

They moved: the readers to :mod:`pymemtrace.snapshots` (``profile_log``,
``reftrace_log``, ``logtext``), the analyses to :mod:`pymemtrace.analyses`
(``profile``, ``reftrace``).  These modules only re-export them (front
ends, docs/design.md section 1); ``ref_trace_analyse`` also keeps the
command ``pymemtrace_ref_trace_analyse`` (``python -m
pymemtrace.util.ref_trace_analyse LOG``).
"""
