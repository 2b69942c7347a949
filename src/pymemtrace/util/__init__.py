"""Readers and analyses of the logs pymemtrace writes (pure Python).

``cpymemtrace_log`` reads Profile/Trace logs (docs/log_format.md);
``ref_trace_analyse`` reads and analyses ReferenceTracing logs
(docs/reference_tracing.md) and runs as
``python -m pymemtrace.util.ref_trace_analyse LOG``.
"""
