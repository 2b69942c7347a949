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

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

SCHEMA = 1
GROUP_KEYS = ("line", "function", "file", "stack")
NO_FRAME = "<no Python frame>"


@dataclass(frozen=True, order=True)
class Frame:
    """One frame of an allocation stack."""

    file: str
    line: int
    function: str

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "function": self.function}


@dataclass(frozen=True)
class Site:
    """Memory attributed to one stack (innermost frame first)."""

    stack: tuple[Frame, ...]
    bytes: int
    blocks: int

    @property
    def frame(self) -> Frame:
        return self.stack[0] if self.stack else Frame(NO_FRAME, 0, "")

    @property
    def file(self) -> str:
        return self.frame.file

    @property
    def line(self) -> int:
        return self.frame.line

    @property
    def function(self) -> str:
        return self.frame.function

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "stack": [f.to_dict() for f in self.stack],
            "bytes": self.bytes,
            "blocks": self.blocks,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Site:
        stack = tuple(
            Frame(f["file"], _int(f["line"]), f["function"]) for f in data["stack"]
        )
        return cls(stack, _int(data["bytes"]), _int(data["blocks"]))


def _int(value) -> int:
    """An integer of a saved snapshot: a 64-bit count (ValueError if not)."""
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise ValueError(f"number out of range: {str(number)[:20]}...")
    return number


@dataclass(frozen=True)
class SiteDiff:
    """A site compared between two snapshots (new minus old)."""

    stack: tuple[Frame, ...]
    bytes: int
    blocks: int
    bytes_diff: int
    blocks_diff: int

    @property
    def frame(self) -> Frame:
        return self.stack[0] if self.stack else Frame(NO_FRAME, 0, "")


def _key_stack(stack: tuple[Frame, ...], key: str) -> tuple[Frame, ...]:
    if key == "stack":
        return stack
    if not stack:
        return ()
    top = stack[0]
    if key == "line":
        return (top,)
    if key == "function":
        return (Frame(top.file, 0, top.function),)
    if key == "file":
        return (Frame(top.file, 0, ""),)
    raise ValueError(f"group key must be one of {', '.join(GROUP_KEYS)}, not {key!r}")


def group_sites(sites: Sequence[Site], key: str = "line") -> list[Site]:
    """Merge sites by ``key``, largest first."""
    if key not in GROUP_KEYS:
        raise ValueError(
            f"group key must be one of {', '.join(GROUP_KEYS)}, not {key!r}"
        )
    totals: dict[tuple[Frame, ...], list[int]] = {}
    for site in sites:
        k = _key_stack(site.stack, key)
        acc = totals.setdefault(k, [0, 0])
        acc[0] += site.bytes
        acc[1] += site.blocks
    merged = [Site(k, b, n) for k, (b, n) in totals.items()]
    merged.sort(key=lambda s: (-s.bytes, -s.blocks, s.stack))
    return merged


