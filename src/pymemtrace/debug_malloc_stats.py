"""What Python's small-object allocator (pymalloc) holds, and how a block changes it.

:func:`sys._debugmallocstats` prints a report on the C ``stderr``: pymalloc's
size classes (pools and blocks in use), its arenas, the bytes lost to
overheads, and the free lists of some object types.  This module captures the
report (:func:`get_debugmallocstats`), parses it (:class:`SysDebugMallocStats`)
and diffs two of them (:class:`DiffSysDebugMallocStats`)::

    from pymemtrace import debug_malloc_stats

    with debug_malloc_stats.DiffSysDebugMallocStats() as malloc_diff:
        cache.extend(" " * (i * 8) for i in range(1, 9))
    print(malloc_diff.diff())

API of the seed system, with its defects fixed:

* a size class or object type present in only one of the two snapshots is
  reported (pymalloc omits size classes that have no pool; the seed crashed
  when one appeared);
* the pool and arena sizes are read from the report (16 KiB pools and 1 MiB
  arenas on 3.10+, 4 KiB and 256 KiB before), never assumed;
* the report is captured at the file descriptor level, so it works under
  pytest's capture and when ``sys.stderr`` is replaced, and the descriptors
  are restored even on error;
* when the interpreter does not use pymalloc (``PYTHONMALLOC=malloc``,
  ``malloc_debug``, ``mimalloc``) the report has no size classes: the
  snapshot says so (``allocator``), and ``diff()`` says so plainly before
  diffing what there is (free lists, or mimalloc's summary);
* CPython also leaves pymalloc out of the report while tracemalloc (or any
  other hook on the Python allocators) is installed; the snapshot detects
  that (``allocator == 'hooked'``) and ``diff()`` says so.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import tracemalloc
from typing import Dict, Iterable, KeysView, List, NamedTuple, Optional, Tuple, Union

__all__ = [
    "DebugMallocArenas",
    "DebugMallocPoolsBlocks",
    "DebugMallocStat",
    "DebugTypeStat",
    "DiffSysDebugMallocStats",
    "SysDebugMallocStats",
    "diff_debugmallocstats",
    "get_debugmallocstats",
    "interpreter_allocator",
]

#: Values of :attr:`SysDebugMallocStats.allocator`.
PYMALLOC = "pymalloc"
MIMALLOC = "mimalloc"
MALLOC = "malloc"
#: pymalloc is in use, but an allocator hook installed over it (tracemalloc,
#: or any tool calling PyMem_SetAllocator) makes CPython leave the pymalloc
#: section out of the report.
HOOKED = "hooked"

# Only one capture at a time: the redirection of fd 2 is process-wide.
_capture_lock = threading.Lock()


def get_debugmallocstats() -> bytes:
    """Call :func:`sys._debugmallocstats` and return what it wrote, as bytes.

    The report goes to the C ``stderr`` (file descriptor 2), not to
    ``sys.stderr``, so descriptor 2 is pointed at a temporary file for the
    call (``os.dup``/``os.dup2``) and restored afterwards, also on error.
    Anything another thread writes to descriptor 2 during the call lands in
    the capture too.
    """
    report = getattr(sys, "_debugmallocstats", None)
    if report is None:
        raise RuntimeError(
            f"sys._debugmallocstats() is not available on {sys.implementation.name}"
        )
    # Text already written through sys.stderr must reach the real stderr,
    # not our capture.
    _flush(sys.stderr)
    _flush(sys.__stderr__)
    with _capture_lock, tempfile.TemporaryFile() as capture:
        try:
            saved: Optional[int] = os.dup(2)
        except OSError:
            saved = None  # descriptor 2 is closed: leave it closed afterwards
        try:
            os.dup2(capture.fileno(), 2)
            try:
                report()
            finally:
                if saved is not None:
                    os.dup2(saved, 2)
                else:
                    os.close(2)
        finally:
            if saved is not None:
                os.close(saved)
        capture.seek(0)
        return capture.read()


def _hook_reason() -> Optional[str]:
    """Why a report of this interpreter would lack pymalloc's section, if hooked.

    CPython prints pymalloc's statistics only when the object allocator *is*
    pymalloc: while tracemalloc or another PEP 445 hook wraps it, the report
    has the free lists only.  ``sys.getallocatedblocks()`` still counts
    pymalloc's blocks then, and is 0 when pymalloc is not used at all.
    """
    if tracemalloc.is_tracing():
        return "tracemalloc is tracing"
    if sys.getallocatedblocks() > 0:
        return "an allocator hook (PyMem_SetAllocator) is installed"
    return None


def _capture() -> Tuple[bytes, Optional[str]]:
    """A live report and, if pymalloc's section could be hidden, why."""
    text = get_debugmallocstats()
    return text, _hook_reason()


