"""Keep freed memory in the process, so each training step does not page-fault its buffers in.

A training step allocates a few [T, B, G*H] arrays (gates, their gradients, ...) of megabytes
each. glibc serves blocks that large with mmap and returns them to the kernel when freed, so
the next step's arrays arrive as fresh zero pages and every first write takes a page fault.
Keeping freed blocks in the heap ends that (a large gain in chars/s: docs/performance.md); peak
RSS is unchanged, since the same blocks are reused step after step.

One arena (M_ARENA_MAX = 1): the data-parallel step (charrnn/fast/parallel.py) allocates from
several threads, and glibc would give each its own arena, each keeping its own freed blocks;
with one, a block freed by one worker serves the next allocation of any (a lower peak RSS at the
same speed; the few large allocations per step hardly contend for its lock).

Only glibc (Linux) has mallopt; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1   # mallopt parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
_done = False


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Serve blocks below `limit_bytes` from the heap and never trim it; True if it took effect."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, int(limit_bytes)) == 1
    ok = mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    ok = mallopt(M_ARENA_MAX, 1) == 1 and ok
    _done = ok
    return ok
