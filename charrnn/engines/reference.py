"""The reference engine: training steps computed by the textbook model (charrnn/nn/reference.py).

Plain loops over time, batch and layers, float64, no dropout: slow, and obviously right. It
shares the numpy engine's optimizers and clipping (charrnn/optim.py), so a whole run on it and
on the numpy engine differs only by the float rounding of the forward and backward passes
(tests/test_engines.py: the same weights to 1e-9 after a short run). Validation and samples use
a CharRNN holding its weights.
"""

from __future__ import annotations

import numpy as np

from charrnn.engines.base import (Clip, EngineState, StepFigures, carried, clip_in_place,
                                  refuse_torchrun)
from charrnn.errors import UsageError
from charrnn.nn.model import CharRNN
from charrnn.nn.reference import reference_loss_and_grads
from charrnn.optim import flatten_state, make_optimizer, unflatten_state


class ReferenceEngine:
    """engines/base.py's Engine over nn/reference.py. UsageError for what the textbook model
    does not do: float32, dropout, documents mode's padded targets."""

    writer = True                            # one process writes its run

    workers = 1

    def __init__(self, model: CharRNN, train_cfg, saved_workers: int | None = None):
        refuse_torchrun("reference")
        if model.dtype != np.float64:
            raise UsageError("train.engine reference computes in float64; set train.dtype=float64")
        if model.dropout:
            raise UsageError("train.engine reference has no dropout; set model.dropout=0")
        self.model = model                               # its weights, for validation and samples
        self.params, self.grads = model.params, model.grads
        self.optimizer = make_optimizer(None, self.params, train_cfg)
        self.carry: tuple | None = None
        self._next = self._coef = None

    def gradient(self, ids, targets, reset, rng, clip: Clip) -> StepFigures:
        if targets.min() < 0:
            raise UsageError("train.engine reference does not score padded targets (documents "
                             "mode); use train.engine numpy")
        state = carried(self.carry, reset)
        if state is None:
            state = self.model.initial_state(ids.shape[0])
        loss, _, self._next, grads, _ = reference_loss_and_grads(
            dict(self.params.items()), self.model.spec, ids, targets, state)
        self.grads.copy_from(grads)
        norm, self._coef = clip_in_place(self.grads, clip)
        return StepFigures(float(loss), norm)

    def update(self, lr: float) -> None:
        if self._coef < 1.0:
            np.multiply(self.grads.flat, self._coef, out=self.grads.flat)
        self.optimizer.step(self.grads, lr)
        self.carry = self._next

    def inference_model(self) -> CharRNN:
        return self.model

    def state(self) -> EngineState:
        tensors, scalars = flatten_state(self.optimizer.state_dict())
        return EngineState(dict(self.params.items()), tensors, scalars, self.carry or ())

    def restore(self, optim, optim_scalars, carry) -> None:
        self.optimizer.load_state_dict(unflatten_state(optim, optim_scalars))
        self.carry = tuple(np.asarray(c, np.float64) for c in carry) or None

    def agree(self, flag: bool) -> bool:
        return flag                          # one process

    def close(self) -> None:
        pass


ENGINE = ReferenceEngine
