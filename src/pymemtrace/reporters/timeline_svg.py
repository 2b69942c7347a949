"""Moved: the timeline chart is drawn by :mod:`pymemtrace.reporters.svg_chart`.

Kept so that imports of the old module keep working.
"""

from pymemtrace.reporters.svg_chart import human_bytes, timeline_svg  # noqa: F401

__all__ = ["human_bytes", "timeline_svg"]
