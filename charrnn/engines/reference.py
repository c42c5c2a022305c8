"""The reference engine: training steps computed by the textbook model (charrnn/nn/reference.py).

Plain loops over time, batch and layers, float64, no dropout: slow, and obviously right. It is
the numpy engine with another stepper, so it shares its optimizers, clipping, carried state and
checkpoint arrays, and a whole run on it and on the numpy engine differs only by the float
rounding of the forward and backward passes (tests/test_engines.py: the same weights to 1e-9
after a short run). Validation and samples use the CharRNN holding its weights.
"""

from __future__ import annotations

import numpy as np

from charrnn.engines.numpy_engine import Local, NumpyEngine
from charrnn.errors import UsageError
from charrnn.nn.model import CharRNN
from charrnn.nn.reference import reference_loss_and_grads


class ReferenceStepper(Local):
    """Local's three calls, with the loss and gradient of the textbook model."""

    def __init__(self, model: CharRNN, optimizer):
        super().__init__(model, optimizer)
        self.loss_and_grad = self._textbook

    def _textbook(self, ids, targets, state, train=True, rng=None):
        if targets.min() < 0:
            raise UsageError("train.engine reference does not score padded targets (documents "
                             "mode); use train.engine numpy")
        if state is None:
            state = self.model.initial_state(ids.shape[0])
        loss, _, state, grads, _ = reference_loss_and_grads(
            dict(self.model.params.items()), self.model.spec, ids, targets, state)
        self.model.grads.copy_from(grads)
        return float(loss), state, None


class ReferenceEngine(NumpyEngine):
    """engines/base.py's Engine over nn/reference.py. UsageError for what the textbook model
    does not do: float32, dropout, documents mode's padded targets."""

    name = "reference"

    def __init__(self, model: CharRNN, train_cfg, saved_workers: int | None = None):
        if model.dtype != np.float64:
            raise UsageError("train.engine reference computes in float64; set train.dtype=float64")
        if model.dropout:
            raise UsageError("train.engine reference has no dropout; set model.dropout=0")
        super().__init__(model, train_cfg, saved_workers)

    def make_stepper(self, train_cfg, saved_workers: int | None):
        return ReferenceStepper(self.model, self.optimizer)


ENGINE = ReferenceEngine
