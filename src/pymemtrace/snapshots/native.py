"""Captures of the native tracer (``pymemtrace native``): plain data.

One file per process, ``OUTDIR/native-<pid>.pmtn`` (``-<k>`` added when an
earlier program of the same pid left one before an exec), written by
``libpymemtrace_preload.so`` (``src/pymemtrace/_c/native/capture.c`` has
the byte layout).  A capture is an append-only list of records; a process
killed while writing leaves a truncated record at the end, which is
dropped: the last complete snapshot is the answer, and ``complete`` says
whether it is the one written at exit.
"""
from __future__ import annotations

import glob
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from pymemtrace.errors import PymemtraceError

MAGIC = b"PMTNAT1\n"
FILE_PATTERN = "native-*.pmtn"

REC_HEADER = 1
REC_STACK = 2
REC_MAPS = 3
REC_SNAPSHOT = 4
REC_SITES = 5  # per-stack allocation and free counts (since the SIZES change)
REC_SIZES = 6  # allocation calls by size, power-of-two buckets
REC_PYCODE = 7  # the names of a Python code id

#: A Python frame in a stack (the tracer sets the bit only on those; no
#: user-space return address has it): code id << 32 | line.
PYFRAME_TAG = 1 << 63
#: The code id of a frame whose code object the extension could not keep.
PYCODE_UNKNOWN = 0x7FFFFFFF

SNAP_PERIODIC = 1
SNAP_EXIT = 2

MODES = {0: "count", 1: "exact", 2: "sampled"}

_RECORD = struct.Struct("=II")
_HEADER = struct.Struct("=IIIIQQ")
_SNAPSHOT = struct.Struct("=IIIIqqQQQQQQ")
_ENTRY = struct.Struct("=IIqq")
_SITES = struct.Struct("=II")
_SITE = struct.Struct("=IIQQQQ")
SIZE_BUCKETS = 64
_SIZES = struct.Struct(f"={SIZE_BUCKETS}Q")
_PYCODE = struct.Struct("=IIII")


def is_python_frame(address: int) -> bool:
    """True when a stack entry is a Python frame, not a return address."""
    return address >= PYFRAME_TAG


def python_frame(address: int) -> Tuple[int, int]:
    """(code id, line) of a Python frame of a stack."""
    line = address & 0xFFFFFFFF
    if line >= 1 << 31:
        line -= 1 << 32
    return (address >> 32) & 0x7FFFFFFF, line


def size_bucket_bounds(k: int) -> Tuple[int, int]:
    """The sizes bucket ``k`` of :attr:`Totals.sizes` holds, both ends in:
    0 for bucket 0, then [2**(k-1), 2**k - 1]; the last bucket holds every
    larger size too."""
    if k == 0:
        return 0, 0
    high = 2**64 - 1 if k == SIZE_BUCKETS - 1 else 2**k - 1
    return 2 ** (k - 1), high


@dataclass(frozen=True)
class SiteCounts:
    """What happened at one stack since the start: allocations made there,
    how many of them were freed since, and their bytes (estimates in
    sampled mode, weighed as the live table)."""

    allocations: int
    frees: int
    bytes_allocated: int
    bytes_freed: int


class NativeFormatError(PymemtraceError):
    """A file is not a native capture (or its header is damaged)."""


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    offset: int
    perms: str
    path: str  # "" for anonymous memory


@dataclass
class Totals:
    """The state one snapshot records."""

    kind: int
    live_bytes: int
    peak_bytes: int
    allocations: int
    frees: int
    bytes_allocated: int
    drops: int
    unknown_frees: int
    time_ns: int
    #: stack id -> (bytes, blocks) live when the snapshot was written
    live: Dict[int, Tuple[int, int]] = field(default_factory=dict)
    #: stack id -> (bytes, blocks) at the highest total so far
    peak: Dict[int, Tuple[int, int]] = field(default_factory=dict)
    #: stack id -> its allocations and frees so far (empty in counting mode
    #: and in captures written before the summary existed)
    counts: Dict[int, SiteCounts] = field(default_factory=dict)
    #: allocation calls by size (SIZE_BUCKETS buckets, size_bucket_bounds),
    #: every mode; None in captures written before the histogram existed
    sizes: Optional[Tuple[int, ...]] = None


