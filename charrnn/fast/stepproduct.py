"""The recurrent product of every time step, x_t M, cut into blocks that OpenBLAS multiplies
without repacking the weights.

OpenBLAS copies ("packs") both operands of a matrix product into its own layout before it
multiplies. For a time step's recurrent product, x_t [B, K] M [K, N] with B of a few dozen
rows, packing M costs about as much as a third of the product, and it is paid again at every
step. Where OpenBLAS runs its AVX-512 kernel set (SkylakeX, Cooperlake, SapphireRapids: the
one it picks on Intel AVX-512 CPUs and on AMD Zen 4), a product with M*N*K <= 100^3 instead
takes a "small matrix" path that multiplies straight from the operands. So M's columns are cut
into nb blocks of n columns with B*K*n under that bound, stacked once per sequence into one
[nb, K, n] array, and each step's product is one np.matmul over the stack (NumPy calls sgemm
once per block), written straight into the result's blocks, or for out += x M into an
[nb, B, n] buffer that is then added.

Measured gains: docs/performance.md.
Elsewhere (other kernel sets, or another BLAS) the product is one np.dot, as before.
"""

from __future__ import annotations

import numpy as np

from charrnn.fast import blas

SMALL_PRODUCT = 100 ** 3      # OpenBLAS's bound on M*N*K for its small-matrix sgemm path
MIN_BLOCK = 8                 # a guess, not measured: narrower blocks mean many more calls
# A one-row product from a transposed view runs ~15% slower than from a contiguous copy, and
# the copy of a [4H, H] weight costs about 20 such products: below this many steps, no copy
COPY_MIN_STEPS = 128


def block_width(rows: int, k: int, n: int) -> int:
    """The column-block width for products [rows, k] x [k, n]: n itself when the product is
    small already, cannot be cut, or has one row (OpenBLAS hands that to its matrix-vector
    kernel, faster still; from two rows on, blocks win: docs/performance.md), else the widest
    divisor of n
    (at least MIN_BLOCK) that keeps rows * k * width <= SMALL_PRODUCT."""
    if rows < 2 or rows * k * n <= SMALL_PRODUCT:
        return n
    widest = SMALL_PRODUCT // max(1, rows * k)
    for width in range(min(widest, n), MIN_BLOCK - 1, -1):
        if n % width == 0:
            return width
    return n


class StepProduct:
    """y = x M for one M [K, N] and many x [rows, K] (the steps of one sequence).

    The result is out [rows, N], or with groups=G, out [G, rows, N/G]: group g holds columns
    g*N/G .. (g+1)*N/G - 1, each as its own contiguous [rows, N/G] block (the LSTM's gate-major
    layout, cells.py). Blocks never straddle two groups.
    width: the column-block width (default: block_width of a group's N/G columns where OpenBLAS
    has small-matrix kernels, else N/G: one np.dot per product, or with groups one sgemm per
    group).
    steps: how many products this one will do (None: many). A one-row product over fewer than
    COPY_MIN_STEPS steps multiplies from m as given, a transposed view included, instead of
    copying it first (dynamic evaluation's short segments; docs/performance.md).
    """

    def __init__(self, m: np.ndarray, rows: int, width: int | None = None, groups: int = 1,
                 steps: int | None = None):
        k, n = m.shape
        if n % groups:
            raise ValueError(f"{groups} groups do not divide the {n} columns")
        group = n // groups
        if width is None:
            width = block_width(rows, k, group) if blas.has_small_matrix_kernels() else group
        if group % width:
            raise ValueError(f"block width {width} does not divide the {group} columns of a group")
        if rows == 1 and width == group:
            width = n              # [G, 1, N/G] is [1, N] in memory: one product for all groups
        self.rows, self.n, self.width, self.groups = rows, n, width, groups
        self.blocks = n // width
        self.per_group = group // width
        if self.blocks == 1:
            few = rows == 1 and steps is not None and steps < COPY_MIN_STEPS
            self.m = m if few else np.ascontiguousarray(m)   # a view multiplies slower
            self.buf = np.empty((rows, n), m.dtype)
        else:          # [nb, K, width]: block j holds columns j*width .. (j+1)*width - 1
            self.m = np.ascontiguousarray(m.reshape(k, self.blocks, width).transpose(1, 0, 2))
            if groups > 1:                         # [G, nb/G, K, width], a view
                self.m = self.m.reshape(groups, self.per_group, k, width)
            self.buf = np.empty(self.m.shape[:-2] + (rows, width), m.dtype)

    def _split(self, out: np.ndarray) -> np.ndarray:
        """out (C-contiguous [rows, N], or [G, rows, N/G]) seen block by block as self.buf:
        [nb, rows, width], or with groups [G, nb/G, rows, width]."""
        if self.groups == 1:
            return out.reshape(self.rows, self.blocks, self.width).transpose(1, 0, 2)
        return out.reshape(self.groups, self.rows, self.per_group, self.width).transpose(0, 2, 1, 3)

    def _rows(self, out: np.ndarray) -> np.ndarray:
        """out (C-contiguous [rows, N], or [G, 1, N/G]) as a [rows, N] view of its memory;
        ValueError for a strided out, whose reshape would be a copy that the product is lost in."""
        if not out.flags.c_contiguous:
            raise ValueError("the product's out must be C-contiguous")
        return out.reshape(self.rows, self.n)

    def into(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out = x M.  x [rows, K], out as in the class docstring."""
        if self.blocks == 1:
            np.dot(x, self.m, out=self._rows(out))
            return out
        # each block's [rows, width] slice of out has a unit column stride, so NumPy hands it
        # to sgemm as it is (ldc = N): no buffer and copy
        np.matmul(x, self.m, out=self._split(out))
        return out

    def add_to(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out += x M.  x [rows, K], out as in the class docstring."""
        if self.blocks == 1:
            np.dot(x, self.m, out=self.buf)
            flat = self._rows(out)
            np.add(flat, self.buf, out=flat)
            return out
        np.matmul(x, self.m, out=self.buf)
        view = self._split(out)
        np.add(view, self.buf, out=view)
        return out
