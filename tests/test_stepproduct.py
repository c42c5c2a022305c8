"""The per-step recurrent product in column blocks (charrnn/fast/stepproduct.py)."""

import numpy as np
import pytest

from charrnn.fast import stepproduct
from charrnn.fast.stepproduct import SMALL_PRODUCT, StepProduct, block_width
from charrnn.tools import gradcheck
from tests.conftest import CELL_CASES, tiny_model
from tests.test_model import assert_fast_equals_slow_reference


@pytest.mark.parametrize("rows,k,n", [(25, 128, 512), (25, 512, 2048), (25, 2048, 512),
                                      (16, 256, 1024), (25, 192, 768), (50, 100, 300),
                                      (1, 512, 2048), (25, 1000, 1009), (3, 4, 16)])
def test_block_width_is_the_widest_divisor_under_the_bound(rows, k, n):
    width = block_width(rows, k, n)
    assert n % width == 0
    if rows == 1 or rows * k * n <= SMALL_PRODUCT:
        assert width == n                        # small already, or a matrix-vector product
    elif width < n:
        assert width >= stepproduct.MIN_BLOCK and rows * k * width <= SMALL_PRODUCT
        assert not any(n % w == 0 and rows * k * w <= SMALL_PRODUCT for w in range(width + 1, n))
    else:                                        # no divisor fits (1009 is prime): one product
        assert not any(n % w == 0 and rows * k * w <= SMALL_PRODUCT
                       for w in range(stepproduct.MIN_BLOCK, n))


@pytest.mark.parametrize("width", [3, 4, 6, 12])
@pytest.mark.parametrize("transposed", [False, True])
def test_into_and_add_to_are_the_product(width, transposed):
    rng = np.random.default_rng(0)
    m = rng.standard_normal((12, 7)).T if transposed else rng.standard_normal((7, 12))
    gates = rng.standard_normal((3, 5, 12))          # out is one step of a [T, B, N] array
    x = rng.standard_normal((5, 7))
    product = StepProduct(m, rows=5, width=width)
    assert product.blocks == 12 // width
    before = gates.copy()
    product.add_to(x, gates[1])
    np.testing.assert_allclose(gates[1], before[1] + x @ m, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(gates[[0, 2]], before[[0, 2]])   # the other steps untouched
    out = np.full((5, 12), np.nan)
    assert product.into(x, out) is out
    np.testing.assert_allclose(out, x @ m, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="does not divide"):
        StepProduct(m, rows=5, width=5)


@pytest.mark.parametrize("width", [None, 1, 2, 3, 6])
def test_grouped_products_write_each_group_as_its_own_block(width):
    """groups=4: out [4, rows, N/4], group g = columns g*N/4 .. (the LSTM's gate-major gates)."""
    rng = np.random.default_rng(1)
    m = rng.standard_normal((7, 24))
    x = rng.standard_normal((5, 7))
    gates = rng.standard_normal((3, 4, 5, 6))          # out is one step of a [T, 4, B, H] array
    product = StepProduct(m, rows=5, width=width, groups=4)
    expected = (x @ m).reshape(5, 4, 6).transpose(1, 0, 2)
    before = gates.copy()
    product.add_to(x, gates[1])
    np.testing.assert_allclose(gates[1], before[1] + expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(gates[[0, 2]], before[[0, 2]])
    out = np.full((4, 5, 6), np.nan)
    assert product.into(x, out) is out
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="does not divide"):
        StepProduct(m, rows=5, width=4, groups=4)
    with pytest.raises(ValueError, match="groups do not divide"):
        StepProduct(m, rows=5, groups=5)


@pytest.mark.parametrize("steps", [None, 5, stepproduct.COPY_MIN_STEPS])
def test_one_row_is_one_product_for_all_groups(steps):
    """rows = 1: [G, 1, N/G] is [1, N] in memory, so one product serves every group; over
    fewer than COPY_MIN_STEPS steps a transposed weight is used as it is, not copied."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((24, 7))
    product = StepProduct(w.T, rows=1, groups=4, steps=steps)
    assert product.blocks == 1
    assert (product.m.base is w) == (steps == 5)      # the view itself, or a contiguous copy
    x = rng.standard_normal((1, 7))
    expected = (x @ w.T).reshape(4, 1, 6)
    gates = rng.standard_normal((4, 1, 6))
    before = gates.copy()
    product.add_to(x, gates)
    np.testing.assert_allclose(gates, before + expected, rtol=0, atol=1e-12)
    out = np.full((4, 1, 6), np.nan)
    assert product.into(x, out) is out
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="C-contiguous"):   # not a product written into a copy
        product.into(x, np.zeros((4, 2, 6))[:, :1])


def test_one_block_without_small_kernels(monkeypatch):
    monkeypatch.setattr(stepproduct.blas, "has_small_matrix_kernels", lambda: False)
    assert StepProduct(np.zeros((512, 2048), np.float32), rows=25).blocks == 1
    monkeypatch.setattr(stepproduct.blas, "has_small_matrix_kernels", lambda: True)
    assert StepProduct(np.zeros((512, 2048), np.float32), rows=25).blocks == 32


@pytest.fixture
def blocked(monkeypatch):
    """Every recurrent product of the tiny test models cut into blocks: the widest proper
    divisor of the column count (so 2, 6 and 8 columns for N = 4, 12 and 16)."""
    def widest_proper_divisor(rows, k, n):
        return max(d for d in range(1, n) if n % d == 0)
    monkeypatch.setattr(stepproduct.blas, "has_small_matrix_kernels", lambda: True)
    monkeypatch.setattr(stepproduct, "block_width", widest_proper_divisor)
    assert StepProduct(np.zeros((4, 16)), rows=4).blocks == 2


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
@pytest.mark.parametrize("layers,dropout", [(2, 0.0), (3, 0.25)])
@pytest.mark.parametrize("vocab", [5, 60])
def test_blocked_products_give_the_reference_gradients(blocked, cell, nonlinearity, layers,
                                                       dropout, vocab):
    assert_fast_equals_slow_reference(cell, nonlinearity, layers, dropout, vocab)


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
def test_blocked_products_pass_the_gradient_check(blocked, cell, nonlinearity):
    model = tiny_model(cell, nonlinearity, 2)
    worst = max(gradcheck.check_model(model, batch=3, steps=10, seed=2), key=lambda r: r.max_rel_error)
    assert worst.max_rel_error < 1e-6, f"{worst.name}: {worst.max_rel_error:.2e}"