def _flush(stream) -> None:
    try:
        if stream is not None:
            stream.flush()
    except (OSError, ValueError):
        pass  # closed or broken stream: nothing of ours to lose


def _as_int(text: Union[str, bytes]) -> int:
    """``'1,572,864'`` -> 1572864."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    return int(text.replace(",", ""))


def last_value_as_int(line: Union[str, bytes]) -> int:
    """The number after the ``=`` of a report line such as ``# arenas reclaimed  =  2,015``."""
    if isinstance(line, bytes):
        line = line.decode("ascii", "replace")
    return _as_int(line.rsplit("=", 1)[1].strip())


class DebugMallocStat(NamedTuple):
    """One size class of pymalloc, a row of the report's table::

        class   size   num pools   blocks in use  avail blocks
            1     32           7             769           113

    ``pool_size`` and ``pool_overhead`` (bytes of pool header) come from the
    report the row was read from; they are needed for ``quantization``.
    """

    block_class: int
    size: int
    num_pools: int
    blocks_in_use: int
    avail_blocks: int
    pool_size: int = 0
    pool_overhead: int = 0

    @property
    def allocated_bytes(self) -> int:
        return self.blocks_in_use * self.size

    @property
    def available_bytes(self) -> int:
        return self.avail_blocks * self.size

    @property
    def pool_header_bytes(self) -> int:
        return self.num_pools * self.pool_overhead

    @property
    def quantization(self) -> int:
        """Bytes at the end of each pool too small for one more block."""
        if not self.pool_size:
            return 0
        return self.num_pools * ((self.pool_size - self.pool_overhead) % self.size)

    def __repr__(self) -> str:
        return (
            f"{self.block_class:5d} {self.size:6d} {self.num_pools:11d}"
            f" {self.blocks_in_use:15d} {self.avail_blocks:13d}"
        )


class DebugTypeStat(NamedTuple):
    """One free list line::

    80 free PyListObjects * 40 bytes each =    3,200
    """

    free_count: int
    object_type: str
    bytes_each: int
    bytes_total: int

    def __repr__(self) -> str:
        lhs = (
            f"{self.free_count} free {self.object_type} * {self.bytes_each} bytes each"
        )
        return f"{lhs:>48s} = {self.bytes_total:>20,d}"


def _line(label: str, value: int, signed: bool = False) -> str:
    """A ``label = value`` line in the report's own layout."""
    number = f"{value:+,d}" if signed else f"{value:,d}"
    return f"{label:<34s} = {number:>20s}"


class DebugMallocArenas:
    """The arena lines of the report::

    # arenas allocated total           =                2,033
    # arenas reclaimed                 =                2,015
    # arenas highwater mark            =                   18
    # arenas allocated current         =                   18
    18 arenas * 262144 bytes/arena     =            4,718,592
    """

    def __init__(
        self,
        ntimes_arena_allocated: int,
        arenas_reclaimed: int,
        narenas_highwater: int,
        narenas: int,
        arena_size: int,
    ):
        self.ntimes_arena_allocated = ntimes_arena_allocated
        self.arenas_reclaimed = arenas_reclaimed
        self.narenas_highwater = narenas_highwater
        self.narenas = narenas
        self.arena_size = arena_size

    @property
    def arenas_total(self) -> int:
        return self.narenas * self.arena_size

    def items(self) -> List[Tuple[str, int]]:
        """(label, value) in report order, for diffs."""
        return [
            ("# arenas allocated total", self.ntimes_arena_allocated),
            ("# arenas reclaimed", self.arenas_reclaimed),
            ("# arenas highwater mark", self.narenas_highwater),
            ("# arenas allocated current", self.narenas),
        ]

    def __repr__(self) -> str:
        lines = [_line(label, value) for label, value in self.items()]
        lines.append(
            _line(
                f"{self.narenas} arenas * {self.arena_size} bytes/arena",
                self.arenas_total,
            )
        )
        return "\n".join(lines)


