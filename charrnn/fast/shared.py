"""Memory shared with forked worker processes: their writes and ours are the same writes."""

from __future__ import annotations

import mmap

import numpy as np


def shared_zeros(size: int, dtype) -> np.ndarray:
    """A zero-filled 1-D array in an anonymous MAP_SHARED mapping (inherited by forked
    processes)."""
    dtype = np.dtype(dtype)
    buffer = mmap.mmap(-1, max(1, size * dtype.itemsize))
    return np.frombuffer(buffer, dtype=dtype, count=size)


def share(params) -> None:
    """Move a FlatParams' buffer, values included, into shared memory (before forking)."""
    flat = shared_zeros(params.size, params.dtype)
    flat[...] = params.flat
    params.rebind(flat)
