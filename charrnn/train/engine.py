"""Where a training step's gradient and update are computed: here, or over worker processes.

The loop makes the same three calls whichever it is given:

    loss, state, _ = engine.loss_and_grad(ids, targets, state, train=True, rng=rng)
    norm = engine.grad_norm()              # L2 norm of model.grads, before clipping
    engine.update(lr, coef)                # grads *= coef where coef < 1, then one optimizer step

`Local` runs them in this process; charrnn.fast.parallel.DataParallel splits them over cores.
"""

from __future__ import annotations

import numpy as np

from charrnn.fast.parallel import DataParallel, auto_workers


class Local:
    """The step in this process: the model's own loss_and_grad and the optimizer's step."""

    workers = 1

    def __init__(self, model, optimizer):
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


def make_engine(model, optimizer, cfg, resumed_workers: int | None = None):
    """Local, or DataParallel over the workers of the training step (cfg: the train section).

    With `train.threads: null`, a resumed run keeps the count it was saved with
    (`resumed_workers`): the shards, and so the dropout masks and the float sums, are then the
    same as if it had never stopped, even on a machine with another number of cores.
    """
    if cfg.threads is not None:
        workers = cfg.threads
    elif resumed_workers is not None:
        workers = resumed_workers
    else:
        workers = auto_workers(cfg.batch_size)
    workers = min(workers, cfg.batch_size)
    return DataParallel(model, optimizer, workers) if workers > 1 else Local(model, optimizer)
