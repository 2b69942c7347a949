"""Which lines hold the memory: the allocation tracker.

The tracker hooks Python's three allocator domains (PEP 445) and records
live blocks with the Python stack that allocated them, in one of two modes:

- ``"exact"``: every block (the cost of a hash-table entry per block);
- ``"sampled"``: sampling by bytes, one sample per ``sample_bytes`` (I)
  allocated on average, the gaps between samples uniform in [I/2, 3I/2]; a
  sampled block of size s < I/2 stands for I bytes and I/s blocks (its
  chance of being sampled was s/I), blocks of I/2 or more are all recorded
  at their size, so totals are unbiased estimates (docs/allocations.md).

Example::

    from pymemtrace import allocations

    with allocations.tracking(depth=16) as t:
        data = [bytes(1024) for _ in range(10_000)]
    for site in t.snapshot.top(5):
        print(site.file, site.line, site.bytes)

Snapshots are plain data: save, load, diff and report them without the
tracker.  See docs/allocations.md.
"""

from __future__ import annotations

# The names this module had before the data, the analyses and the
# renderings moved to their layers (docs/design.md section 1).
from pymemtrace.analyses.allocations import GROUP_KEYS, SiteDiff, group_sites  # noqa: F401
from pymemtrace.snapshots import allocations as _snap
from pymemtrace.snapshots.allocations import NO_FRAME, SCHEMA, Frame, Site  # noqa: F401

#: Largest max_traces / max_stacks: far more entries than any machine holds
#: (2**40 traces of 48 bytes would be 48 TiB), yet no C integer wraps.
MAX_TABLE_ENTRIES = 2**40


class AllocationSnapshot(_snap.AllocationSnapshot):
    """Memory live through Python's allocators, by allocation site.

    ``sites``: memory live when the snapshot was taken; ``peak_sites``: the
    memory live when the tracked total was highest (``peak_bytes``).  Both
    are sorted by bytes, descending, one entry per distinct stack.  The data
    and its persistence are :class:`pymemtrace.snapshots.allocations.AllocationSnapshot`;
    this class adds the analyses and renderings as methods.
    """

    __slots__ = ()

    # -- analyses ---------------------------------------------------------
    def group_by(self, key: str = "line", peak: bool = False) -> list:
        """Sites merged by "line", "function", "file" or "stack"."""
        return group_sites(self.peak_sites if peak else self.sites, key)

    def top(self, n: int = 10, key: str = "line", peak: bool = False) -> list:
        """The n largest sites grouped by ``key``."""
        return self.group_by(key, peak)[:n]

    def diff(self, old: AllocationSnapshot, key: str = "line") -> list:
        """What changed from ``old`` to this snapshot, largest growth first."""
        from pymemtrace.analyses.allocations import diff

        return diff(self, old, key)

    def without_files_under(
        self, directory: str, *, drop_sites_under: str | None = None
    ) -> AllocationSnapshot:
        """A copy without the frames of files under ``directory`` (see
        :func:`pymemtrace.analyses.allocations.without_files_under`)."""
        from pymemtrace.analyses.allocations import without_files_under

        return without_files_under(self, directory, drop_sites_under=drop_sites_under)

    # -- outputs ----------------------------------------------------------
    def to_collapsed(self, peak: bool = False) -> str:
        from pymemtrace.reporters import collapsed

        return collapsed.render(self.peak_sites if peak else self.sites)

    def to_flamegraph(self, peak: bool = False, title: str | None = None) -> str:
        """A flame graph of the live memory (or the peak's) as standalone SVG."""
        from pymemtrace.reporters import flamegraph_svg

        if title is None:
            title = "Memory live at the peak" if peak else "Memory live"
        return flamegraph_svg.render(self.peak_sites if peak else self.sites, title=title)

    def to_html(
        self, title: str | None = None, top: int = 50, live_label: str = "live now"
    ) -> str:
        """One self-contained HTML report (offline): both flame graphs,
        zoomable and searchable, and a sortable table of the top lines."""
        from pymemtrace.reporters import allocations_html

        return allocations_html.render(self, title, top=top, live_label=live_label)

    def to_pprof(self, peak: bool = False) -> bytes:
        from pymemtrace.reporters import pprof

        return pprof.render(self.peak_sites if peak else self.sites)

    def to_text(
        self, top: int = 10, key: str = "line", live_title: str = "live now"
    ) -> str:
        from pymemtrace.reporters import allocations_text

        return allocations_text.render(self, top=top, key=key, live_title=live_title)


def load(path) -> AllocationSnapshot:
    """Read a snapshot written by :meth:`AllocationSnapshot.save`."""
    return AllocationSnapshot.load(path)


