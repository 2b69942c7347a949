"""The fixed workloads every tool is measured on.

Each workload is a function taking a scale factor and returning a value
(so nothing is optimised away); at scale 1 each runs for roughly 0.1-0.3 s
on our 2-core machines.
"""
import json


def call_heavy(scale=1):
    """Pure-Python calls: what profile and trace hooks pay for."""

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    total = 0
    for _ in range(scale):
        total += fib(22)
    return total


def alloc_heavy(scale=1):
    """Many short-lived small objects and some that stay a while."""
    kept = []
    total = 0
    for i in range(60_000 * scale):
        item = {"i": i, "s": str(i), "l": [i, i + 1, i + 2]}
        total += len(item["s"])
        kept.append(item)
        if len(kept) > 1000:
            kept.clear()
    return total


def json_heavy(scale=1):
    """C calls (json encode and decode) with some Python around them."""
    doc = {"name": "x" * 20, "values": list(range(50)), "nested": {"a": [1.5, 2.5]}}
    total = 0
    for _ in range(4_000 * scale):
        text = json.dumps(doc)
        total += len(json.loads(text)["values"])
    return total


_LEAK = []


def slow_leak(scale=1):
    """A long loop that keeps a little of every iteration: a slow leak."""
    total = 0
    for i in range(40_000 * scale):
        record = [i] * 4
        total += sum(record)
        if i % 100 == 0:
            _LEAK.append(bytes(64))
    return total


def mixed(scale=1):
    """The four above together, one after the other at the same scale:
    the "mixed workload" of issue 8's targets.  At scale 1 they take
    about 2 / 17 / 34 / 6 ms (calls / allocations / json / slow leak):
    json weighs most, pure calls least.  call_heavy alone is the worst
    case of a hook at every event, and is reported beside it."""
    return call_heavy(scale) + alloc_heavy(scale) + json_heavy(scale) + slow_leak(scale)


WORKLOADS = {
    "call_heavy": call_heavy,
    "alloc_heavy": alloc_heavy,
    "json_heavy": json_heavy,
    "slow_leak": slow_leak,
    "mixed": mixed,
}
