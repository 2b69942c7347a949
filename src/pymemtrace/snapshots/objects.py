"""Object censuses: live objects counted and sized by type, as plain data.

A census is what ``pymemtrace.objects.census()`` hands out.  Its JSON
document (:meth:`ObjectCensus.save` / :meth:`ObjectCensus.load`)::

    {"schema": 1, "memory": int,
     "types": [{"type": str, "qualname": str, "count": int, "bytes": int}, ...]}

``type`` is the bare type name (``str``, ``dict``, ``Handler``), as the
JSON of ``pymemtrace objects`` uses it; ``qualname`` is ``module.qualname``
(``builtins.str``, ``app.handlers.Handler``), which tells two types of one
bare name apart and keys :attr:`ObjectCensus.types`.  ``memory`` is the
most bytes the walk itself held (freed when it returned).
"""

from __future__ import annotations

import os

SCHEMA = 1


class TypeCount:
    """The live objects of one type: how many and their ``sys.getsizeof`` total."""

    __slots__ = ("name", "qualname", "count", "bytes")

    def __init__(self, name: str, qualname: str, count: int, bytes: int) -> None:
        self.name = name
        self.qualname = qualname
        self.count = count
        self.bytes = bytes

    def __repr__(self) -> str:
        return f"TypeCount({self.qualname!r}, count={self.count}, bytes={self.bytes})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, TypeCount):
            return NotImplemented
        return (self.name, self.qualname, self.count, self.bytes) == (
            other.name, other.qualname, other.count, other.bytes)

    def to_dict(self) -> dict:
        return {"type": self.name, "qualname": self.qualname,
                "count": self.count, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, data: dict) -> TypeCount:
        if not isinstance(data, dict):
            raise ValueError("a type row is not an object")
        try:
            name = data["type"]
            qualname = data.get("qualname", name)
            count = data["count"]
            size = data["bytes"]
        except KeyError as exc:
            raise ValueError(f"a type row has no {exc.args[0]!r}") from None
        if not isinstance(name, str) or not isinstance(qualname, str):
            raise ValueError("type and qualname must be strings")
        for value in (count, size):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"count and bytes must be integers >= 0, not {value!r}")
        return cls(name, qualname, count, size)


def type_names(tp: type) -> tuple:
    """``(bare name, module.qualname)`` of a type."""
    name = getattr(tp, "__name__", None) or repr(tp)
    module = getattr(tp, "__module__", None) or "builtins"
    qualname = getattr(tp, "__qualname__", None) or name
    if not isinstance(module, str):
        module = "?"
    return str(name), f"{module}.{qualname}"


