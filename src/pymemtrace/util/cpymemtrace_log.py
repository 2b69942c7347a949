"""Moved to :mod:`pymemtrace.snapshots.profile_log`; this name keeps working."""
from pymemtrace.snapshots.profile_log import (
    EVENT_TAGS,
    HDR_PREFIX,
    WHATS,
    LogFormatError,
    Message,
    ProfileLog,
    Record,
    RecordTuple,
    iter_records,
    open_log,
    parse_lines,
    read_log,
)

__all__ = [
    "EVENT_TAGS", "HDR_PREFIX", "WHATS", "LogFormatError", "Message", "ProfileLog", "Record",
    "RecordTuple", "iter_records", "open_log", "parse_lines", "read_log",
]
