"""Which malloc this process runs on: glibc's, or another allocator whose
memory figures are its own (ASan keeps freed blocks in quarantine,
jemalloc and tcmalloc hold pages their own way).  Light on purpose: probes
ask before they start, and nothing here may allocate much or import much."""
from __future__ import annotations

import os
from typing import Optional

#: Allocators whose memory figures are their own (file name prefixes).
FOREIGN_ALLOCATORS = ("libasan", "libhwasan", "libjemalloc", "libtcmalloc", "libmimalloc")


def foreign_allocator() -> Optional[str]:
    """The name of an allocator other than glibc's malloc loaded in this
    process (ASan, jemalloc, tcmalloc, mimalloc), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                base = os.path.basename(line.rstrip("\n").split(" ")[-1])
                for prefix in FOREIGN_ALLOCATORS:
                    if base.startswith(prefix):
                        return prefix[3:]
    except OSError:
        return None
    return None