class ObjectCensus:
    """Live objects by type.  ``types`` maps ``module.qualname`` to a :class:`TypeCount`."""

    __slots__ = ("types", "memory", "__weakref__")

    def __init__(self, types: dict, memory: int = 0) -> None:
        self.types = types
        self.memory = memory

    @classmethod
    def from_rows(cls, rows, memory: int = 0) -> ObjectCensus:
        """From ``[(type, count, bytes), ...]``, the probe's rows."""
        types = {}
        for tp, count, size in rows:
            name, qualname = type_names(tp)
            row = types.get(qualname)
            if row is None:
                types[qualname] = TypeCount(name, qualname, count, size)
            else:
                # two live types of one qualified name (a class defined twice)
                row.count += count
                row.bytes += size
        return cls(types, memory)

    def __len__(self) -> int:
        return len(self.types)

    def __repr__(self) -> str:
        return f"<ObjectCensus of {self.total_count} objects, {len(self.types)} types>"

    @property
    def total_count(self) -> int:
        return sum(row.count for row in self.types.values())

    @property
    def total_bytes(self) -> int:
        return sum(row.bytes for row in self.types.values())

    def count(self, name: str) -> int:
        """Objects of the type whose bare or qualified name is ``name``."""
        return sum(row.count for row in self._rows(name))

    def bytes(self, name: str) -> int:
        """Bytes of the objects of the type whose bare or qualified name is ``name``."""
        return sum(row.bytes for row in self._rows(name))

    def _rows(self, name: str):
        row = self.types.get(name)
        if row is not None:
            return [row]
        return [row for row in self.types.values() if row.name == name]

    def most_common(self, limit: int | None = None) -> list:
        """Rows by count, largest first."""
        rows = sorted(self.types.values(), key=lambda r: (-r.count, r.qualname))
        return rows if limit is None else rows[:limit]

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "memory": self.memory,
                "types": [row.to_dict() for row in self.most_common()]}

    @classmethod
    def from_dict(cls, data: dict) -> ObjectCensus:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("schema") != SCHEMA:
            raise ValueError(f"unsupported object census schema: {data.get('schema')!r}")
        rows = data.get("types")
        if not isinstance(rows, list):
            raise ValueError("types is not a list")
        types = {}
        for item in rows:
            row = TypeCount.from_dict(item)
            types[row.qualname] = row
        memory = data.get("memory", 0)
        if not isinstance(memory, int) or memory < 0:
            raise ValueError(f"memory must be an integer >= 0, not {memory!r}")
        return cls(types, memory)

    def save(self, path) -> None:
        """Write the census as JSON: complete under ``path``, or not there.

        Raises :class:`~pymemtrace.errors.PymemtraceError` (``cannot write
        PATH: reason``) when it cannot be written.
        """
        import json

        from pymemtrace import _output

        with _output.atomic_open(os.fspath(path)) as fh:
            json.dump(self.to_dict(), fh)
            fh.write("\n")

    @classmethod
    def load(cls, path) -> ObjectCensus:
        """Read a file written by :meth:`save`."""
        import json

        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return cls.from_dict(data)


# -- who keeps it: referrer chains, holders, reference leaks (issue 10, 2-3) --
#
# Plain dataclasses (this module is not on ``pymemtrace run``'s start-up
# path).  The chains are strings in Python terms; only BackrefChain keeps
# objects (``objects``, as objgraph's find_backref_chain returns them).

from dataclasses import dataclass, field  # noqa: E402

#: what a chain says of objects that no Python object refers to
HELD_BY_C = "held by no Python object: a reference leak in C code"


@dataclass(eq=False)
class BackrefChain:
    """The shortest chain of references from a root to an object.

    ``type`` is the object's bare type name; ``chain`` the steps, root
    first, in Python terms (``module app.cache``, ``dict _CACHE``,
    ``key 'req-17'``, ``list``, ``[3]``); ``text`` them joined with
    ``" -> "``; ``objects`` the objects from the root to the object.
    """

    type: str
    chain: list
    objects: list = field(repr=False, default_factory=list)

    @property
    def text(self) -> str:
        return " -> ".join(self.chain)

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict:
        return {"type": self.type, "chain": list(self.chain), "text": self.text}


@dataclass
class Holder:
    """Objects of one type held the same way: ``count`` of them at the end
    of ``chain`` (the chain to their holding container, then how they sit
    in it)."""

    type: str
    chain: list
    text: str
    count: int

    def __str__(self) -> str:
        return f"{self.count} {self.type}: {self.text}"

    def to_dict(self) -> dict:
        return {"type": self.type, "chain": list(self.chain), "text": self.text,
                "count": self.count}


@dataclass
class RefLeak:
    """References that C code took on an object and kept, per call."""

    type: str
    repr: str
    refs_per_call: float
    address: int = 0
    #: the object's external references at each measurement
    externals: tuple = ()

    def __str__(self) -> str:
        n = self.refs_per_call
        amount = f"{n:.0f}" if abs(n - round(n)) < 0.05 else f"{n:.2f}"
        return (f"{amount} extra reference{'' if amount == '1' else 's'} per call "
                f"on object {self.repr} of type {self.type}")

    def to_dict(self) -> dict:
        return {"type": self.type, "repr": self.repr, "refs_per_call": self.refs_per_call}