@dataclass
class NativeCapture:
    """One process's capture."""

    path: str
    pid: int
    ppid: int
    mode: str
    depth: int
    sample_bytes: int
    start_ns: int
    command: List[str]
    #: stack id -> return addresses, innermost first, then (when the
    #: pymemtrace extension was loaded) the Python frames, innermost first
    #: (is_python_frame, python_frame)
    stacks: Dict[int, Tuple[int, ...]]
    maps: List[Mapping]
    #: the last complete snapshot (None: the process ended before its first)
    totals: Optional[Totals]
    #: bytes at the end of the file that did not form a whole record
    truncated_bytes: int = 0
    #: Python code id -> (file, function)
    pycodes: Dict[int, Tuple[str, str]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when the last snapshot is the one written at exit."""
        return self.totals is not None and self.totals.kind == SNAP_EXIT


def parse_maps(text: str) -> List[Mapping]:
    maps = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            start, end = (int(x, 16) for x in parts[0].split("-"))
            offset = int(parts[2], 16)
        except ValueError:
            continue
        maps.append(Mapping(start, end, offset, parts[1], parts[5].strip() if len(parts) > 5 else ""))
    return maps


def read_capture(path: str) -> NativeCapture:
    """The capture in ``path``; :class:`NativeFormatError` when it is not one."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise NativeFormatError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from None
    if not data.startswith(MAGIC):
        raise NativeFormatError(f"{path} is not a native capture (no {MAGIC[:-1].decode()} header)")
    pos = len(MAGIC)
    capture: Optional[NativeCapture] = None
    stacks: Dict[int, Tuple[int, ...]] = {}
    maps: List[Mapping] = []
    pycodes: Dict[int, Tuple[str, str]] = {}
    totals: Optional[Totals] = None
    # SITES and SIZES count only once the SNAPSHOT of their batch is whole.
    counts: Dict[int, SiteCounts] = {}
    pending_counts: Dict[int, SiteCounts] = {}
    pending_sizes: Optional[Tuple[int, ...]] = None
    while pos + _RECORD.size <= len(data):
        rtype, length = _RECORD.unpack_from(data, pos)
        body = pos + _RECORD.size
        if body + length > len(data):
            break  # a record cut short by a kill: the tail is dropped
        payload = memoryview(data)[body : body + length]
        pos = body + length
        if rtype == REC_HEADER and length >= _HEADER.size:
            pid, ppid, mode, depth, sample_bytes, start_ns = _HEADER.unpack_from(payload, 0)
            words = bytes(payload[_HEADER.size :]).split(b"\0")
            if words and words[-1] == b"":
                words.pop()
            command = [os.fsdecode(word) for word in words]
            capture = NativeCapture(path, pid, ppid, MODES.get(mode, str(mode)), depth, sample_bytes,
                                    start_ns, command, stacks, maps, None)
        elif rtype == REC_STACK and length >= 8:
            sid, n = struct.unpack_from("=II", payload, 0)
            if length >= 8 + 8 * n:
                stacks[sid] = struct.unpack_from(f"={n}Q", payload, 8)
        elif rtype == REC_PYCODE and length >= _PYCODE.size:
            code_id, flen, nlen, _pad = _PYCODE.unpack_from(payload, 0)
            if length >= _PYCODE.size + flen + nlen:
                names = bytes(payload[_PYCODE.size : _PYCODE.size + flen + nlen])
                pycodes[code_id] = (names[:flen].decode("utf-8", "replace"),
                                    names[flen:].decode("utf-8", "replace"))
        elif rtype == REC_MAPS:
            maps[:] = parse_maps(bytes(payload).decode("utf-8", "replace"))
        elif rtype == REC_SITES and length >= _SITES.size:
            (n, _pad) = _SITES.unpack_from(payload, 0)
            if length >= _SITES.size + _SITE.size * n:
                for offset in range(_SITES.size, _SITES.size + _SITE.size * n, _SITE.size):
                    sid, _pad, *values = _SITE.unpack_from(payload, offset)
                    pending_counts[sid] = SiteCounts(*values)
        elif rtype == REC_SIZES and length >= _SIZES.size:
            pending_sizes = _SIZES.unpack_from(payload, 0)
        elif rtype == REC_SNAPSHOT and length >= _SNAPSHOT.size:
            fields = _SNAPSHOT.unpack_from(payload, 0)
            kind, nlive, npeak = fields[0], fields[1], fields[2]
            if length < _SNAPSHOT.size + _ENTRY.size * (nlive + npeak):
                continue
            snap = Totals(kind, *fields[4:])
            offset = _SNAPSHOT.size
            for i in range(nlive + npeak):
                sid, _pad, nbytes, blocks = _ENTRY.unpack_from(payload, offset)
                offset += _ENTRY.size
                (snap.live if i < nlive else snap.peak)[sid] = (nbytes, blocks)
            counts.update(pending_counts)
            pending_counts = {}
            snap.counts = counts  # the last whole snapshot is the one kept
            snap.sizes, pending_sizes = pending_sizes, None
            totals = snap
    if capture is None:
        raise NativeFormatError(f"{path}: the capture has no header record")
    capture.totals = totals
    capture.pycodes = pycodes
    capture.truncated_bytes = len(data) - pos
    return capture


def capture_paths(outdir: str) -> List[str]:
    return sorted(glob.glob(os.path.join(glob.escape(outdir), FILE_PATTERN)))


def is_capture_dir(path: str) -> bool:
    return os.path.isdir(path) and bool(capture_paths(path))


def read_outdir(outdir: str) -> List[NativeCapture]:
    """Every capture in ``outdir``, by pid (then file name)."""
    if not os.path.isdir(outdir):
        raise NativeFormatError(f"{outdir} is not a directory of native captures")
    paths = capture_paths(outdir)
    if not paths:
        raise NativeFormatError(f"{outdir} holds no native capture ({FILE_PATTERN})")
    captures = [read_capture(path) for path in paths]
    captures.sort(key=lambda c: (c.start_ns, c.pid, c.path))
    return captures
