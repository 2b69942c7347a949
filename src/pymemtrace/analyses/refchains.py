"""Referrer chains in Python terms, holders, and steady reference growth.

The probe (``_c/refgraph.c``) hands out paths of objects, root first; this
module says what each step is: ``module app.cache -> dict _CACHE -> key
'req-17' -> list -> [3]``.  A container's description (``module NAME``,
``class NAME``, ``function NAME``, or the bare type name) alternates with
the label of the edge out of it (a dict key, an index, ``member``, an
attribute).  An attribute is written with what it holds: ``dict _CACHE``
(an object's ``__dict__`` is one step, not two); as the last step it is
``attribute NAME``.

Labels are found by looking into the live objects (a dict's items, a
list's slots, an object's ``__dict__`` and ``__slots__``, a function's
closure ...), never by calling methods a class defines.
"""

from __future__ import annotations

import gc
import os
import re
import types

from pymemtrace.snapshots.objects import HELD_BY_C, Holder

#: a dict key's repr is cut to this many characters
KEY_REPR = 40

_FUNCTION_ATTRS = ("__closure__", "__globals__", "__defaults__", "__kwdefaults__",
                   "__dict__", "__code__", "__annotations__", "__module__",
                   "__name__", "__qualname__", "__doc__")
_FRAME_ATTRS = ("f_back", "f_globals", "f_builtins", "f_code", "f_trace")
_TYPE_ATTRS = ("__mro__", "__bases__", "__base__", "__dict__")


def type_name(obj) -> str:
    return getattr(type(obj), "__name__", "?")


def short_repr(obj, limit: int = KEY_REPR) -> str:
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not end the report
        text = f"<{type_name(obj)} at {id(obj):#x}>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _module_name(module) -> str:
    try:
        name = vars(module).get("__name__")
    except TypeError:
        name = None
    return name if isinstance(name, str) else "?"


def describe(obj) -> str:
    """What an object on a chain is: ``module NAME``, ``class NAME``,
    ``function NAME``, a frame, or its bare type name."""
    tp = type(obj)
    if issubclass(tp, types.ModuleType):
        return f"module {_module_name(obj)}"
    if issubclass(tp, type):
        return f"class {type.__dict__['__qualname__'].__get__(obj)}"
    if tp is types.FunctionType:
        return f"function {obj.__qualname__}"
    if tp is types.FrameType:
        return describe_frame(obj)
    return type_name(obj)


def describe_frame(frame, local: str | None = None) -> str:
    code = frame.f_code
    text = f"frame of {code.co_name} ({os.path.basename(code.co_filename)}:{frame.f_lineno})"
    return text if local is None else f"{text}, local {local}"


def _instance_dict(obj):
    """obj's own ``__dict__`` (or None), read without calling its class's code."""
    try:
        d = object.__getattribute__(obj, "__dict__")
    except Exception:
        return None
    return d if type(d) is dict else None


def _attribute_dict(obj):
    """The dict whose items are obj's attributes: a module's or an
    instance's ``__dict__``, a class's real dict (behind its mappingproxy)."""
    tp = type(obj)
    if issubclass(tp, type):
        referents = gc.get_referents(type.__dict__["__dict__"].__get__(obj))
        return referents[0] if referents and type(referents[0]) is dict else None
    if issubclass(tp, types.ModuleType):
        try:
            return vars(obj)
        except TypeError:
            return None
    return _instance_dict(obj)


def _key_of(d: dict, value):
    for key, item in dict.items(d):
        if item is value:
            return key
    return None


def _attribute_of(obj, nxt, frame_locals=None):
    """The name under which obj holds nxt as an attribute, or None."""
    tp = type(obj)
    if tp is types.FunctionType:
        for name in _FUNCTION_ATTRS:
            if getattr(obj, name, None) is nxt:
                return name
        return None
    if tp is types.MethodType:
        return "__self__" if obj.__self__ is nxt else "__func__" if obj.__func__ is nxt else None
    if tp is types.FrameType:
        for name in _FRAME_ATTRS:
            if getattr(obj, name, None) is nxt:
                return name
        if frame_locals is not None:
            for name, value in frame_locals(obj):
                if value is nxt:
                    return f"local {name}"
        return None
    if issubclass(tp, type):
        for name in _TYPE_ATTRS:
            if type.__dict__[name].__get__(obj) is nxt:
                return name
        return None
    d = _instance_dict(obj)
    if d is not None:
        key = _key_of(d, nxt)
        if isinstance(key, str):
            return key
    for klass in getattr(tp, "__mro__", ()):
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for name in slots:
            descr = klass.__dict__.get(name)
            if type(descr) is types.MemberDescriptorType:
                try:
                    if descr.__get__(obj, tp) is nxt:
                        return name
                except AttributeError:
                    continue
    return None


