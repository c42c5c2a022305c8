"""How many threads NumPy's BLAS (OpenBLAS) uses, read and set at run time.

OpenBLAS reads OPENBLAS_NUM_THREADS only when it is loaded, long before a command runs, so the
count is changed through the library's own `openblas_set_num_threads`, found among the shared
libraries mapped into this process (NumPy's wheel ships it as scipy_openblas). A call costs
about a microsecond, so it can be changed around every training step. With another BLAS (MKL,
Accelerate) nothing is found: `get_threads` and `set_threads` return None and change nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

_functions: dict[str, object] | None = None


def _find() -> dict[str, object]:
    """{'get': fn, 'set': fn} of the OpenBLAS in this process (empty if there is none)."""
    global _functions
    if _functions is not None:
        return _functions
    import numpy  # noqa: F401 - maps NumPy's BLAS into the process

    found: dict[str, object] = {}
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "openblas" in os.path.basename(path).lower() and ".so" in path:
                    paths.add(path)
    except OSError:
        paths = set()
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for tail in ("64_", ""):
                getter = getattr(lib, f"{prefix}_get_num_threads{tail}", None)
                setter = getattr(lib, f"{prefix}_set_num_threads{tail}", None)
                if getter is not None and setter is not None and not found:
                    found = {"get": getter, "set": setter}
                    core = getattr(lib, f"{prefix}_get_corename{tail}", None)
                    if core is not None:
                        core.restype = ctypes.c_char_p
                        found["corename"] = core
    _functions = found
    return found


def get_threads() -> int | None:
    """The number of threads the BLAS uses now (None if it cannot be read)."""
    fns = _find()
    return int(fns["get"]()) if fns else None


def set_threads(n: int) -> int | None:
    """Use n BLAS threads from now on; returns the count in effect (None if not controllable)."""
    fns = _find()
    if not fns:
        return None
    fns["set"](ctypes.c_int(n))
    return get_threads()


# OpenBLAS kernel sets with a small-matrix sgemm path (no packing for M*N*K <= 100^3)
SMALL_MATRIX_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def corename() -> str | None:
    """The name of the kernel set OpenBLAS runs (e.g. 'Haswell', 'SkylakeX'), or None."""
    fns = _find()
    if "corename" not in fns:
        return None
    return fns["corename"]().decode("ascii", "replace")


def has_small_matrix_kernels() -> bool:
    """Whether products with M*N*K <= 100^3 take OpenBLAS's unpacked small-matrix path
    (charrnn/stepproduct.py)."""
    name = corename()
    return name is not None and name.lower() in SMALL_MATRIX_CORES


@contextlib.contextmanager
def limited(n: int) -> Iterator[None]:
    """Within the block, the BLAS uses at most n threads; the count before is restored after."""
    before = get_threads()
    if before is None or before <= n:
        yield
        return
    set_threads(n)
    try:
        yield
    finally:
        set_threads(before)
