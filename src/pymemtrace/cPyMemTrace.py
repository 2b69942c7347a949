"""Memory per call, per line and per object, from the C core.

``rss()`` and ``rss_peak()`` read the process memory; ``Profile``,
``Trace`` and ``ReferenceTracing`` log it while code runs.
"""
from pymemtrace._native import page_size, rss, rss_peak
from pymemtrace._native import ReferenceTracing

__all__ = ["page_size", "rss", "rss_peak"]
__all__ += ["ReferenceTracing"]
