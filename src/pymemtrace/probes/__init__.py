"""Probes: read a process's memory; they know nothing of logs or reports.

The lowest layer above the C core (``pymemtrace._native``): a probe
imports only the C core, psutil and the standard library.
"""
