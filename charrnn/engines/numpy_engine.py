"""The numpy engine: the model's own forward and backward (charrnn/nn/model.py) and charrnn's
optimizers over flat buffers, in this process or with the batch split over worker processes.

Where a step is computed is a stepper with three calls,

    loss, state, _ = stepper.loss_and_grad(ids, targets, state, train=True, rng=rng)
    norm = stepper.grad_norm()             # L2 norm of model.grads, before clipping
    stepper.update(lr, coef)               # grads *= coef where coef < 1, then one optimizer step

`Local` runs them here; charrnn.fast.parallel.DataParallel splits them over cores. Both share
everything else (the model, the optimizer, the carried state, the checkpoint's arrays), which is
why they are one engine with two steppers rather than two engines.
"""

from __future__ import annotations

import numpy as np

from charrnn.engines.base import (Clip, EngineState, StepFigures, carried, clip_in_place,
                                  refuse_torchrun)
from charrnn.fast.parallel import DataParallel, auto_workers
from charrnn.nn.model import CharRNN
from charrnn.optim import Optimizer, flatten_state, make_optimizer, unflatten_state


class Local:
    """The step in this process: the model's own loss_and_grad and the optimizer's step."""

    workers = 1

    def __init__(self, model: CharRNN, optimizer: Optimizer):
        self.model, self.optimizer = model, optimizer
        self.loss_and_grad = model.loss_and_grad

    def grad_norm(self) -> float:
        return self.model.grads.norm()

    def update(self, lr: float, coef: float = 1.0) -> None:
        if coef < 1.0:
            np.multiply(self.model.grads.flat, coef, out=self.model.grads.flat)
        self.optimizer.step(self.model.grads, lr)

    def worker_memory_mb(self) -> list:
        return []

    def close(self) -> None:
        pass


def worker_count(train_cfg, saved_workers: int | None = None) -> int:
    """train.threads; with `null`, a resumed run keeps the count it was saved with
    (saved_workers): the shards, and so the dropout masks and the float sums, are then the
    same as if it had never stopped, even on a machine with another number of cores."""
    if train_cfg.threads is not None:
        workers = train_cfg.threads
    elif saved_workers is not None:
        workers = saved_workers
    else:
        workers = auto_workers(train_cfg.batch_size)
    return min(workers, train_cfg.batch_size)


def make_stepper(model: CharRNN, optimizer: Optimizer, workers: int):
    """Local, or DataParallel over `workers` processes."""
    return DataParallel(model, optimizer, workers) if workers > 1 else Local(model, optimizer)


class NumpyEngine:
    """The numpy engine (engines/base.py's Engine): `model` is trained in place."""

    name = "numpy"
    writer = True                            # one process writes its run

    def __init__(self, model: CharRNN, train_cfg, saved_workers: int | None = None):
        refuse_torchrun(self.name)
        self.model = model
        self.optimizer = make_optimizer(None, model.params, train_cfg)
        self.stepper = self.make_stepper(train_cfg, saved_workers)
        self.workers = self.stepper.workers
        self.carry: tuple | None = None       # the state the last update left
        self._next = self._coef = None        # of the last gradient, until its update

    def make_stepper(self, train_cfg, saved_workers: int | None):
        """Where the gradient and update are computed: Local or DataParallel (a subclass may
        give another stepper with the same three calls)."""
        return make_stepper(self.model, self.optimizer, worker_count(train_cfg, saved_workers))

    def gradient(self, ids, targets, reset, rng, clip: Clip) -> StepFigures:
        state = carried(self.carry, reset)
        loss, self._next, _ = self.stepper.loss_and_grad(ids, targets, state, train=True, rng=rng)
        norm, self._coef = clip_in_place(self.model.grads, clip, self.stepper.grad_norm)
        return StepFigures(loss, norm)

    def update(self, lr: float) -> None:
        self.stepper.update(lr, self._coef)
        self.carry = self._next

    def inference_model(self) -> CharRNN:
        return self.model

    def state(self) -> EngineState:
        tensors, scalars = flatten_state(self.optimizer.state_dict())
        return EngineState(dict(self.model.params.items()), tensors, scalars, self.carry or ())

    def restore(self, optim, optim_scalars, carry) -> None:
        self.optimizer.load_state_dict(unflatten_state(optim, optim_scalars))
        self.carry = tuple(np.asarray(c, self.model.dtype) for c in carry) or None

    def worker_memory_mb(self) -> list:
        return self.stepper.worker_memory_mb()

    def agree(self, flag: bool) -> bool:
        return flag                          # one process

    def close(self) -> None:
        self.stepper.close()


ENGINE = NumpyEngine
