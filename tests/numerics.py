"""Tolerances derived from the dtype and the operation, for results that another machine may round
differently (another CPU, another BLAS kernel: `OPENBLAS_CORETYPE`, see docs/design.md).

A BLAS kernel may sum a product's terms in any order and with or without fused multiply-adds, so
two machines agree on a float32 result only to its rounding. Bit-equality is asserted only where
the same machine repeats the same operations (resume equals uninterrupted, a seed's repeat).
"""

import math

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)   # 1.19e-7: one rounding of a float32 result, relative
EPS64 = float(np.finfo(np.float64).eps)   # 2.22e-16


def sum_rtol(n_terms: int, eps: float = EPS32) -> float:
    """The relative rounding of a sum of n terms that each carry one rounding of their own:
    independent roundings add like a random walk, sqrt(n) * eps."""
    return math.sqrt(n_terms) * eps


def dot_bound(n_terms: int, eps: float = EPS32) -> float:
    """The worst-case rounding of a dot product of n terms, relative to the sum of the terms'
    magnitudes (Higham's gamma_n ~ n * eps): any summation order, any kernel."""
    return n_terms * eps
