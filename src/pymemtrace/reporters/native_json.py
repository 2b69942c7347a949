"""The JSON of ``pymemtrace report OUTDIR --format json`` for native captures.

The contract (docs/native.md; extend, do not rename)::

    {"schema": 1, "processes": [{"pid": int, "command": [str],
      "leaked": {"bytes": int, "blocks": int, "sites": [{"bytes": int,
        "blocks": int, "frames": [{"function": str, "file": str or null,
        "line": int or null, "library": str or null, "python": bool}]}]},
      "peak": {same shape}, ...}]}
"""
from __future__ import annotations

import json
from typing import Sequence

from pymemtrace.analyses.native import ProcessReport, to_json


def render(reports: Sequence[ProcessReport]) -> str:
    return json.dumps(to_json(reports), indent=1)