class DebugMallocPoolsBlocks:
    """The block and pool lines of the report::

    # bytes in allocated blocks        =            4,280,848
    # bytes in available blocks        =               70,368
    63 unused pools * 4096 bytes       =              258,048
    # bytes lost to pool headers       =               52,272
    # bytes lost to quantization       =               57,056
    # bytes lost to arena alignment    =                    0
    Total                              =            4,718,592
    """

    def __init__(
        self,
        allocated_bytes: int,
        available_bytes: int,
        numfreepools: int,
        pool_size: int,
        pool_header_bytes: int,
        quantization: int,
        arena_alignment: int,
        total: Optional[int] = None,
    ):
        self.allocated_bytes = allocated_bytes
        self.available_bytes = available_bytes
        self.numfreepools = numfreepools
        self.pool_size = pool_size
        self.pool_header_bytes = pool_header_bytes
        self.quantization = quantization
        self.arena_alignment = arena_alignment
        self._total = total

    @property
    def unused_pool_total(self) -> int:
        return self.numfreepools * self.pool_size

    @property
    def total(self) -> int:
        if self._total is not None:
            return self._total
        return (
            self.allocated_bytes
            + self.available_bytes
            + self.unused_pool_total
            + self.pool_header_bytes
            + self.quantization
            + self.arena_alignment
        )

    def pool_overhead(self, num_pools: int) -> int:
        """Bytes of header per pool: the pool header total over the pools in use."""
        return self.pool_header_bytes // num_pools if num_pools else 0

    def items(self) -> List[Tuple[str, int]]:
        return [
            ("# bytes in allocated blocks", self.allocated_bytes),
            ("# bytes in available blocks", self.available_bytes),
            (f"unused pools * {self.pool_size} bytes", self.unused_pool_total),
            ("# bytes lost to pool headers", self.pool_header_bytes),
            ("# bytes lost to quantization", self.quantization),
            ("# bytes lost to arena alignment", self.arena_alignment),
            ("Total", self.total),
        ]

    def __repr__(self) -> str:
        lines = []
        for label, value in self.items():
            if label.startswith("unused pools"):
                label = f"{self.numfreepools} {label}"
            lines.append(_line(label, value))
        return "\n".join(lines)


# A row of the size class table: class, size, pools, blocks in use, available.
_RE_CLASS_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
# "Small block threshold = 512, in 32 size classes."
_RE_HEADER = re.compile(r"^Small block threshold = (\d+), in (\d+) size classes\.?\s*$")
# "  34 free 2-sized PyTupleObjects * 40 bytes each =   1,360"
_RE_TYPE = re.compile(r"^\s*(\d+) free (.+?) \* (\d+) bytes each\s*=\s*([\d,]+)\s*$")
# "label   =   1,234"  (printone() in Objects/obmalloc.c)
_RE_VALUE = re.compile(r"^(\S.*?)\s*=\s*([\d,]+)\s*$")
# "18 arenas * 262144 bytes/arena"
_RE_ARENAS = re.compile(r"^(\d+) arenas \* (\d+) bytes/arena$")
# "63 unused pools * 16384 bytes"
_RE_POOLS = re.compile(r"^(\d+) unused pools \* (\d+) bytes$")
# mimalloc's summary: "    Allocated Blocks: 15863" and "Medium block threshold = 131072"
_RE_MIMALLOC_VALUE = re.compile(r"^\s+([A-Za-z][A-Za-z /]*?):\s*([\d,]+)\s*$")

