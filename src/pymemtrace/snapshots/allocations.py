"""Allocation snapshots: memory live by allocation site, as plain data.

The one home of their persistence: :func:`to_dict` / :meth:`AllocationSnapshot.from_dict`
and :meth:`~AllocationSnapshot.save` / :meth:`~AllocationSnapshot.load` write and
read the JSON document of ``pymemtrace run --allocations -o`` (the contract
is in docs/allocations.md)::

    {"schema": 1, "peak_bytes": int,
     "sites": [{"file": str, "line": int, "function": str,
                "stack": [{"file", "line", "function"}, ...],
                "bytes": int, "blocks": int}, ...],
     "peak_sites": [... same shape ...],
     "bytes": int, "mode": str, "depth": int, "sample_bytes": int | null,
     "stats": {str: int}}

:func:`iter_file` reads such a file one site at a time (a report of a
200 MB snapshot does not hold it all).

Plain classes with ``__slots__`` rather than dataclasses: ``pymemtrace run``
imports this module on its start-up path, and ``dataclasses`` costs it
about 5 ms (docs/benchmarks.md).
"""

from __future__ import annotations

import os

SCHEMA = 1
NO_FRAME = "<no Python frame>"
DEFAULT_SAMPLE_BYTES = 512 * 1024


class Frame(tuple):
    """One frame of an allocation stack: ``(file, line, function)``.

    A tuple, so frames and stacks compare, sort and hash as their fields do.
    """

    __slots__ = ()
    _fields = ("file", "line", "function")

    def __new__(cls, file: str, line: int, function: str) -> Frame:
        return tuple.__new__(cls, (file, line, function))

    def __getnewargs__(self):
        return tuple(self)

    @property
    def file(self) -> str:
        return self[0]

    @property
    def line(self) -> int:
        return self[1]

    @property
    def function(self) -> str:
        return self[2]

    def __repr__(self) -> str:
        return f"Frame(file={self[0]!r}, line={self[1]!r}, function={self[2]!r})"

    def to_dict(self) -> dict:
        return {"file": self[0], "line": self[1], "function": self[2]}


_NO_FRAME = Frame(NO_FRAME, 0, "")


