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
import sys
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


def prefer_avx2_kernels(cpuinfo: str = "/proc/cpuinfo", environ=os.environ, modules=sys.modules) -> bool:
    """On AMD Zen 3/4 (CPU family 25), ask OpenBLAS for its Haswell (AVX2) kernels instead of
    the SkylakeX (AVX-512) ones it picks for a Zen 4; True if it did.

    Zen 4 runs AVX-512 as two 256-bit halves, so the wider kernels gain nothing there, and for
    the small-row products of a training step they are slower: on the 2-core Zen 4 bench
    machine, one thread, the recurrent product [25, 512] x [512, 2048] took 950 us with SkylakeX
    kernels and 760 us with Haswell's, the [1250, 512] x [512, 128] gradient products 1.75 ms
    and 1.60 ms; `charrnn bench --cell lstm` trained 3-27% faster at H=128 and -1-8% at H=512
    (three interleaved pairs each). OpenBLAS reads OPENBLAS_CORETYPE once, when NumPy loads
    it, so this must run before NumPy is imported (charrnn/__init__.py); it changes nothing
    when NumPy is already loaded, when the variable is set, or on any other CPU.
    """
    if "OPENBLAS_CORETYPE" in environ or "numpy" in modules:
        return False
    try:
        with open(cpuinfo) as f:
            head = [next(f, "") for _ in range(40)]
    except OSError:
        return False
    info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in head)}
    if info.get("vendor_id") == "AuthenticAMD" and info.get("cpu family") == "25":
        environ["OPENBLAS_CORETYPE"] = "Haswell"
        return True
    return False