_ARENA_LABELS = {
    "# arenas allocated total": "ntimes_arena_allocated",
    "# arenas reclaimed": "arenas_reclaimed",
    "# arenas highwater mark": "narenas_highwater",
    "# arenas allocated current": "narenas",
}
_POOL_LABELS = {
    "# bytes in allocated blocks": "allocated_bytes",
    "# bytes in available blocks": "available_bytes",
    "# bytes lost to pool headers": "pool_header_bytes",
    "# bytes lost to quantization": "quantization",
    "# bytes lost to arena alignment": "arena_alignment",
}


class SysDebugMallocStats:
    """A parsed :func:`sys._debugmallocstats` report.

    ``SysDebugMallocStats()`` takes a report now; ``SysDebugMallocStats(text)``
    parses a saved one (``str`` or ``bytes``).  Attributes:

    * ``allocator``: ``'pymalloc'``, ``'mimalloc'``, ``'malloc'`` (no small
      object allocator report: ``PYTHONMALLOC=malloc`` or ``malloc_debug``),
      or ``'hooked'``: pymalloc is in use but the report leaves it out because
      tracemalloc or another allocator hook is installed (live reports only;
      ``hook_reason`` says which);
    * ``small_block_threshold``, ``size_classes``: the header (None if absent);
    * ``malloc_stats``: list of :class:`DebugMallocStat`, one per size class
      that has pools (pymalloc only);
    * ``arenas`` (:class:`DebugMallocArenas`), ``pools_blocks``
      (:class:`DebugMallocPoolsBlocks`), ``arena_map`` (3.10+, dict):
      pymalloc only, else None / empty;
    * ``pool_size``, ``arena_size``, ``pool_overhead``: read from the report;
    * ``type_stats``: list of :class:`DebugTypeStat` (object free lists);
    * ``mimalloc_stats``: mimalloc's summary values (dict), mimalloc only;
    * ``other``: any ``label = value`` line this parser does not know.
    """

    def __init__(
        self,
        debug_malloc: Union[bytes, str] = b"",
        *,
        hook_reason: Optional[str] = None,
    ):
        if not debug_malloc:
            debug_malloc, hook_reason = _capture()
        #: Why the pymalloc section may be missing (live reports only):
        #: "tracemalloc is tracing", or None.
        self.hook_reason = hook_reason
        if isinstance(debug_malloc, bytes):
            debug_malloc = debug_malloc.decode("ascii", "replace")
        self.text: str = debug_malloc
        self.small_block_threshold: Optional[int] = None
        self.size_classes: Optional[int] = None
        self.malloc_stats: List[DebugMallocStat] = []
        self.type_stats: List[DebugTypeStat] = []
        self.type_map: Dict[str, int] = {}
        self.arenas: Optional[DebugMallocArenas] = None
        self.pools_blocks: Optional[DebugMallocPoolsBlocks] = None
        self.arena_map: Dict[str, int] = {}
        self.mimalloc_stats: Dict[str, int] = {}
        self.other: Dict[str, int] = {}
        self.pool_size: Optional[int] = None
        self.arena_size: Optional[int] = None
        self.pool_overhead: Optional[int] = None
        self._parse(debug_malloc)

    def _parse(self, text: str) -> None:
        rows: List[Tuple[int, ...]] = []
        arena_values: Dict[str, int] = {}
        pool_values: Dict[str, int] = {}
        numfreepools: Optional[int] = None
        pools_total: Optional[int] = None
        section = ""  # "" | "arena map" | "mimalloc"
        recognised = 0
        for raw in text.splitlines():
            line = raw.rstrip()
            if not line.strip():
                continue
            match = _RE_HEADER.match(line)
            if match:
                self.small_block_threshold, self.size_classes = (
                    int(match[1]),
                    int(match[2]),
                )
                recognised += 1
                continue
            match = _RE_CLASS_ROW.match(line)
            if match:
                rows.append(tuple(int(v) for v in match.groups()))
                continue
            match = _RE_TYPE.match(line)
            if match:
                self._add_type_stat(
                    DebugTypeStat(
                        int(match[1]), match[2], int(match[3]), _as_int(match[4])
                    )
                )
                recognised += 1
                continue
            if line.startswith("Medium block threshold") or line.startswith(
                "Large object max size"
            ):
                section = "mimalloc"
                self.mimalloc_stats[line.split("=")[0].strip()] = last_value_as_int(
                    line
                )
                continue
            if section == "mimalloc":
                match = _RE_MIMALLOC_VALUE.match(line)
                if match:
                    self.mimalloc_stats[match[1]] = _as_int(match[2])
                    continue
            if line.strip() == "arena map counts":
                section = "arena map"
                continue
            if line.startswith(("class ", "-----")):
                continue
            match = _RE_VALUE.match(line)
            if not match:
                continue  # a line of a format we do not know: skip it
            label, value = match[1].strip(), _as_int(match[2])
            recognised += 1
            arenas = _RE_ARENAS.match(label)
            pools = _RE_POOLS.match(label)
            if label in _ARENA_LABELS:
                arena_values[_ARENA_LABELS[label]] = value
            elif arenas:
                self.arena_size = int(arenas[2])
                arena_values.setdefault("narenas", int(arenas[1]))
            elif label in _POOL_LABELS:
                pool_values[_POOL_LABELS[label]] = value
            elif pools:
                numfreepools, self.pool_size = int(pools[1]), int(pools[2])
            elif (
                section == "arena map"
                or label.startswith("# arena map")
                or "arena map" in label
            ):
                self.arena_map[label] = value
            elif label == "Total" and pools_total is None:
                pools_total = value
            else:
                self.other[label] = value
        if not recognised:
            raise ValueError("no sys._debugmallocstats() report found in the text")
        if self.mimalloc_stats:
            self.allocator = MIMALLOC
        elif self.small_block_threshold is not None and (rows or self.pool_size):
            self.allocator = PYMALLOC
        elif self.hook_reason:
            self.allocator = HOOKED
        else:
            self.allocator = MALLOC
        if self.allocator != PYMALLOC:
            return
        missing = [k for k in _ARENA_LABELS.values() if k not in arena_values]
        missing += [k for k in _POOL_LABELS.values() if k not in pool_values]
        if self.arena_size is None:
            missing.append("arena size")
        if self.pool_size is None or numfreepools is None:
            missing.append("pool size")
        if missing:
            raise ValueError(f"incomplete pymalloc report: no {', '.join(missing)}")
        self.arenas = DebugMallocArenas(arena_size=self.arena_size, **arena_values)
        self.pools_blocks = DebugMallocPoolsBlocks(
            numfreepools=numfreepools,
            pool_size=self.pool_size,
            total=pools_total,
            **pool_values,
        )
        self.pool_overhead = self.pools_blocks.pool_overhead(
            sum(row[2] for row in rows)
        )
        self.malloc_stats = [
            DebugMallocStat(
                *row, pool_size=self.pool_size, pool_overhead=self.pool_overhead
            )
            for row in rows
        ]

    def _add_type_stat(self, stat: DebugTypeStat) -> None:
        if stat.object_type in self.type_map:
            return  # printed twice: keep the first
        self.type_map[stat.object_type] = len(self.type_stats)
        self.type_stats.append(stat)

    @property
    def has_pymalloc(self) -> bool:
        """True if the report has pymalloc's size classes, arenas and pools."""
        return self.allocator == PYMALLOC

    def size_class(self, block_class: int) -> Optional[DebugMallocStat]:
        """The row of one size class, None if it has no pool (not in the report)."""
        for stat in self.malloc_stats:
            if stat.block_class == block_class:
                return stat
        return None

    def object_types(self) -> KeysView[str]:
        """Names of the object types whose free lists the report shows."""
        return self.type_map.keys()

    def has_object_type(self, object_type: Union[str, bytes]) -> bool:
        return _type_key(object_type) in self.type_map

    def type_stat(self, object_type: Union[str, bytes]) -> DebugTypeStat:
        """The free list line of one type; KeyError if the report has none."""
        return self.type_stats[self.type_map[_type_key(object_type)]]

    def __repr__(self) -> str:
        """The snapshot in the layout of the report itself."""
        lines: List[str] = []
        if self.small_block_threshold is not None:
            lines.append(
                f"Small block threshold = {self.small_block_threshold},"
                f" in {self.size_classes} size classes."
            )
        if self.allocator == MIMALLOC:
            lines.extend(f"    {k}: {v}" for k, v in self.mimalloc_stats.items())
        if self.has_pymalloc:
            lines += ["", _TABLE_HEADER, _TABLE_RULE]
            lines.extend(repr(stat) for stat in self.malloc_stats)
            lines += ["", repr(self.arenas), "", repr(self.pools_blocks)]
            if self.arena_map:
                lines += ["", "arena map counts"]
                lines.extend(_line(k, v) for k, v in self.arena_map.items())
        if self.type_stats:
            lines.append("")
            lines.extend(repr(stat) for stat in self.type_stats)
        lines.append("")
        return "\n".join(lines)