class Site:
    """Memory attributed to one stack (innermost frame first)."""

    __slots__ = ("stack", "bytes", "blocks")

    def __init__(self, stack: tuple, bytes: int, blocks: int) -> None:  # noqa: A002
        self.stack = stack
        self.bytes = bytes
        self.blocks = blocks

    def _key(self) -> tuple:
        return (self.stack, self.bytes, self.blocks)

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Site(stack={self.stack!r}, bytes={self.bytes!r}, blocks={self.blocks!r})"

    @property
    def frame(self) -> Frame:
        return self.stack[0] if self.stack else _NO_FRAME

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
        frame = self.frame
        return {
            "file": frame.file,
            "line": frame.line,
            "function": frame.function,
            "stack": [f.to_dict() for f in self.stack],
            "bytes": self.bytes,
            "blocks": self.blocks,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Site:
        stack = tuple(
            Frame(_str(f["file"]), _int(f["line"]), _str(f["function"])) for f in data["stack"]
        )
        return cls(stack, _int(data["bytes"]), _int(data["blocks"]))


def _int(value) -> int:
    """An integer of a saved snapshot: a 64-bit count (ValueError if not)."""
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise ValueError(f"number out of range: {str(number)[:20]}...")
    return number


def _str(value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not a string: {str(value)[:40]!r}")
    return value


def _site_order(site: Site) -> tuple:
    return (-site.bytes, -site.blocks, site.stack)


def merge_stacks(sites) -> list[Site]:
    """One site per distinct stack (bytes and blocks summed), largest first."""
    totals: dict[tuple, list[int]] = {}
    for site in sites:
        acc = totals.get(site.stack)
        if acc is None:
            acc = totals[site.stack] = [0, 0]
        acc[0] += site.bytes
        acc[1] += site.blocks
    merged = [Site(k, b, n) for k, (b, n) in totals.items()]
    merged.sort(key=_site_order)
    return merged


class AllocationSnapshot:
    """Memory live through Python's allocators, by allocation site.

    ``sites``: memory live when the snapshot was taken; ``peak_sites``: the
    memory live when the tracked total was highest (``peak_bytes``).  Both
    are sorted by bytes, descending, one entry per distinct stack.
    """

    __slots__ = ("sites", "peak_sites", "peak_bytes", "bytes", "mode", "depth",
                 "sample_bytes", "stats")

    def __init__(
        self,
        sites: list,
        peak_sites: list,
        peak_bytes: int,
        bytes: int,  # noqa: A002
        mode: str = "exact",
        depth: int = 16,
        sample_bytes: int = DEFAULT_SAMPLE_BYTES,
        stats: dict | None = None,
    ) -> None:
        self.sites = sites
        self.peak_sites = peak_sites
        self.peak_bytes = peak_bytes
        self.bytes = bytes
        self.mode = mode
        self.depth = depth
        self.sample_bytes = sample_bytes
        self.stats = {} if stats is None else stats

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in AllocationSnapshot.__slots__)

    def __eq__(self, other) -> bool:
        if not isinstance(other, AllocationSnapshot):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # mutable, as the dataclass was

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(bytes={self.bytes}, peak_bytes={self.peak_bytes}, "
                f"{len(self.sites)} sites, {len(self.peak_sites)} peak sites, mode={self.mode!r})")

    def _replace(self, **changes) -> AllocationSnapshot:
        fields = {name: getattr(self, name) for name in AllocationSnapshot.__slots__}
        fields.update(changes)
        return type(self)(**fields)

    # -- building ---------------------------------------------------------
    @classmethod
    def from_native(cls, raw: dict) -> AllocationSnapshot:
        """From the dict the tracker hands out (``_native.alloc_snapshot()``)."""
        live: list[Site] = []
        peak: list[Site] = []
        for frames, nbytes, nblocks, pbytes, pblocks in raw["stacks"]:
            stack = tuple(Frame(f, line, fn) for f, fn, line in frames)
            if nbytes or nblocks:
                live.append(Site(stack, nbytes, nblocks))
            if pbytes or pblocks:
                peak.append(Site(stack, pbytes, pblocks))
        return cls(
            sites=merge_stacks(live),
            peak_sites=merge_stacks(peak),
            peak_bytes=int(raw["peak_bytes"]),
            bytes=int(raw["bytes"]),
            mode=raw["mode"],
            depth=int(raw["depth"]),
            sample_bytes=int(raw["sample_bytes"]),
            stats=dict(raw["stats"]),
        )

    _from_native = from_native  # the name before issue 9

    # -- persistence ------------------------------------------------------
    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AllocationSnapshot:
        head = _header(data)
        return cls(
            sites=[Site.from_dict(s) for s in data["sites"]],
            peak_sites=[Site.from_dict(s) for s in data.get("peak_sites", [])],
            **head,
        )

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
        """Read a file written by :meth:`save`."""
        import json

        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return cls.from_dict(data)


def _header(data: dict) -> dict:
    """The scalar fields of a saved snapshot, checked."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("schema") != SCHEMA:
        raise ValueError(f"unsupported allocation snapshot schema: {data.get('schema')!r}")
    if "bytes" in data:
        total = _int(data["bytes"])
    else:
        total = sum(_int(s["bytes"]) for s in data["sites"])
    stats = data.get("stats", {})
    if not isinstance(stats, dict):
        raise ValueError("stats is not an object")
    return {
        "peak_bytes": _int(data["peak_bytes"]),
        "bytes": total,
        "mode": str(data.get("mode", "exact")),
        "depth": _int(data.get("depth", 16)),
        # null in exact mode: there is no sampling interval
        "sample_bytes": _int(data.get("sample_bytes") or DEFAULT_SAMPLE_BYTES),
        "stats": dict(stats),
    }


def to_dict(snapshot) -> dict:
    """The JSON document of a snapshot (see the module docstring)."""
    return {
        "schema": SCHEMA,
        "peak_bytes": int(snapshot.peak_bytes),
        "sites": [s.to_dict() for s in sorted(snapshot.sites, key=_site_order)],
        "peak_sites": [s.to_dict() for s in sorted(snapshot.peak_sites, key=_site_order)],
        "bytes": int(snapshot.bytes),
        "mode": snapshot.mode,
        "depth": snapshot.depth,
        "sample_bytes": snapshot.sample_bytes if snapshot.mode == "sampled" else None,
        "stats": dict(snapshot.stats),
    }


# -- streaming read -------------------------------------------------------

_CHUNK = 1 << 20
#: Largest single JSON value read in one piece (a site, or the stats).
MAX_VALUE_CHARS = 64 << 20


class _Stream:
    """JSON values read one at a time from a text stream, in bounded memory."""

    def __init__(self, stream) -> None:
        import json

        self.stream = stream
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.decoder = json.JSONDecoder()
        self.error = json.JSONDecodeError

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        if self.pos > _CHUNK:
            self.buf = self.buf[self.pos:]
            self.pos = 0
        if len(self.buf) - self.pos > MAX_VALUE_CHARS:
            raise ValueError(f"a value longer than {MAX_VALUE_CHARS} characters")
        self.buf += chunk
        return True

    def peek(self) -> str:
        """The next character that is not white space ('' at the end)."""
        while True:
            buf, pos = self.buf, self.pos
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            self.pos = pos
            if pos < len(buf):
                return buf[pos]
            if not self._more():
                return ""

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            raise ValueError(f"expected {char!r}, found {found[:1]!r} at character {self.pos}")
        self.pos += 1

    def value(self):
        """The next JSON value."""
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except self.error as exc:
                if self._more():
                    continue
                raise ValueError(f"bad JSON: {exc.msg}") from None
            # A number cut at the end of the buffer may go on.
            if end == len(self.buf) and not self.eof and self._more():
                continue
            self.pos = end
            return value


def iter_file(path):
    """A saved snapshot read one site at a time.

    Yields ``("site", Site)`` for each live site, ``("peak_site", Site)``
    for each site at the peak, and last ``("header", dict)`` with the other
    fields, checked as :meth:`AllocationSnapshot.from_dict` checks them
    (ValueError when they are wrong).  Memory does not grow with the file,
    only with its largest site.
    """
    with open(path, encoding="utf-8", errors="replace") as stream:
        reader = _Stream(stream)
        reader.expect("{")
        scalars: dict = {}
        live_total = 0
        seen_sites = False
        if reader.peek() == "}":
            reader.pos += 1
        else:
            while True:
                key = reader.value()
                if not isinstance(key, str):
                    raise ValueError("an object key is not a string")
                reader.expect(":")
                if key in ("sites", "peak_sites"):
                    tag = "site" if key == "sites" else "peak_site"
                    seen_sites = seen_sites or key == "sites"
                    reader.expect("[")
                    if reader.peek() == "]":
                        reader.pos += 1
                    else:
                        while True:
                            raw = reader.value()
                            if not isinstance(raw, dict):
                                raise ValueError(f"a {key} entry is not an object")
                            site = Site.from_dict(raw)
                            if tag == "site":
                                live_total += site.bytes
                            yield tag, site
                            if reader.peek() == ",":
                                reader.pos += 1
                                continue
                            reader.expect("]")
                            break
                else:
                    scalars[key] = reader.value()
                if reader.peek() == ",":
                    reader.pos += 1
                    continue
                reader.expect("}")
                break
        if reader.peek() != "":
            raise ValueError("extra data after the JSON object")
    if not seen_sites:
        raise ValueError("'sites'")
    if "bytes" not in scalars:
        scalars["bytes"] = live_total
    scalars["sites"] = []
    yield "header", _header(scalars)