def start(
    mode: str = "exact",
    depth: int = 16,
    sample_bytes: int = 512 * 1024,
    *,
    max_traces: int = 0,
    max_stacks: int = 0,
    seed: int = 0,
) -> None:
    """Start the tracker (RuntimeError if it is running already).

    ``max_traces``/``max_stacks`` cap its tables (0: no cap; what does not
    fit is counted in ``stats`` as dropped); ``seed`` makes sampling
    repeatable (0: random).
    """
    from pymemtrace import _native

    for name, value, low, high in (
        ("depth", depth, 1, 256),
        ("max_traces", max_traces, 0, MAX_TABLE_ENTRIES),
        ("max_stacks", max_stacks, 0, MAX_TABLE_ENTRIES),
        ("seed", seed, 0, 2**64 - 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer between {low} and {high}, not {value!r}")
    if mode == "sampled" and not (
        isinstance(sample_bytes, (int, float)) and 1 <= sample_bytes <= 2**40
    ):
        raise ValueError(f"sample_bytes must be a number between 1 and {2**40}, not {sample_bytes!r}")
    _native.alloc_start(
        mode=mode,
        depth=depth,
        sample_bytes=float(sample_bytes),
        max_traces=max_traces,
        max_stacks=max_stacks,
        seed=seed,
    )


def stop() -> None:
    """Stop the tracker and forget what it recorded (idempotent)."""
    from pymemtrace import _native

    _native.alloc_stop()


def is_tracking() -> bool:
    from pymemtrace import _native

    return _native.alloc_is_tracking()


def snapshot() -> AllocationSnapshot:
    """Memory live now and at the peak, by site (tracker must be running)."""
    from pymemtrace import _native

    return AllocationSnapshot.from_native(_native.alloc_snapshot())


def reset_peak() -> None:
    """Restart the peak from the memory live now."""
    from pymemtrace import _native

    _native.alloc_reset_peak()


def tracker_memory() -> int:
    """Bytes the tracker itself holds (tables of blocks and stacks)."""
    from pymemtrace import _native

    return _native.alloc_stats()["memory"]


def stats() -> dict[str, int]:
    """The tracker's own figures: memory, traces, stacks, drops; and how it
    sees PyTraceMalloc_Track/Untrack: got_patching (1: available), got_slots
    (GOT slots patched now), traced_blocks/traced_bytes, hooks_removed (1:
    another tool removed our allocator hooks; see docs/allocations.md)."""
    from pymemtrace import _native

    return _native.alloc_stats()


def counters() -> dict[str, int]:
    """Live bytes and blocks per allocator domain (see counting()), and
    traced_bytes/traced_blocks: blocks reported with PyTraceMalloc_Track
    while the tracker runs (not part of bytes/blocks)."""
    from pymemtrace import _native

    return _native.alloc_counters()


class counting:  # noqa: N801 - a context manager, named as the function it was
    """Keep the always-on live-byte counters while the block runs."""

    __slots__ = ()

    def __enter__(self) -> None:
        from pymemtrace import _native

        _native.alloc_counting_start()

    def __exit__(self, *exc) -> None:
        from pymemtrace import _native

        _native.alloc_counting_stop()

    def __call__(self, func):
        """``@counting()`` on a function, as a contextmanager-made one allowed."""
        import functools

        @functools.wraps(func)
        def counted(*args, **kwargs):
            with counting():
                return func(*args, **kwargs)

        return counted


class Tracking:
    """Handle of :func:`tracking`: ``snapshot`` is set when the block ends."""

    snapshot: AllocationSnapshot | None = None

    def take(self) -> AllocationSnapshot:
        """A snapshot now, inside the block."""
        return snapshot()


class tracking:  # noqa: N801 - a context manager, named as the function it was
    """Track allocations in the block; the handle's ``snapshot`` is taken at
    its end (also when it raises), then the tracker stops."""

    __slots__ = ("_args", "_handle")

    def __init__(
        self, mode: str = "exact", depth: int = 16, sample_bytes: int = 512 * 1024, **options
    ) -> None:
        self._args = (mode, depth, sample_bytes, options)
        self._handle = None

    def __enter__(self) -> Tracking:
        mode, depth, sample_bytes, options = self._args
        handle = Tracking()
        start(mode, depth, sample_bytes, **options)
        self._handle = handle
        return handle

    def __exit__(self, *exc) -> None:
        try:
            self._handle.snapshot = snapshot()
        finally:
            stop()


class RunProbe:
    """The tracker as the probe of a script run by ``pymemtrace._runner``
    (``pymemtrace run --allocations``): started just before the script's
    first line, its stacks cut at the script's own frames, and its snapshot
    without pymemtrace's frames (memory a pymemtrace function allocated for
    the script is the script's line; memory the runner allocated itself is
    left out)."""

    __slots__ = ("mode", "depth", "sample_bytes", "seed", "rss_start")

    def __init__(self, mode: str = "exact", depth: int = 16,
                 sample_bytes: int = 512 * 1024, seed: int = 0) -> None:
        self.mode, self.depth, self.sample_bytes, self.seed = mode, depth, sample_bytes, seed
        self.rss_start = None

    def start(self) -> None:
        from pymemtrace import _native
        from pymemtrace.probes.allocator import foreign_allocator

        # The RSS the script starts from: what it grew by at the end, beside
        # what Python's allocators hold, says how much lies outside them.
        # Under another allocator (ASan's among them) RSS is its own: no
        # comparison then.  Asked before the tracker starts: what this
        # allocates is not the script's.
        self.rss_start = _native.rss() if foreign_allocator() is None else None
        start(mode=self.mode, depth=self.depth, sample_bytes=self.sample_bytes, seed=self.seed)

    @property
    def stack_base(self):
        """``stack_base(True)`` called by the runner's frame cuts stacks
        there; a C function, so that no frame of ours comes between."""
        from pymemtrace import _native

        return _native.alloc_set_stack_base

    def is_running(self) -> bool:
        return is_tracking()

    def snapshot(self, runner_files=()) -> AllocationSnapshot:
        import os

        from pymemtrace import _native

        package = os.path.dirname(os.path.abspath(__file__))
        rss_end = _native.rss()
        snap = snapshot().without_files_under(package, drop_sites_under=tuple(runner_files))
        if self.rss_start is not None:
            snap.stats["rss_start"] = self.rss_start
            snap.stats["rss_end"] = rss_end
        return snap

    def stop(self) -> None:
        stop()


__all__ = [
    "AllocationSnapshot",
    "Frame",
    "RunProbe",
    "Site",
    "SiteDiff",
    "counters",
    "counting",
    "group_sites",
    "is_tracking",
    "load",
    "reset_peak",
    "snapshot",
    "start",
    "stats",
    "stop",
    "tracker_memory",
    "tracking",
]