def _type_key(object_type: Union[str, bytes]) -> str:
    return (
        object_type.decode("ascii") if isinstance(object_type, bytes) else object_type
    )


_TABLE_HEADER = "class   size   num pools   blocks in use  avail blocks"
_TABLE_RULE = "-----   ----   ---------   -------------  ------------"


def diff_debug_malloc_stat(
    a: Optional[DebugMallocStat], b: Optional[DebugMallocStat]
) -> str:
    """One size class row of a diff; a class missing from a snapshot counts as empty."""
    if a is None and b is None:
        raise ValueError("both size class rows are missing")
    ref = a if a is not None else b
    if (
        a is not None
        and b is not None
        and (a.block_class, a.size) != (b.block_class, b.size)
    ):
        raise ValueError(
            f"different size classes: class {a.block_class} ({a.size} bytes)"
            f" and class {b.block_class} ({b.size} bytes)"
        )
    zero = (0, 0, 0)
    pa = (a.num_pools, a.blocks_in_use, a.avail_blocks) if a is not None else zero
    pb = (b.num_pools, b.blocks_in_use, b.avail_blocks) if b is not None else zero
    text = (
        f"{ref.block_class:5d} {ref.size:6d} {pb[0] - pa[0]:+11d}"
        f" {pb[1] - pa[1]:+15d} {pb[2] - pa[2]:+13d}"
    )
    if a is None:
        text += "   (new size class: no pool before)"
    elif b is None:
        text += "   (size class emptied: no pool after)"
    return text


