"""Native captures -> memory live at exit (the leaks) and at the peak, by site;
allocation and free counts by function; allocations by size.

A site is a call stack with its frames symbolized (function and library);
stacks that differ only in addresses within the same functions are one
site.  Frames inside the tracer itself are left out.  When the capture
holds Python frames (the pymemtrace extension was imported in the traced
process), they take the place of the interpreter's frames: a site's frames
are the native ones from the allocator's caller up to the first frame in
the interpreter (libpython or the python executable; the innermost frame
is always kept), then the Python frames, innermost first.  The result is plain
data that the native reporters render (``reporters/native_text.py``,
``reporters/native_json.py``); ``SCHEMA`` is the version of the JSON
contract of docs/native.md.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from pymemtrace.snapshots.native import (
    PYCODE_UNKNOWN,
    NativeCapture,
    SiteCounts,
    is_python_frame,
    python_frame,
    size_bucket_bounds,
)
from pymemtrace.snapshots.native_symbols import ElfSymbols, SourceLines, Symbolized, Symbolizer

SCHEMA = 1
PRELOAD_LIBRARY = "libpymemtrace_preload.so"
#: The interpreter's own code: libpython3.11.so.1.0, python3.11, python3d...
_INTERPRETER = re.compile(r"(lib)?python\d*(\.\d+)*[a-z]*(\.so(\.[\d.]+)?)?")


def is_interpreter(library: Optional[str]) -> bool:
    """True for the library (or executable) holding the interpreter."""
    return bool(library) and _INTERPRETER.fullmatch(os.path.basename(library)) is not None


# The interpreter's evaluation loop and its entry points, across 3.9-3.14:
# the Python frames stand in their place.
_EVAL_LOOP = re.compile(r"_?PyEval_Eval\w*|_PyEval_Vector|function_code_fastcall|_PyFunction_Vectorcall")


def _python_cut(native: Sequence["Frame"]) -> int:
    """How many native frames (innermost first) come before the Python
    ones: up to the interpreter's frame that called into C code (an
    extension's allocation: the extension's frames), or up to the
    evaluation loop (an allocation of the interpreter's own: the C
    functions of the object that allocated).  The innermost is always kept."""
    left_interpreter = False
    for k, frame in enumerate(native):
        if k == 0:
            left_interpreter = not is_interpreter(frame.library)
            continue
        inside = is_interpreter(frame.library)
        if inside and (left_interpreter or _EVAL_LOOP.fullmatch(frame.function)):
            return k
        left_interpreter = left_interpreter or not inside
    return len(native)


@dataclass(frozen=True)
class Frame:
    function: str
    file: Optional[str]
    line: Optional[int]
    library: Optional[str]
    python: bool = False

    def to_json(self) -> dict:
        return {"function": self.function, "file": self.file, "line": self.line,
                "library": self.library, "python": self.python}


@dataclass
class Site:
    bytes: int
    blocks: int
    frames: Tuple[Frame, ...]

    def to_json(self) -> dict:
        return {"bytes": self.bytes, "blocks": self.blocks, "frames": [f.to_json() for f in self.frames]}


@dataclass
class Section:
    """Memory at one moment (exit, or the peak) by site, largest first."""

    bytes: int = 0
    blocks: int = 0
    sites: List[Site] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"bytes": self.bytes, "blocks": self.blocks, "sites": [s.to_json() for s in self.sites]}


@dataclass
class FunctionCounts:
    """Calls to the allocator from one native function (the innermost frame
    of the stacks, the caller of malloc, calloc, realloc, ...): how many
    allocations it made and for how many bytes, and how many of those
    blocks were freed since (by whichever function) with their bytes."""

    function: str
    library: Optional[str]
    mallocs: int = 0
    frees: int = 0
    bytes_allocated: int = 0
    bytes_freed: int = 0

    def to_json(self) -> dict:
        return {"function": self.function, "library": self.library, "mallocs": self.mallocs,
                "frees": self.frees, "bytes_allocated": self.bytes_allocated, "bytes_freed": self.bytes_freed}


@dataclass(frozen=True)
class SizeBucket:
    """Allocation calls whose size lies in [bucket_low, bucket_high]."""

    bucket_low: int
    bucket_high: int
    count: int

    def to_json(self) -> dict:
        return {"bucket_low": self.bucket_low, "bucket_high": self.bucket_high, "count": self.count}


@dataclass
class ProcessReport:
    pid: int
    ppid: int
    command: List[str]
    path: str
    mode: str
    sample_bytes: int
    #: False when the process ended without its exit snapshot (killed by a
    #: signal, exec): "leaked" is then what was live at its last snapshot
    complete: bool
    leaked: Section
    peak: Section
    allocations: int = 0
    frees: int = 0
    bytes_allocated: int = 0
    drops: int = 0
    #: per allocating function, most bytes first (empty in counting mode)
    functions: List[FunctionCounts] = field(default_factory=list)
    #: allocation calls by size, from the smallest bucket used to the
    #: largest (empty buckets between them included, as DTrace's quantize)
    sizes: List[SizeBucket] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "pid": self.pid,
            "ppid": self.ppid,
            "command": list(self.command),
            "capture": self.path,
            "mode": self.mode,
            "sample_bytes": self.sample_bytes if self.mode == "sampled" else None,
            "complete": self.complete,
            "allocations": self.allocations,
            "frees": self.frees,
            "bytes_allocated": self.bytes_allocated,
            "drops": self.drops,
            "leaked": self.leaked.to_json(),
            "peak": self.peak.to_json(),
            "functions": [f.to_json() for f in self.functions],
            "sizes": [b.to_json() for b in self.sizes],
        }

    to_dict = to_json


def _frame_of(sym: Symbolized, address: int, lines: SourceLines) -> Frame:
    library = sym.library
    source = lines.at(library, sym.offset) if library else None
    if sym.function is not None:
        name = lines.name(sym.function)
        if source is not None and source.function and sym.function.startswith("_Z"):
            name = source.function
    elif library:
        name = f"{os.path.basename(library)}+{sym.offset:#x}"
    else:
        name = f"{address:#x}"
    if source is None:
        return Frame(name, None, None, library)
    return Frame(name, source.file, source.line, library)


class _StackNamer:
    def __init__(self, capture: NativeCapture, symbolizer: Symbolizer, lines: SourceLines) -> None:
        self.capture = capture
        self.symbolizer = symbolizer
        self.lines = lines
        self.maps = sorted(capture.maps, key=lambda m: m.start)
        self.starts = [m.start for m in self.maps]
        self.addresses: Dict[int, Frame] = {}
        self.stacks: Dict[int, Tuple[Frame, ...]] = {}
        self.native_stacks: Dict[int, Tuple[Frame, ...]] = {}
        self._symbolized = self._symbolize_all()

    def _symbolize_all(self) -> Dict[int, Symbolized]:
        """Every native address of the capture, with the source lines and
        demangled names of all of them looked up in one run per file."""
        done: Dict[int, Symbolized] = {}
        wanted: Dict[str, set] = {}
        for stack in self.capture.stacks.values():
            for address in stack:
                if address in done or is_python_frame(address):
                    continue
                sym = done[address] = self.symbolizer.symbolize(address, self.maps, self.starts)
                if sym.library and sym.library.startswith("/") and os.path.basename(sym.library) != PRELOAD_LIBRARY:
                    wanted.setdefault(sym.library, set()).add(sym.offset)
        self.lines.resolve(wanted)
        self.lines.demangle(sym.function for sym in done.values() if sym.function)
        return done

    def _frame(self, address: int) -> Frame:
        frame = self.addresses.get(address)
        if frame is None:
            if is_python_frame(address):
                code_id, line = python_frame(address)
                file, function = self.capture.pycodes.get(code_id, (None, "<python>"))
                if code_id == PYCODE_UNKNOWN:
                    file, function = None, "<python>"
                frame = Frame(function, file, line if file is not None else None, None, True)
            else:
                sym = self._symbolized.get(address)
                if sym is None:
                    sym = self.symbolizer.symbolize(address, self.maps, self.starts)
                frame = _frame_of(sym, address, self.lines)
            self.addresses[address] = frame
        return frame

    def _split(self, sid: int) -> None:
        native: List[Frame] = []
        python: List[Frame] = []
        for address in self.capture.stacks.get(sid, ()):
            frame = self._frame(address)
            if frame.python:
                python.append(frame)
            elif not (frame.library and os.path.basename(frame.library) == PRELOAD_LIBRARY):
                native.append(frame)
        self.native_stacks[sid] = tuple(native)
        if python:
            native = native[:_python_cut(native)]
        self.stacks[sid] = tuple(native + python)

    def frames(self, sid: int) -> Tuple[Frame, ...]:
        """The site's frames: native, then Python ones in the interpreter's place."""
        if sid not in self.stacks:
            self._split(sid)
        return self.stacks[sid]

    def native(self, sid: int) -> Tuple[Frame, ...]:
        """The native frames alone."""
        if sid not in self.native_stacks:
            self._split(sid)
        return self.native_stacks[sid]


def _section(entries: Dict[int, Tuple[int, int]], namer: _StackNamer, total_bytes: Optional[int]) -> Section:
    by_site: Dict[Tuple[Frame, ...], List[int]] = {}
    blocks = 0
    for sid, (nbytes, nblocks) in entries.items():
        frames = namer.frames(sid)
        acc = by_site.setdefault(frames, [0, 0])
        acc[0] += nbytes
        acc[1] += nblocks
        blocks += nblocks
    sites = [Site(b, k, frames) for frames, (b, k) in by_site.items() if b or k]
    sites.sort(key=lambda s: (-s.bytes, -s.blocks))
    summed = sum(s.bytes for s in sites)
    return Section(summed if total_bytes is None else total_bytes, blocks, sites)


def _functions(counts: Dict[int, SiteCounts], namer: _StackNamer) -> List[FunctionCounts]:
    by_function: Dict[Tuple[str, Optional[str]], FunctionCounts] = {}
    for sid, c in counts.items():
        frames = namer.native(sid)
        key = (frames[0].function, frames[0].library) if frames else ("?", None)
        row = by_function.get(key)
        if row is None:
            row = by_function[key] = FunctionCounts(*key)
        row.mallocs += c.allocations
        row.frees += c.frees
        row.bytes_allocated += c.bytes_allocated
        row.bytes_freed += c.bytes_freed
    rows = [row for row in by_function.values() if row.mallocs or row.frees]
    rows.sort(key=lambda r: (-r.bytes_allocated, -r.mallocs, r.function))
    return rows


def _sizes(counts: Optional[Sequence[int]]) -> List[SizeBucket]:
    if not counts:
        return []
    used = [k for k, n in enumerate(counts) if n]
    if not used:
        return []
    return [SizeBucket(*size_bucket_bounds(k), counts[k]) for k in range(used[0], used[-1] + 1)]


def analyse_capture(capture: NativeCapture, elf_cache: Optional[Dict[str, ElfSymbols]] = None,
                    lines: Optional[SourceLines] = None) -> ProcessReport:
    namer = _StackNamer(capture, Symbolizer(elf_cache), lines if lines is not None else SourceLines())
    totals = capture.totals
    if totals is None:
        leaked, peak = Section(), Section()
    else:
        leaked = _section(totals.live, namer, None)
        peak = _section(totals.peak, namer, None)
    report = ProcessReport(capture.pid, capture.ppid, capture.command, capture.path, capture.mode,
                           capture.sample_bytes, capture.complete, leaked, peak)
    if totals is not None:
        report.allocations = totals.allocations
        report.frees = totals.frees
        report.bytes_allocated = totals.bytes_allocated
        report.drops = totals.drops
        report.functions = _functions(totals.counts, namer)
        report.sizes = _sizes(totals.sizes)
    return report


def analyse(captures: Sequence[NativeCapture]) -> List[ProcessReport]:
    cache: Dict[str, ElfSymbols] = {}
    lines = SourceLines()
    return [analyse_capture(capture, cache, lines) for capture in captures]


def to_json(reports: Sequence[ProcessReport]) -> dict:
    return {"schema": SCHEMA, "processes": [r.to_json() for r in reports]}
