"""Leak hunts as plain data: what ``pymemtrace.hunt()`` measured, and what it concluded.

Two kinds of data live here, both free of any probe:

- :class:`Measurements`: what the front end (``pymemtrace.hunting``)
  measured, call by call, and the checkpoints it took; the input of
  :func:`pymemtrace.analyses.hunt.analyse`;
- :class:`HuntResult`: the answer, and its JSON document (schema 1, the
  contract of docs/hunt.md; extended, never renamed)::

    {"schema": 1, "verdict": "leak" | "no-leak" | "inconclusive",
     "confidence": float, "reason": str, "iterations": int, "warmup": int,
     "frequency": float,
     "per_call": {"bytes": float, "blocks": float, "objects": float,
                  "rss_bytes": float, "native_bytes": float | null,
                  "malloc_bytes": float | null},
     "types": [{"type": str, "qualname": str, "per_call": float,
                "bytes_per_call": float}],
     "sites": [{"file": str, "line": int, "function": str,
                "bytes_per_call": float, "blocks_per_call": float,
                "stack": [{"file": str, "line": int, "function": str}]}],
     "holders": [{"type": str, "chain": [str], "text": str}],
     "refcount": [{"type": str, "repr": str, "refs_per_call": float}],
     "unowned_bytes_per_call": float, "leak_bytes_per_call": float,
     "calls_judged": int,
     "seconds_per_call": float, "growth_per_hour": float,
     "target": str, "notes": [str],
     "series": {"bytes": [int], "blocks": [int], "rss_bytes": [int]}}

``series`` holds the measured calls' live bytes and blocks in Python's
allocators and the RSS after each call, relative to the first measured
call (for charts).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

SCHEMA = 1
VERDICTS = ("leak", "no-leak", "inconclusive")


@dataclass
class Measurements:
    """What a hunt measured (plain data; the front end fills it).

    ``bytes``, ``blocks`` and ``rss``: after each measured call (and a full
    gc collection), the live bytes and blocks of Python's allocators and the
    resident set size, with the hunt's own bookkeeping taken out.
    ``censuses``: ``(call index, ObjectCensus)`` checkpoints, the index being
    the number of measured calls done when it was taken.  ``site_diffs``:
    allocation sites whose live memory grew over ``site_calls`` calls run
    under the allocation tracker (``SiteDiff``-like objects with ``stack``,
    ``bytes_diff``, ``blocks_diff``).  ``seconds``: time spent in the
    measured calls themselves.
    """

    target: str
    warmup: int
    bytes: list
    blocks: list
    rss: list
    seconds: float
    censuses: list = field(default_factory=list)
    site_diffs: list = field(default_factory=list)
    site_calls: int = 0
    holders: list = field(default_factory=list)
    refcount: list = field(default_factory=list)
    native_bytes: list | None = None
    #: bytes malloc handed out (glibc's mallinfo2), after every
    #: ``malloc_stride``-th call and the last; None where unknown
    malloc: list | None = None
    malloc_stride: int = 1
    #: sentences for the report's notes from naming the sites (free lists)
    site_notes: list = field(default_factory=list)

    @property
    def iterations(self) -> int:
        return len(self.bytes)


@dataclass
class TypeGrowth:
    """A type whose live objects grew: objects and bytes per measured call."""

    type: str
    qualname: str
    per_call: float
    bytes_per_call: float

    def to_dict(self) -> dict:
        return {"type": self.type, "qualname": self.qualname,
                "per_call": self.per_call, "bytes_per_call": self.bytes_per_call}

    @classmethod
    def from_dict(cls, data: dict) -> TypeGrowth:
        return cls(_str(data["type"]), _str(data.get("qualname", data["type"])),
                   _num(data["per_call"]), _num(data.get("bytes_per_call", 0.0)))


@dataclass
class SiteGrowth:
    """An allocation site whose live memory grew; ``stack`` innermost first,
    a tuple of ``(file, line, function)``."""

    stack: tuple
    bytes_per_call: float
    blocks_per_call: float

    @property
    def file(self) -> str:
        return self.stack[0][0] if self.stack else "<no Python frame>"

    @property
    def line(self) -> int:
        return self.stack[0][1] if self.stack else 0

    @property
    def function(self) -> str:
        return self.stack[0][2] if self.stack else ""

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "function": self.function,
                "bytes_per_call": self.bytes_per_call,
                "blocks_per_call": self.blocks_per_call,
                "stack": [{"file": f, "line": n, "function": fn} for f, n, fn in self.stack]}

    @classmethod
    def from_dict(cls, data: dict) -> SiteGrowth:
        stack = tuple((_str(f["file"]), _int(f["line"]), _str(f["function"]))
                      for f in data["stack"])
        return cls(stack, _num(data["bytes_per_call"]), _num(data.get("blocks_per_call", 0.0)))


@dataclass
class HuntResult:
    """The answer of a hunt (see the module docstring for its JSON)."""

    verdict: str
    confidence: float
    reason: str
    iterations: int
    warmup: int
    frequency: float
    per_call: dict
    types: list = field(default_factory=list)
    sites: list = field(default_factory=list)
    holders: list = field(default_factory=list)
    refcount: list = field(default_factory=list)
    unowned_bytes_per_call: float = 0.0
    leak_bytes_per_call: float = 0.0
    calls_judged: int = 0
    seconds_per_call: float = 0.0
    growth_per_hour: float = 0.0
    target: str = ""
    notes: list = field(default_factory=list)
    series: dict = field(default_factory=dict)

    @property
    def leaks(self) -> bool:
        return self.verdict == "leak"

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "confidence": self.confidence,
            "reason": self.reason,
            "iterations": self.iterations,
            "warmup": self.warmup,
            "frequency": self.frequency,
            "per_call": dict(self.per_call),
            "types": [t.to_dict() for t in self.types],
            "sites": [s.to_dict() for s in self.sites],
            "holders": list(self.holders),
            "refcount": list(self.refcount),
            "unowned_bytes_per_call": self.unowned_bytes_per_call,
            "leak_bytes_per_call": self.leak_bytes_per_call,
            "calls_judged": self.calls_judged,
            "seconds_per_call": self.seconds_per_call,
            "growth_per_hour": self.growth_per_hour,
            "target": self.target,
            "notes": list(self.notes),
            "series": {k: list(v) for k, v in self.series.items()},
        }

    @classmethod
    def from_dict(cls, data) -> HuntResult:
        """ValueError (one line) when ``data`` is not a hunt document of schema 1."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("schema") != SCHEMA:
            raise ValueError(f"unsupported hunt schema: {data.get('schema')!r}")
        try:
            verdict = data["verdict"]
            if verdict not in VERDICTS:
                raise ValueError(f"unknown verdict {verdict!r}")
            per_call = data["per_call"]
            if not isinstance(per_call, dict):
                raise ValueError("per_call is not an object")
            per = {k: _num(per_call[k]) for k in ("bytes", "blocks", "objects", "rss_bytes")}
            for key in ("native_bytes", "malloc_bytes"):
                value = per_call.get(key)
                per[key] = None if value is None else _num(value)
            return cls(
                verdict=verdict,
                confidence=_num(data.get("confidence", 0.0)),
                reason=_str(data.get("reason", "")),
                iterations=_int(data["iterations"]),
                warmup=_int(data.get("warmup", 0)),
                frequency=_num(data["frequency"]),
                per_call=per,
                types=[TypeGrowth.from_dict(t) for t in data["types"]],
                sites=[SiteGrowth.from_dict(s) for s in data["sites"]],
                holders=list(data.get("holders", [])),
                refcount=list(data.get("refcount", [])),
                unowned_bytes_per_call=_num(data["unowned_bytes_per_call"]),
                leak_bytes_per_call=_num(data.get("leak_bytes_per_call", 0.0)),
                calls_judged=_int(data.get("calls_judged", 0)),
                seconds_per_call=_num(data.get("seconds_per_call", 0.0)),
                growth_per_hour=_num(data.get("growth_per_hour", 0.0)),
                target=_str(data.get("target", "")),
                notes=[_str(n) for n in data.get("notes", [])],
                series={k: [_int(v) for v in vs] for k, vs in data.get("series", {}).items()},
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a hunt document: {type(exc).__name__} {exc}") from None

    def save(self, path) -> None:
        """Write the JSON document: complete under ``path``, or not there
        (PymemtraceError ``cannot write PATH: reason`` when it cannot be)."""
        from pymemtrace import _output

        with _output.atomic_open(os.fspath(path)) as fh:
            json.dump(self.to_dict(), fh)
            fh.write("\n")

    @classmethod
    def load(cls, path) -> HuntResult:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


def _int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an integer: {str(value)[:40]!r}")
    return value


def _num(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {str(value)[:40]!r}")
    return float(value)


def _str(value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not a string: {str(value)[:40]!r}")
    return value
