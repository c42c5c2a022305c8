"""Shared test fixtures and helpers: the cells to test (read from the registry), tiny models."""

import numpy as np
import pytest

from charrnn.config import ModelConfig
from charrnn.nn.cells import CELLS
from charrnn.nn.model import CharRNN

# every registered cell, with each of its nonlinearities: a new cell is tested by registering it
CELL_CASES = [(name, nonlinearity) for name, module in CELLS.items()
              for nonlinearity in getattr(module, "NONLINEARITIES", ("tanh",))]


def tiny_model(cell="lstm", nonlinearity="tanh", layers=2, *, hidden=4, embed=3, vocab=5,
               dropout=0.0, dtype=np.float64, seed=0, **spec):
    """A CharRNN small enough for finite differences and the slow reference."""
    config = ModelConfig(cell=cell, nonlinearity=nonlinearity, layers=layers, hidden_size=hidden,
                         embed_size=embed, dropout=dropout, **spec)
    return CharRNN(vocab_size=vocab, spec=config, dtype=dtype, seed=seed)


@pytest.fixture(params=CELL_CASES, ids=lambda case: "-".join(case))
def cell_case(request):
    """(cell, nonlinearity) of every registered cell."""
    return request.param