@dataclass
class AllocationSnapshot:
    """Memory live through Python's allocators, by allocation site.

    ``sites``: memory live when the snapshot was taken; ``peak_sites``: the
    memory live when the tracked total was highest (``peak_bytes``).  Both
    are sorted by bytes, descending, one entry per distinct stack.
    """

    sites: list[Site]
    peak_sites: list[Site]
    peak_bytes: int
    bytes: int
    mode: str = "exact"
    depth: int = 16
    sample_bytes: int = 512 * 1024
    stats: dict[str, int] = field(default_factory=dict)

    # -- building ---------------------------------------------------------
    @classmethod
    def _from_native(cls, raw: dict) -> AllocationSnapshot:
        live: list[Site] = []
        peak: list[Site] = []
        for frames, nbytes, nblocks, pbytes, pblocks in raw["stacks"]:
            stack = tuple(Frame(f, line, fn) for f, fn, line in frames)
            if nbytes or nblocks:
                live.append(Site(stack, nbytes, nblocks))
            if pbytes or pblocks:
                peak.append(Site(stack, pbytes, pblocks))
        return cls(
            sites=group_sites(live, "stack"),
            peak_sites=group_sites(peak, "stack"),
            peak_bytes=int(raw["peak_bytes"]),
            bytes=int(raw["bytes"]),
            mode=raw["mode"],
            depth=int(raw["depth"]),
            sample_bytes=int(raw["sample_bytes"]),
            stats=dict(raw["stats"]),
        )

    # -- analyses ---------------------------------------------------------
    def group_by(self, key: str = "line", peak: bool = False) -> list[Site]:
        """Sites merged by "line", "function", "file" or "stack"."""
        return group_sites(self.peak_sites if peak else self.sites, key)

    def top(self, n: int = 10, key: str = "line", peak: bool = False) -> list[Site]:
        """The n largest sites grouped by ``key``."""
        return self.group_by(key, peak)[:n]

    def diff(self, old: AllocationSnapshot, key: str = "line") -> list[SiteDiff]:
        """What changed from ``old`` to this snapshot, largest growth first."""
        new_sites = {s.stack: s for s in self.group_by(key)}
        old_sites = {s.stack: s for s in old.group_by(key)}
        out = []
        for stack in set(new_sites) | set(old_sites):
            n = new_sites.get(stack)
            o = old_sites.get(stack)
            nb, nn = (n.bytes, n.blocks) if n else (0, 0)
            ob, on = (o.bytes, o.blocks) if o else (0, 0)
            if nb == ob and nn == on:
                continue
            out.append(SiteDiff(stack, nb, nn, nb - ob, nn - on))
        out.sort(key=lambda d: (-d.bytes_diff, -abs(d.blocks_diff), d.stack))
        return out

    def without_files_under(
        self, directory: str, *, drop_sites_under: str | None = None
    ) -> AllocationSnapshot:
        """A copy without the frames of files under ``directory`` (a tool's
        own frames, e.g. the pymemtrace package's), so that memory a tool's
        function allocated for its caller goes to the caller's line.

        A site with a frame under ``drop_sites_under`` (a runner that called
        the code being measured: memory it allocated itself) or left with
        no frame is dropped, its bytes taken off ``bytes`` and
        ``peak_bytes``.  Sites with no Python frame to begin with are kept.
        """
        import os

        def prefix(path: str) -> str:
            return os.path.join(os.path.abspath(path), "")

        root = prefix(directory)
        runner = prefix(drop_sites_under) if drop_sites_under else None

        def strip(sites: list[Site]) -> tuple[list[Site], int]:
            kept: list[Site] = []
            dropped = 0
            for site in sites:
                files = [os.path.abspath(f.file) for f in site.stack]
                if runner is not None and any(f.startswith(runner) for f in files):
                    dropped += site.bytes
                    continue
                stack = tuple(
                    f for f, path in zip(site.stack, files) if not path.startswith(root)
                )
                if site.stack and not stack:
                    dropped += site.bytes
                    continue
                kept.append(
                    site
                    if len(stack) == len(site.stack)
                    else Site(stack, site.bytes, site.blocks)
                )
            return group_sites(kept, "stack"), dropped

        sites, live_dropped = strip(self.sites)
        peak_sites, peak_dropped = strip(self.peak_sites)
        return AllocationSnapshot(
            sites=sites,
            peak_sites=peak_sites,
            peak_bytes=max(0, self.peak_bytes - peak_dropped),
            bytes=max(0, self.bytes - live_dropped),
            mode=self.mode,
            depth=self.depth,
            sample_bytes=self.sample_bytes,
            stats=dict(self.stats),
        )

    # -- outputs ----------------------------------------------------------
    def to_dict(self) -> dict:
        from pymemtrace.reporters import allocations_json

        return allocations_json.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AllocationSnapshot:
        if data.get("schema") != SCHEMA:
            raise ValueError(
                f"unsupported allocation snapshot schema: {data.get('schema')!r}"
            )
        return cls(
            sites=[Site.from_dict(s) for s in data["sites"]],
            peak_sites=[Site.from_dict(s) for s in data.get("peak_sites", [])],
            peak_bytes=_int(data["peak_bytes"]),
            bytes=_int(data.get("bytes", sum(s["bytes"] for s in data["sites"]))),
            mode=data.get("mode", "exact"),
            depth=_int(data.get("depth", 16)),
            # null in exact mode: there is no sampling interval
            sample_bytes=_int(data.get("sample_bytes") or 512 * 1024),
            stats=dict(data.get("stats", {})),
        )

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

    def save(self, path) -> None:
        """Write the snapshot as JSON: complete under ``path``, or not there.

        Raises :class:`~pymemtrace.errors.PymemtraceError` (``cannot write
        PATH: reason``) when it cannot be written.
        """
        import json

        from pymemtrace import _output

        with _output.atomic_open(os.fspath(path)) as fh:
            json.dump(self.to_dict(), fh)
            fh.write("\n")

    @classmethod
    def load(cls, path) -> AllocationSnapshot:
        import json

        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


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
        ("max_traces", max_traces, 0, 2**63 - 1),
        ("max_stacks", max_stacks, 0, 2**63 - 1),
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

    return AllocationSnapshot._from_native(_native.alloc_snapshot())


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


@contextlib.contextmanager
def counting() -> Iterator[None]:
    """Keep the always-on live-byte counters while the block runs."""
    from pymemtrace import _native

    _native.alloc_counting_start()
    try:
        yield
    finally:
        _native.alloc_counting_stop()


class Tracking:
    """Handle of :func:`tracking`: ``snapshot`` is set when the block ends."""

    snapshot: AllocationSnapshot | None = None

    def take(self) -> AllocationSnapshot:
        """A snapshot now, inside the block."""
        return snapshot()


@contextlib.contextmanager
def tracking(
    mode: str = "exact", depth: int = 16, sample_bytes: int = 512 * 1024, **options
) -> Iterator[Tracking]:
    """Track allocations in the block; the handle's ``snapshot`` is taken at
    its end (also when it raises), then the tracker stops."""
    handle = Tracking()
    start(mode, depth, sample_bytes, **options)
    try:
        yield handle
    finally:
        try:
            handle.snapshot = snapshot()
        finally:
            stop()


__all__ = [
    "AllocationSnapshot",
    "Frame",
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
