"""The recurrent cells, one module each, and the registry that everything else reads.

A cell module holds everything about its cell (see docs/adding-a-cell.md):

    GATES    the names of its gate blocks, in the order of the rows of weight_ih / weight_hh
             (G = len(GATES); PyTorch's order, so checkpoints load into torch.nn.RNN/GRU/LSTM)
    STATE    the names of its state arrays, h first: ("h",) or ("h", "c")
    forward(x, state0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh") -> (out, state, cache)
    backward(dout, dstate, cache, grads=None, dh_trace=None) -> (dx, dstate0, grads)
             the sequence kernels over T steps (x [T, B, D] or a TokenInput, state tuples of
             [B, H]; grads a dict weight_ih, weight_hh, bias_ih, bias_hh); the backward may
             consume its cache
    trace(cache) -> {name: [T, B, H]}
             every STATE array after each step, and each gate's activation, by name, read
             from forward's cache (`charrnn inspect` shows them)
    kinks(cache) -> bytes | None
             where a non-smooth activation sits (relu), for finite-difference checks
    step_columns, step_layout, step_body
             the batch-1 step that sampling uses (charrnn/nn/stepper.py)
    reference_step, reference_step_backward
             the textbook step, plain and slow (charrnn/nn/reference.py)

The model, the sampler, the config and CLI choices, gradcheck, diagnose and the tests all take
the list of cells from CELLS.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from charrnn.nn.cells.projection import TokenInput

NAMES = ("rnn", "gru", "lstm")     # a new cell: its module's name here (docs/adding-a-cell.md)

CELLS: dict[str, ModuleType] = {name: importlib.import_module(f"{__name__}.{name}")
                                for name in NAMES}

__all__ = ["CELLS", "NAMES", "TokenInput", "get"]


def get(name: str) -> ModuleType:
    """The module of the cell `name`; ValueError naming the known cells otherwise."""
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(CELLS)}") from None
