"""Hunt result -> the JSON document of ``pymemtrace hunt --format json``.

The document and its contract live with the result
(:mod:`pymemtrace.snapshots.hunt`, docs/hunt.md): this module only
serialises it.
"""

from __future__ import annotations

import json

__all__ = ["render"]


def render(result, indent=None) -> str:
    return json.dumps(result.to_dict(), indent=indent)
