"""Captures of the native (malloc-level) tracer, read from Python.

``pymemtrace native -o OUTDIR -- COMMAND`` leaves one capture per process
in OUTDIR; ``load(OUTDIR)`` (or ``load(one .pmtn file)``) reads them back,
symbolized, one :class:`NativeCapture` per process in the order they
started::

    from pymemtrace import native

    for capture in native.load("native_out"):
        print(capture.pid, capture.command, capture.complete)
        for site in capture.leaked.sites[:3]:       # live at exit, largest first
            print(site.bytes, site.blocks, [frame.function for frame in site.frames])
        for row in capture.functions[:5]:           # allocations by function
            print(row.function, row.mallocs, row.frees, row.bytes_allocated, row.bytes_freed)
        for bucket in capture.sizes:                # allocation sizes
            print(bucket.bucket_low, bucket.bucket_high, bucket.count)

``capture.to_dict()`` is the capture as ``pymemtrace report OUTDIR --format
json`` prints it, and ``to_json(captures)`` the whole document
(docs/native.md has the contract).  ``load_raw`` gives the records as
written (return addresses, maps, per-stack totals), without symbols.
"""
from __future__ import annotations

import os
from typing import List, Sequence, Union

from pymemtrace.analyses.native import (
    SCHEMA,
    Frame,
    FunctionCounts,
    Section,
    Site,
    SizeBucket,
    analyse,
    to_json,
)
from pymemtrace.analyses.native import ProcessReport as NativeCapture
from pymemtrace.reporters import native_text
from pymemtrace.snapshots.native import NativeCapture as RawCapture
from pymemtrace.snapshots.native import NativeFormatError, SiteCounts, read_capture, read_outdir

__all__ = [
    "load",
    "load_raw",
    "to_json",
    "render_text",
    "NativeCapture",
    "RawCapture",
    "Section",
    "Site",
    "Frame",
    "FunctionCounts",
    "SizeBucket",
    "SiteCounts",
    "NativeFormatError",
    "SCHEMA",
]

PathLike = Union[str, "os.PathLike[str]"]


def load_raw(path: PathLike) -> List[RawCapture]:
    """The captures of a directory (``pymemtrace native -o``), or the one in
    a capture file, as written: stacks of return addresses, the maps, the
    last whole snapshot.  :class:`NativeFormatError` when there is none."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return read_outdir(path)
    return [read_capture(path)]


def load(path: PathLike) -> List[NativeCapture]:
    """The captures of a directory or a capture file, symbolized: per
    process, ``leaked`` and ``peak`` (sites with their frames),
    ``functions``, ``sizes``, the totals and ``to_dict()``.
    :class:`NativeFormatError` when ``path`` holds no capture."""
    return analyse(load_raw(path))


def render_text(captures: Sequence[NativeCapture], top: int = 10, functions: bool = False,
                sizes: bool = False) -> str:
    """The text ``pymemtrace report OUTDIR`` prints (``--functions``,
    ``--sizes``: the allocations by function, the histogram of sizes)."""
    return native_text.render(captures, top=top, functions=functions, sizes=sizes)