def diff_debug_type_stat(a: Optional[DebugTypeStat], b: Optional[DebugTypeStat]) -> str:
    """One free list line of a diff; a type missing from a snapshot counts as empty."""
    if a is None and b is None:
        raise ValueError("both free list lines are missing")
    ref = a if a is not None else b
    if a is not None and b is not None and a.object_type != b.object_type:
        raise ValueError(f"different object types: {a.object_type} and {b.object_type}")
    count = (b.free_count if b else 0) - (a.free_count if a else 0)
    total = (b.bytes_total if b else 0) - (a.bytes_total if a else 0)
    lhs = f"{count:+d} free {ref.object_type} * {ref.bytes_each} bytes each"
    text = f"{lhs:>48s} = {total:>+20,d}"
    if a is None:
        text += "   (only in the second snapshot)"
    elif b is None:
        text += "   (only in the first snapshot)"
    return text


def _no_pymalloc_message(stats: SysDebugMallocStats) -> str:
    if stats.allocator == HOOKED:
        return (
            f"no pymalloc report: {stats.hook_reason}, and sys._debugmallocstats() leaves"
            " the small-object allocator's pools and size classes out while Python's"
            " allocators are hooked;"
            " take the snapshots outside TraceMalloc/tracemalloc (or any allocation tracker)"
        )
    if stats.allocator == MIMALLOC:
        return (
            "no pymalloc report: this interpreter allocates with mimalloc, which has no"
            " pools or size classes to diff; comparing mimalloc's summary and the free lists"
        )
    return (
        "no pymalloc report: this interpreter does not use pymalloc (PYTHONMALLOC=malloc or"
        " malloc_debug, or a build without pymalloc), or the report was taken while an"
        " allocator hook such as tracemalloc was installed; sys._debugmallocstats() then shows"
        " only the free lists of some types"
    )


