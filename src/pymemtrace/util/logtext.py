"""Moved to :mod:`pymemtrace.snapshots.logtext`; this name keeps working."""
from pymemtrace.snapshots.logtext import LogFormatError, escape, signed_int, unescape

__all__ = ["LogFormatError", "escape", "signed_int", "unescape"]
