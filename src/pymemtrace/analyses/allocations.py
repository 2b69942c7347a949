"""Analyses of allocation snapshots: grouping, ranking, diffs, filtering.

Pure functions of :mod:`pymemtrace.snapshots.allocations` data; nothing here
measures or renders.
"""

from __future__ import annotations

import os

from pymemtrace.snapshots.allocations import Frame, Site, merge_stacks

GROUP_KEYS = ("line", "function", "file", "stack")


class SiteDiff:
    """A site compared between two snapshots (new minus old)."""

    __slots__ = ("stack", "bytes", "blocks", "bytes_diff", "blocks_diff")

    def __init__(self, stack: tuple, bytes: int, blocks: int,  # noqa: A002
                 bytes_diff: int, blocks_diff: int) -> None:
        self.stack = stack
        self.bytes = bytes
        self.blocks = blocks
        self.bytes_diff = bytes_diff
        self.blocks_diff = blocks_diff

    def _key(self) -> tuple:
        return (self.stack, self.bytes, self.blocks, self.bytes_diff, self.blocks_diff)

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"SiteDiff(stack={self.stack!r}, bytes={self.bytes!r}, blocks={self.blocks!r}, "
                f"bytes_diff={self.bytes_diff!r}, blocks_diff={self.blocks_diff!r})")

    frame = Site.frame


def _bad_key(key) -> ValueError:
    return ValueError(f"group key must be one of {', '.join(GROUP_KEYS)}, not {key!r}")


def key_stack(stack: tuple, key: str) -> tuple:
    """The part of ``stack`` that ``key`` groups by."""
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
    raise _bad_key(key)


def group_sites(sites, key: str = "line") -> list[Site]:
    """Merge sites by ``key``, largest first."""
    if key not in GROUP_KEYS:
        raise _bad_key(key)
    if key == "stack":
        return merge_stacks(sites)
    return merge_stacks(Site(key_stack(s.stack, key), s.bytes, s.blocks) for s in sites)


def diff(new, old, key: str = "line") -> list[SiteDiff]:
    """What changed from snapshot ``old`` to ``new``, largest growth first."""
    new_sites = {s.stack: s for s in group_sites(new.sites, key)}
    old_sites = {s.stack: s for s in group_sites(old.sites, key)}
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


def without_files_under(snapshot, directory: str, *, drop_sites_under=None):
    """A copy of ``snapshot`` without the frames of files under ``directory``
    (a tool's own frames, e.g. the pymemtrace package's), so that memory a
    tool's function allocated for its caller goes to the caller's line.

    A site with a frame in ``drop_sites_under`` (a directory, a ``.py``
    file, or a tuple of them: a runner that called the code being measured,
    whose memory it allocated itself) or left with no frame is dropped, its
    bytes taken off ``bytes`` and ``peak_bytes``.  Sites with no Python
    frame to begin with are kept.
    """

    def prefix(path: str) -> str:
        return os.path.join(os.path.abspath(path), "")

    root = prefix(directory)
    if isinstance(drop_sites_under, str):
        drop_sites_under = (drop_sites_under,)
    drop_files = frozenset(os.path.abspath(p) for p in drop_sites_under or () if p.endswith(".py"))
    drop_dirs = tuple(prefix(p) for p in drop_sites_under or () if not p.endswith(".py"))

    def runner_frame(path: str) -> bool:
        return path in drop_files or (bool(drop_dirs) and path.startswith(drop_dirs))

    runner = drop_files or drop_dirs

    def strip(sites) -> tuple[list[Site], int]:
        kept: list[Site] = []
        dropped = 0
        for site in sites:
            files = [os.path.abspath(f.file) for f in site.stack]
            if runner and any(runner_frame(f) for f in files):
                dropped += site.bytes
                continue
            stack = tuple(f for f, path in zip(site.stack, files) if not path.startswith(root))
            if site.stack and not stack:
                dropped += site.bytes
                continue
            kept.append(site if len(stack) == len(site.stack) else Site(stack, site.bytes, site.blocks))
        return merge_stacks(kept), dropped

    sites, live_dropped = strip(snapshot.sites)
    peak_sites, peak_dropped = strip(snapshot.peak_sites)
    return snapshot._replace(
        sites=sites,
        peak_sites=peak_sites,
        peak_bytes=max(0, snapshot.peak_bytes - peak_dropped),
        bytes=max(0, snapshot.bytes - live_dropped),
        stats=dict(snapshot.stats),
    )


def lines_with_stacks(sites) -> list[tuple]:
    """Sites grouped by their innermost line: ``(frame, bytes, blocks,
    sites)`` per line, largest first, each line's sites heaviest first
    (frame None for the sites with no Python frame)."""
    by_line: dict = {}
    for site in sites:
        key = site.stack[0] if site.stack else None
        acc = by_line.get(key)
        if acc is None:
            acc = by_line[key] = [0, 0, []]
        acc[0] += site.bytes
        acc[1] += site.blocks
        acc[2].append(site)
    ordered = sorted(
        by_line.items(),
        key=lambda kv: (-kv[1][0], -kv[1][1], tuple(kv[0]) if kv[0] else ("", 0, "")),
    )
    out = []
    for frame, (nbytes, nblocks, members) in ordered:
        members.sort(key=lambda s: (-s.bytes, -s.blocks))
        out.append((frame, nbytes, nblocks, members))
    return out


class GroupedTotals:
    """Sites fed one at a time, totalled by ``key``: what a report of a
    snapshot too big to hold needs (memory grows with the distinct groups,
    not with the sites)."""

    def __init__(self, key: str = "line") -> None:
        if key not in GROUP_KEYS:
            raise _bad_key(key)
        self.key = key
        self.totals: dict[tuple, list[int]] = {}
        self.count = 0  # sites fed

    def add(self, site: Site) -> None:
        self.count += 1
        k = key_stack(site.stack, self.key)
        acc = self.totals.get(k)
        if acc is None:
            acc = self.totals[k] = [0, 0]
        acc[0] += site.bytes
        acc[1] += site.blocks

    def sites(self) -> list[Site]:
        """The groups as sites, largest first."""
        return merge_stacks(Site(k, b, n) for k, (b, n) in self.totals.items())