def _diff_values(pairs: Iterable[Tuple[str, int, int]]) -> List[str]:
    return [_line(label, b - a, signed=True) for label, a, b in pairs if a != b]


def diff_debugmallocstats(
    a_stats: SysDebugMallocStats, b_stats: SysDebugMallocStats
) -> List[str]:
    """Lines describing what changed from ``a_stats`` to ``b_stats``.

    Same layout as the report, values signed; unchanged lines are left out,
    so two identical snapshots give an empty list.  Size classes and object
    types present in one snapshot only are diffed against an empty one and
    marked.  When the report has no pymalloc section the first line says so.
    """
    if a_stats.allocator != b_stats.allocator:
        hidden = [s for s in (a_stats, b_stats) if s.allocator in (HOOKED, MALLOC)]
        if hidden and {a_stats.allocator, b_stats.allocator} <= {
            PYMALLOC,
            HOOKED,
            MALLOC,
        }:
            which = "first" if hidden[0] is a_stats else "second"
            return [
                f"cannot compare: the {which} snapshot has no pymalloc section"
                f" ({_no_pymalloc_message(hidden[0])})"
            ]
        raise ValueError(
            f"the snapshots come from different allocators: {a_stats.allocator} and {b_stats.allocator}"
        )
    ret: List[str] = []
    if not a_stats.has_pymalloc:
        ret.append(_no_pymalloc_message(a_stats))
        keys = list(dict.fromkeys([*a_stats.mimalloc_stats, *b_stats.mimalloc_stats]))
        block = _diff_values(
            (f"{k}", a_stats.mimalloc_stats.get(k, 0), b_stats.mimalloc_stats.get(k, 0))
            for k in keys
        )
        if block:
            ret += [""] + block
    else:
        ret += _diff_pymalloc(a_stats, b_stats)
    keys = list(dict.fromkeys([*a_stats.other, *b_stats.other]))
    block = _diff_values(
        (k, a_stats.other.get(k, 0), b_stats.other.get(k, 0)) for k in keys
    )
    if block:
        ret += [""] + block
    # Free lists, in report order, types of the second snapshot only at the end.
    block = []
    for object_type in dict.fromkeys(
        [*a_stats.object_types(), *b_stats.object_types()]
    ):
        a = (
            a_stats.type_stat(object_type)
            if a_stats.has_object_type(object_type)
            else None
        )
        b = (
            b_stats.type_stat(object_type)
            if b_stats.has_object_type(object_type)
            else None
        )
        if a != b:
            block.append(diff_debug_type_stat(a, b))
    if block:
        ret += [""] + block
    if ret and not ret[0]:
        del ret[0]
    return ret


def _diff_pymalloc(
    a_stats: SysDebugMallocStats, b_stats: SysDebugMallocStats
) -> List[str]:
    ret: List[str] = []
    if (a_stats.pool_size, a_stats.arena_size) != (
        b_stats.pool_size,
        b_stats.arena_size,
    ):
        raise ValueError(
            f"the snapshots come from different interpreters: pools of {a_stats.pool_size}"
            f" and {b_stats.pool_size} bytes, arenas of {a_stats.arena_size} and {b_stats.arena_size} bytes"
        )
    # Size classes: pymalloc prints only classes that have pools, so either
    # snapshot may lack a class; missing means empty.
    a_rows = {s.block_class: s for s in a_stats.malloc_stats}
    b_rows = {s.block_class: s for s in b_stats.malloc_stats}
    rows = []
    for block_class in sorted(set(a_rows) | set(b_rows)):
        a, b = a_rows.get(block_class), b_rows.get(block_class)
        if a is None or b is None or a[:5] != b[:5]:
            rows.append(diff_debug_malloc_stat(a, b))
    if rows:
        ret += [_TABLE_HEADER, _TABLE_RULE] + rows
    arenas_a, arenas_b = a_stats.arenas, b_stats.arenas
    block = _diff_values(
        (k, va, vb) for (k, va), (_, vb) in zip(arenas_a.items(), arenas_b.items())
    )
    if arenas_a.narenas != arenas_b.narenas:
        block.append(
            _line(
                f"{arenas_b.narenas - arenas_a.narenas:+d} arenas * {arenas_a.arena_size} bytes/arena",
                arenas_b.arenas_total - arenas_a.arenas_total,
                signed=True,
            )
        )
    if block:
        ret += [""] + block
    pools_a, pools_b = a_stats.pools_blocks, b_stats.pools_blocks
    block = []
    for (label, va), (_, vb) in zip(pools_a.items(), pools_b.items()):
        if va == vb:
            continue
        if label.startswith("unused pools"):
            label = f"{pools_b.numfreepools - pools_a.numfreepools:+d} {label}"
        block.append(_line(label, vb - va, signed=True))
    if block:
        ret += [""] + block
    keys = list(dict.fromkeys([*a_stats.arena_map, *b_stats.arena_map]))
    block = _diff_values(
        (k, a_stats.arena_map.get(k, 0), b_stats.arena_map.get(k, 0)) for k in keys
    )
    if block:
        ret += ["", "arena map counts"] + block
    return ret


