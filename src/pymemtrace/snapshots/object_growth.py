"""What calling a function leaves behind: the plain data of
``pymemtrace objects TARGET`` and of ``objects.gc_experiment()``.

``ObjectGrowthReport.to_dict()`` is the JSON contract of ``pymemtrace
objects --format json`` (schema 1; fields are added, never renamed)::

    {"schema": 1, "target": str, "iterations": int,
     "types": [{"type": str, "per_call": float, "bytes_per_call": float}],
     "holders": [{"type": str, "chain": [str], "text": str}],
     "refcount": [{"type": str, "repr": str, "refs_per_call": float}]}

plus ``warmup``, ``memory`` (bytes per call in Python's allocators, in
RSS, and the part no object explains) and ``gc`` (the gc experiment, when
it ran).  ``type`` is the bare type name (``str``, ``dict``, ``Handler``);
``qualname`` beside it says which module defines it.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

# One row of a type that grew per call, for the hunt and for `objects` alike.
from pymemtrace.snapshots.hunt import TypeGrowth

SCHEMA = 1

#: The verdicts of the gc experiment.
RETAINED = "retained"
CYCLIC = "cyclic garbage, collected late"
NO_GROWTH = "no growth"


@dataclasses.dataclass
class MemoryGrowth:
    """Bytes per call that stayed: in Python's allocators (``heap``), in
    the process's resident set (``rss``), and in the allocators beyond the
    objects that grew (``unowned``: buffers no object owns)."""

    heap_bytes_per_call: float
    rss_bytes_per_call: float
    unowned_bytes_per_call: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ModeGrowth:
    """One mode of the gc experiment: growth per call while it ran, and
    what a ``gc.collect()`` at its end took back."""

    mode: str
    bytes_per_call: float
    objects_per_call: float
    collected_bytes_per_call: float
    collected_objects_per_call: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class GcExperiment:
    """The workload run with the gc enabled, disabled, and with
    ``gc.collect()`` after every call, and what its growth is."""

    iterations: int
    modes: List[ModeGrowth]
    verdict: str
    text: str

    def mode(self, name: str) -> ModeGrowth:
        for row in self.modes:
            if row.mode == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"iterations": self.iterations, "verdict": self.verdict,
                "text": self.text, "modes": [m.to_dict() for m in self.modes]}


def _holder_dict(holder) -> dict:
    row = {"type": holder.type, "chain": list(holder.chain), "text": holder.text}
    count = getattr(holder, "count", None)
    if count is not None:
        row["count"] = count
    return row


def _refcount_dict(leak) -> dict:
    return {"type": leak.type, "repr": leak.repr, "refs_per_call": float(leak.refs_per_call)}


@dataclasses.dataclass
class ObjectGrowthReport:
    """Per-call growth of a callable: types, holders, reference counts, memory."""

    target: str
    iterations: int
    warmup: int
    types: List[TypeGrowth]
    memory: MemoryGrowth
    holders: list = dataclasses.field(default_factory=list)
    refcount: list = dataclasses.field(default_factory=list)
    gc: Optional[GcExperiment] = None

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "target": self.target,
            "iterations": self.iterations,
            "warmup": self.warmup,
            "types": [t.to_dict() for t in self.types],
            "holders": [_holder_dict(h) for h in self.holders],
            "refcount": [_refcount_dict(r) for r in self.refcount],
            "memory": self.memory.to_dict(),
            "gc": None if self.gc is None else self.gc.to_dict(),
        }