def _item_label(obj, nxt):
    """How a container holds nxt: ``key 'k'``, ``[3]``, ``member``, or None."""
    if isinstance(obj, dict):
        key = _key_of(obj, nxt)
        if key is not None or any(v is nxt for v in dict.values(obj)):
            return f"key {short_repr(key)}"
        for key in dict.keys(obj):
            if key is nxt:
                return "a key"
        return None
    if isinstance(obj, (list, tuple)):
        seq = list.__iter__(obj) if isinstance(obj, list) else tuple.__iter__(obj)
        for i, item in enumerate(seq):
            if item is nxt:
                return f"[{i}]"
        return None
    if isinstance(obj, (set, frozenset)):
        return "member"
    if type(obj) is types.CellType:
        return "cell_contents"
    return None


def _attribute_step(name: str, nxt, last: bool) -> str:
    if last:
        return f"attribute {name}"
    text = describe(nxt)
    # a class, function or module under its own name says it once
    if text.endswith(f" {name}") or text.endswith(f".{name}"):
        return text
    return f"{text} {name}"


def chain_of(path, root: str, frame_locals=None) -> list:
    """The steps of a path of objects (root first), ``root`` describing
    ``path[0]`` (and, for a frame's local, the edge to it)."""
    out = [root]
    n = len(path)
    i = 0
    while i < n - 1:
        cur, nxt = path[i], path[i + 1]
        d = _attribute_dict(cur)
        if d is not None and nxt is d and i + 2 < n:
            name = _key_of(d, path[i + 2])
            if isinstance(name, str):
                out.append(_attribute_step(name, path[i + 2], i + 2 == n - 1))
                i += 2
                continue
        last = i + 1 == n - 1
        label = _item_label(cur, nxt)
        if label is None:
            name = _attribute_of(cur, nxt, frame_locals)
            if name is not None and not name.startswith("local "):
                out.append(_attribute_step(name, nxt, last))
                i += 1
                continue
            label = name
        if label is not None:
            out.append(label)
        if not last:
            out.append(describe(nxt))
        elif label is None:
            out.append(describe(nxt))
        i += 1
    return out


def held_by_c_root(obj) -> str:
    """The first step of a chain from an object only C code holds."""
    return f"{describe(obj)} held only by C code"


# -- holders --

#: the last step of a member whose container holds another member before
#: it (not described: it differs from the first's)
OTHER = "..."

_INDEX = re.compile(r"^\[\d+\]$")


def _general(step: str) -> str:
    if _INDEX.match(step):
        return "[...]"
    if step.startswith("key "):
        return "key ..."
    return step


def group_holders(rows, limit: int | None = 5) -> list:
    """Group ``(type, chain or None)`` rows by the chain to their holding
    container; the biggest groups first, as :class:`Holder`.

    Indices and dict keys on the way are generalised (``[...]``,
    ``key ...``) so that objects in sibling containers group together.  A
    row without a chain is held by no Python object.
    """
    groups: dict = {}
    for tp, chain in rows:
        if chain is None or (len(chain) == 1 and chain[0].endswith(HELD_BY_C)):
            steps = [HELD_BY_C]
            last = None
        elif len(chain) == 1:
            steps = list(chain)
            last = None
        else:
            steps = list(chain[:-1])
            last = chain[-1]
        key = (tp, tuple(_general(step) for step in steps))
        entry = groups.get(key)
        if entry is None:
            groups[key] = [tp, steps, 1, {last}]
            continue
        entry[2] += 1
        if len(entry[3]) < 2:
            entry[3].add(last)
        # a step the members do not share is shown generalised
        for j, step in enumerate(steps):
            if entry[1][j] != step:
                entry[1][j] = _general(step)
    holders = []
    for tp, steps, count, lasts in groups.values():
        chain = list(steps)
        lasts.discard(None)
        real = [last for last in lasts if last is not OTHER]
        if real:
            last = real[0]
            if len(lasts) > 1:
                general = _general(last)
                if general == last and last.startswith("attribute "):
                    general = "attribute ..."
                last = general
            chain.append(last)
        holders.append(Holder(tp, chain, " -> ".join(chain), count))
    holders.sort(key=lambda h: (-h.count, h.text))
    return holders if limit is None else holders[:limit]


# -- steady growth of external references --

def steady_rate(externals, calls, min_per_call: float = 0.5):
    """References added per call when ``externals`` (one object's external
    references at each measurement) grew steadily with ``calls`` (the
    calls made before each measurement), else None.

    Steady: every interval grew, at a rate within a factor of two of the
    overall rate, and the overall rate is at least ``min_per_call``.
    """
    total_calls = calls[-1] - calls[0]
    if total_calls <= 0 or len(externals) != len(calls) or len(calls) < 2:
        return None
    rate = (externals[-1] - externals[0]) / total_calls
    if rate < min_per_call:
        return None
    for j in range(len(calls) - 1):
        span = calls[j + 1] - calls[j]
        if span <= 0:
            continue
        r = (externals[j + 1] - externals[j]) / span
        if r <= 0 or r < rate / 2 or r > rate * 2:
            return None
    return rate