class DiffSysDebugMallocStats:
    """Context manager: a :func:`sys._debugmallocstats` report on entry and one on exit.

    ``diff()`` returns the text diff of the two (empty if nothing changed);
    ``before`` and ``after`` are the parsed snapshots.  Only the raw reports
    are taken inside the block (one bytes object each, too big for pymalloc);
    they are parsed afterwards, so the parser's own objects do not show up
    in the diff.
    """

    def __init__(self) -> None:
        self._before_text: Optional[bytes] = None
        self._after_text: Optional[bytes] = None
        self._before_hook: Optional[str] = None
        self._after_hook: Optional[str] = None
        self._before: Optional[SysDebugMallocStats] = None
        self._after: Optional[SysDebugMallocStats] = None

    def __enter__(self) -> "DiffSysDebugMallocStats":
        self._before = self._after = None
        self._after_text = None
        self._before_text, self._before_hook = _capture()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> bool:
        self._after_text, self._after_hook = _capture()
        return False

    @property
    def before(self) -> Optional[SysDebugMallocStats]:
        """The snapshot taken on entry (None before entry)."""
        if self._before is None and self._before_text is not None:
            self._before = SysDebugMallocStats(
                self._before_text, hook_reason=self._before_hook
            )
        return self._before

    @property
    def after(self) -> Optional[SysDebugMallocStats]:
        """The snapshot taken on exit (None before exit)."""
        if self._after is None and self._after_text is not None:
            self._after = SysDebugMallocStats(
                self._after_text, hook_reason=self._after_hook
            )
        return self._after

    def diff(self) -> str:
        """What changed between entry and exit, in the report's layout."""
        if self._before_text is None:
            raise RuntimeError("DiffSysDebugMallocStats was not entered")
        if self._after_text is None:
            raise RuntimeError("DiffSysDebugMallocStats has not exited yet")
        return "\n".join(diff_debugmallocstats(self.before, self.after))


def interpreter_allocator() -> str:
    """``'pymalloc'``, ``'mimalloc'`` or ``'malloc'``: the running interpreter's allocator,
    as its :func:`sys._debugmallocstats` report shows it (pymalloc hidden by
    an allocator hook counts as pymalloc)."""
    allocator = SysDebugMallocStats().allocator
    return PYMALLOC if allocator == HOOKED else allocator


def __getattr__(name: str):
    # The seed exported POOL_SIZE = 4096 (wrong on 3.10+, where pools are
    # 16 KiB) and POOL_OVERHEAD; here both are read from a live report.
    if name in ("POOL_SIZE", "POOL_OVERHEAD"):
        stats = SysDebugMallocStats()
        return stats.pool_size if name == "POOL_SIZE" else stats.pool_overhead
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> int:
    """``python -m pymemtrace.debug_malloc_stats``: print the parsed report."""
    print(repr(SysDebugMallocStats()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
