"""The recurrent cells, one module each, and the registry that everything else reads.

A cell module holds everything about its cell (see docs/adding-a-cell.md); contract.py declares
it as types (Cell: the core; BatchOneStep: the fast path of sampling) and the registry checks
every module against them:

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
    <name>.js, beside the module: the same step in JavaScript for the page of `charrnn export`
             (script_path finds it; the cell tests require it)
    reference_step, reference_step_backward
             the textbook step, plain and slow (charrnn/nn/reference.py)
    WEIGHTS  optional: the per-layer parameters it has, from LAYER_WEIGHTS (default all four).
             A cell without "weight_hh" (minGRU, minLSTM: no product with the previous state)
             has neither weight_hh nor bias_hh: its forward and reference_step get None for
             them, its backward returns no gradient for them, its reference_step_backward
             returns None as the hidden-side gradient, and the batch-1 step multiplies only
             [x, 1] (layer 0: no product, the table row is the whole input side)

The model, the sampler, the config and CLI choices, gradcheck, diagnose and the tests all take
the list of cells from CELLS.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from charrnn.nn.cells.contract import check
from charrnn.nn.cells.projection import TokenInput

NAMES = ("rnn", "gru", "lstm", "mingru", "minlstm")     # a new cell: its module's name here (docs/adding-a-cell.md)

# each module is checked against the declared contract (contract.py) as it is registered
CELLS: dict[str, ModuleType] = {name: check(name, importlib.import_module(f"{__name__}.{name}"))
                                for name in NAMES}

LAYER_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

__all__ = ["CELLS", "LAYER_WEIGHTS", "NAMES", "TokenInput", "get", "has_recurrent_weights",
           "script_path", "weights_of"]


def get(name: str) -> ModuleType:
    """The module of the cell `name`; ValueError naming the known cells otherwise."""
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(CELLS)}") from None


def weights_of(module: ModuleType) -> tuple[str, ...]:
    """The per-layer parameters of a cell module: its WEIGHTS, or all of LAYER_WEIGHTS."""
    return tuple(getattr(module, "WEIGHTS", LAYER_WEIGHTS))


def nonlinearities_of(module: ModuleType) -> tuple[str, ...]:
    """The model.nonlinearity values a cell accepts: its NONLINEARITIES, or ("tanh",) for a cell
    whose activations are fixed."""
    return tuple(getattr(module, "NONLINEARITIES", ("tanh",)))


def has_recurrent_weights(module: ModuleType) -> bool:
    """Whether the cell multiplies its previous state by weight_hh (False: minGRU, minLSTM)."""
    return "weight_hh" in weights_of(module)


def script_path(module: ModuleType) -> str:
    """The path of the cell's JavaScript step, <module>.js beside <module>.py (it may be
    missing: the cell tests check that it is not)."""
    return os.path.splitext(module.__file__)[0] + ".js"
