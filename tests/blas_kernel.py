"""Which OpenBLAS kernel set NumPy runs here, and which other one the second CI pass forces.

    python -m tests.blas_kernel           the kernel in use, e.g. "OpenBLAS kernel: Haswell"
    python -m tests.blas_kernel --other   the kernel `make test-kernels` forces instead

Another kernel rounds float32 products differently (another summation order, FMA or not), so a
test that passes under both depends on no one machine's rounding. Where this CPU picks an
AVX-512 kernel set the other is Haswell (AVX2), else Sandybridge (AVX): both run on any x86-64
CPU of the last decade.
"""

import os
import sys

from charrnn.fast import blas

AVX512_KERNELS = ("skylakex", "cooperlake", "sapphirerapids")


def describe() -> str:
    """One line: the kernel set in use and whether OPENBLAS_CORETYPE forced it."""
    name = blas.corename() or "none found (not OpenBLAS)"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return f"OpenBLAS kernel: {name}" + (f" (forced: OPENBLAS_CORETYPE={forced})" if forced else "")


def other_kernel(picked: str | None) -> str:
    """The kernel set to force for the second pass, given the one this CPU picks."""
    return "Haswell" if (picked or "").lower() in AVX512_KERNELS else "Sandybridge"


if __name__ == "__main__":
    print(other_kernel(blas.corename()) if "--other" in sys.argv[1:] else describe())
