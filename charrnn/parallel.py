"""Data-parallel training step: the batch's streams split over worker threads.

A training step at B x T is a few hundred NumPy calls per layer, most of them small element-wise
operations that use one core while the BLAS calls between them use all of them. Splitting the
B streams into W shards and running each shard's forward and backward in its own thread, with
the BLAS limited to one thread per worker, keeps every core busy through both (NumPy releases
the GIL inside its loops and BLAS calls). On the 2-core bench machine this made the 2-layer
LSTM step 10-17% faster than one thread with a 2-thread BLAS.

Each worker runs CharRNN.loss_and_grad on a replica that shares the model's parameters and has
its own gradient buffer. With B_k streams in shard k, the loss is the mean over all B x T
characters, so

    loss = sum_k (B_k / B) loss_k,    grad = sum_k (B_k / B) grad_k,

the same numbers as one full-batch call up to float rounding (the sums run in another order).
Dropout masks come from one generator per shard, seeded from the run's dropout generator in
shard order, so a run is reproducible and resumes exactly whatever the threads' timing.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from charrnn import blas

MAX_AUTO_WORKERS = 4     # measured only up to 2 (the bench machine's cores)
MIN_STREAMS_PER_WORKER = 8


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_workers(batch_size: int) -> int:
    """Workers for `train.threads: null`: one per core, at most MAX_AUTO_WORKERS, each with at
    least MIN_STREAMS_PER_WORKER streams; 1 when the BLAS thread count cannot be controlled
    (W workers each with a many-threaded BLAS would oversubscribe the cores)."""
    if blas.get_threads() is None:
        return 1
    return max(1, min(available_cores(), MAX_AUTO_WORKERS, batch_size // MIN_STREAMS_PER_WORKER))


class DataParallel:
    """loss_and_grad of `model` computed over `workers` shards of the batch, in threads."""

    def __init__(self, model, workers: int):
        if workers < 2:
            raise ValueError(f"DataParallel needs at least 2 workers; got {workers}")
        self.model = model
        self.workers = workers
        self.replicas = []
        for k in range(workers):
            replica = copy.copy(model)            # shares model.params (the same buffer)
            if k:                                 # shard 0 writes into model.grads itself
                replica.grads = model.params.zeros_like()
            self.replicas.append(replica)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="charrnn-shard")

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def loss_and_grad(self, ids, targets, state=None, train=True, rng=None, dstate=None):
        """As CharRNN.loss_and_grad (ids, targets [B, T]; state of [L, B, H] arrays): returns
        (loss, final state) and leaves the gradient in model.grads; the third item, the gradient
        of the initial state, is None (training never uses it). dstate is not supported."""
        if dstate is not None:
            raise ValueError("DataParallel.loss_and_grad does not take dstate")
        B = ids.shape[0]
        shards = min(self.workers, B)
        bounds = np.linspace(0, B, shards + 1).round().astype(int)
        drop = train and self.model.dropout > 0
        if drop and rng is None:
            raise ValueError("dropout in training needs an rng")
        seeds = rng.integers(0, 2**63, size=shards) if drop else [None] * shards

        def work(k):
            rows = slice(bounds[k], bounds[k + 1])
            part = None if state is None else tuple(s[:, rows] for s in state)
            shard_rng = np.random.default_rng(seeds[k]) if drop else None
            return self.replicas[k].loss_and_grad(ids[rows], targets[rows], part, train, shard_rng)

        with blas.limited(1):
            results = list(self.pool.map(work, range(shards)))
        weights = np.diff(bounds) / B
        loss = float(sum(w * r[0] for w, r in zip(weights, results)))
        total = self.model.grads.flat                    # shard 0's gradient, weighted in place
        total *= weights[0]
        for w, replica in zip(weights[1:], self.replicas[1:shards]):
            replica.grads.flat *= w                      # no temporary of the parameters' size
            total += replica.grads.flat
        new_state = tuple(np.concatenate([r[1][j] for r in results], axis=1)
                          for j in range(len(results[0][1])))
        return loss, new_state, None
