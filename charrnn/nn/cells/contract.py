"""What a cell module must provide, declared as types that the registry checks at import.

Shape key: T time, B batch, D input size, H hidden, G = len(GATES) gate blocks.

`Cell` is the core every cell has: its math (sequence forward and backward), its textbook step
(the tests' yardstick, charrnn/nn/reference.py) and what `inspect` and `gradcheck` read from a
forward's cache. `BatchOneStep` is the fast path of sampling (charrnn/nn/stepper.py); the
stepper has no generic fallback yet, so the registry requires it too, but it is declared apart
so that a cell's math can be written and checked before its fast path. `OPTIONAL` names what
a cell may declare and what is assumed when it does not.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Protocol, runtime_checkable


@runtime_checkable
class Cell(Protocol):
    """The core of a cell module (docs/adding-a-cell.md)."""

    GATES: tuple      # gate block names in the row order of weight_ih / weight_hh (PyTorch's)
    STATE: tuple      # state array names, h first: ("h",) or ("h", "c")

    def forward(self, x, state0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh"):
        """x [T, B, D] (or a TokenInput), state0 tuple of [B, H] -> (out [T, B, H], state, cache)."""

    def backward(self, dout, dstate, cache, grads=None, dh_trace=None):
        """dout [T, B, H], dstate tuple of [B, H] -> (dx, dstate0, grads by weight name)."""

    def trace(self, cache):
        """{name: [T, B, H]}: each STATE array after each step and each gate's activation."""

    def kinks(self, cache):
        """Where a non-smooth activation sits (bytes), or None: for finite-difference checks."""

    def reference_step(self, x, state, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh"):
        """The textbook step, plain and slow: x [D], state tuple of [H] -> (state, saved)."""

    def reference_step_backward(self, dstate, saved):
        """The textbook step's backward -> (dx, dstate, weight gradients)."""


@runtime_checkable
class BatchOneStep(Protocol):
    """The fast batch-1 step of sampling (charrnn/nn/stepper.py)."""

    def step_columns(self, w_t, side):
        """The stacked weight's columns for this cell: reordered, pre-scaled."""

    def step_layout(self, H):
        """(buffer width, product columns, table columns, {extra state: columns})."""

    def step_body(self, buf, h, tmp, nonlinearity="tanh"):
        """The element-wise work after the products, in place."""


# optional declarations: name -> what a cell that does not declare it gets
OPTIONAL = {
    "WEIGHTS": "all of weight_ih, weight_hh, bias_ih, bias_hh",
    "NONLINEARITIES": '("tanh",): fixed activations',
}


class CellContractError(TypeError):
    """A cell module that lacks part of the contract; raised at import, naming what is missing."""


def check(name: str, module: ModuleType) -> ModuleType:
    """`module` if it satisfies Cell and BatchOneStep; CellContractError naming the missing
    members otherwise."""
    missing = [member for kind in (Cell, BatchOneStep) if not isinstance(module, kind)
               for member in members(kind) if not hasattr(module, member)]
    if missing:
        raise CellContractError(f"the cell module {name} lacks {', '.join(missing)} "
                                f"(charrnn/nn/cells/contract.py)")
    return module


def members(kind) -> list[str]:
    """The names a Protocol above declares: its annotated constants, then its functions."""
    functions = [n for n, v in vars(kind).items() if callable(v) and not n.startswith("_")]
    return list(inspect.get_annotations(kind)) + functions
