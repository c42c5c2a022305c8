"""Data-parallel training step: the batch's streams split over worker processes (or threads).

A training step at B x T is a few hundred NumPy calls per layer, most of them small element-wise
operations that use one core while the BLAS calls between them use all of them. Splitting the
B streams into W shards and running each shard's forward and backward on its own core, with the
BLAS limited to one thread per worker, keeps every core busy through both.

Where the platform can fork (Linux), shard 0 runs in the calling process and shards 1..W-1 in
worker processes forked once, at set-up. The parameters and each worker's gradient live in
shared memory (charrnn/fast/shared.py), so a step sends each worker only its ids, targets and
carried state (a few kB through a pipe) and gets back its loss and final state; then every
process sums the shards' gradients over its own part of the flat buffer, and after clipping
updates that part with the optimizer (DataParallel.update, through Optimizer.part: a view of
the optimizer over one part of its buffers). Threads were the first design, and lost a fifth of
the step to the GIL (docs/performance.md). Elsewhere (macOS, Windows, where fork is unsafe or
absent) the shards run in threads.

Each worker runs CharRNN.loss and loss_backward on a replica that shares the model's parameters
and has its own gradient buffer. With B_k streams in shard k, the loss is the mean over all B x T
characters, so

    loss = sum_k (B_k / B) loss_k,    grad = sum_k (B_k / B) grad_k,

the same numbers as one full-batch call up to float rounding (the sums run in another order),
where each shard's backward already scales its gradient by B_k / B (loss_backward's scale), so
merging is one addition per worker over the flat buffer rather than two scalings and an add,
and the same bits whichever of processes or threads run the shards.
With padded targets (documents mode: charrnn/train/docbatch.py) the loss is the mean over the
scored targets, so B_k / B becomes shard k's share of them; without padding nothing changes.
Dropout masks come from one generator per shard, seeded from the run's dropout generator in
shard order, so a run is reproducible and resumes exactly whatever the workers' timing.
"""

from __future__ import annotations

import copy
import ctypes
import math
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from charrnn.errors import CharrnnError, UsageError
from charrnn.fast import blas
from charrnn.fast.shared import share

MAX_AUTO_WORKERS = 4     # measured only up to 2 (the bench machine's cores)
MIN_STREAMS_PER_WORKER = 8
PR_SET_PDEATHSIG = 1      # <linux/prctl.h>
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


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


class WorkerError(CharrnnError, RuntimeError):
    """A worker process died or could not be reached."""


def can_fork() -> bool:
    """Whether work may run in forked processes: Linux only (macOS's system libraries are not
    fork-safe, Windows cannot fork). CHARRNN_NO_FORK=1 takes the one-process paths of those
    platforms on Linux too, so that the tests run the code a macOS user runs."""
    if os.environ.get("CHARRNN_NO_FORK", "") not in ("", "0"):
        return False
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def fork_worker(target, args: tuple, name: str):
    """(pipe, process): target(pipe, *args) running in a forked process (see can_fork) that
    leaves Ctrl-C to this one and uses a one-thread BLAS (each process has a core)."""
    ours, theirs = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(
        target=_worker_main, args=(target, os.getpid(), theirs, ours, *args), name=name,
        daemon=True)
    # Ctrl-C or SIGTERM during the fork would be raised in an at-fork hook (logging's), where
    # Python ignores it and the command runs on: held until the fork is over, then delivered
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        proc.start()
    finally:
        theirs.close()
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return ours, proc


def sent(pipe, message) -> bool:
    """Send message through pipe; False when the other end has gone. The OSError ends here rather
    than in a caller's chained error: its traceback holds the pickled message's BytesIO buffer,
    which the garbage collector of Python 3.12.0 and 3.12.1 crashes on (CPython gh-111049)."""
    try:
        pipe.send(message)
        return True
    except OSError:
        return False


def stop_worker(pipe, proc) -> None:
    """Close our end of a fork_worker's pipe and wait for it to end (5 s, then terminate it)."""
    pipe.close()
    proc.join(timeout=5)
    if proc.is_alive():
        proc.terminate()


def die_with_parent(parent: int) -> None:
    """End this process when the process `parent` ends, however it ends (kill -9 included):
    Linux's PR_SET_PDEATHSIG, plus a check for a parent that died before it was set."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(target, parent, pipe, parent_end, *args) -> None:
    die_with_parent(parent)                           # never outlive the trainer
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)     # held by fork_worker
    parent_end.close()       # else the pipe never reads as closed here when the parent's end is
    blas.set_threads(1)
    target(pipe, *args)


class DataParallel:
    """A training step's work on `workers` cores: loss_and_grad of `model` over as many shards
    of the batch, the gradient's norm, and the (clipped) update of `optimizer` after it.

    The same three calls as the one-process step (Local, charrnn/engines/numpy_engine.py):
    loss_and_grad, grad_norm, update(lr, coef).
    processes: run shards 1..W-1 in forked processes (default: where can_fork()) rather than in
    threads. Moves model.params, model.grads and the optimizer's slots into shared memory; call
    close() when done.

    With processes, the work after the shards is split too, by contiguous parts of the flat
    buffers, one per process: merging the shards' gradients (and the sum of squares of the
    merged part, for the clipping norm) in one round, then the clip scaling and the optimizer's
    element-wise update in a second (on one process the worker would wait through them).
    """

    def __init__(self, model, optimizer, workers: int, processes: bool | None = None):
        if workers < 2:
            raise ValueError(f"DataParallel needs at least 2 workers; got {workers}")
        if not optimizer.elementwise:
            raise UsageError(f"train.optimizer {optimizer.name} updates whole tensors, which "
                             f"cannot be split over workers; set train.threads=1")
        self.model = model
        self.workers = workers
        self.processes = can_fork() if processes is None else processes
        self.optimizer = optimizer
        self.replicas = [model]                   # shard 0 runs here and writes model.grads
        self.pool = self.pipes = None
        self._sumsq = None                        # of the merged gradient, when split
        if self.processes:                        # before the fork: workers see every write
            for flat in (model.params, model.grads, *optimizer.slots.values()):
                share(flat)
        for _ in range(1, workers):
            replica = copy.copy(model)            # shares model.params (the same buffer)
            replica.grads = model.params.zeros_like()
            if self.processes:
                share(replica.grads)
            self.replicas.append(replica)
        bounds = np.linspace(0, model.params.size, workers + 1).round().astype(int)
        self.parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        self._own_part = optimizer.part(self.parts[0])
        if self.processes:
            started = [fork_worker(_serve, (self.replicas, k, self.parts[k], optimizer),
                                   "charrnn-shard") for k in range(1, workers)]
            self.pipes = [pipe for pipe, _ in started]
            self.procs = [proc for _, proc in started]
        else:
            self.pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="charrnn-shard")

    def worker_memory_mb(self) -> list[dict[str, float]]:
        """Each worker process's resident size now (rss), its peak (peak) and the part of rss
        that is memory shared with this process (shared: the parameters and gradients), in MB,
        from /proc (Linux)."""
        names = {"VmRSS": "rss", "VmHWM": "peak", "RssShmem": "shared"}
        sizes = []
        for proc in (self.procs if self.pipes is not None else []):
            fields = {}
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key in names:
                        fields[names[key]] = int(value.split()[0]) / 1024      # kB -> MB
            sizes.append(fields)
        return sizes

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        if self.pipes is not None:
            for pipe in self.pipes:
                try:
                    pipe.send(None)
                except OSError:
                    pass                          # already gone
            for pipe, proc in zip(self.pipes, self.procs):
                stop_worker(pipe, proc)
            self.pipes = None

    def loss_and_grad(self, ids, targets, state=None, train=True, rng=None, dstate=None):
        """As CharRNN.loss_and_grad (ids, targets [B, T]; state of [L, B, H] arrays): returns
        (loss, final state) and leaves the gradient in model.grads; the third item, the gradient
        of the initial state, is None (training never uses it). dstate is not supported."""
        if dstate is not None:
            raise ValueError("DataParallel.loss_and_grad does not take dstate")
        if self.pool is None and self.pipes is None:
            raise ValueError("DataParallel is closed")
        B = ids.shape[0]
        shards = min(self.workers, B)
        bounds = np.linspace(0, B, shards + 1).round().astype(int)
        drop = train and self.model.dropout > 0
        if drop and rng is None:
            raise ValueError("dropout in training needs an rng")
        seeds = rng.integers(0, 2**63, size=shards) if drop else [None] * shards
        weights = np.diff(bounds) / B
        if targets.min(initial=0) < 0:      # padding (documents mode): weigh by scored targets
            scored = np.add.reduceat((targets >= 0).sum(axis=1), bounds[:-1])
            weights = scored / max(int(scored.sum()), 1)

        def job(k):
            rows = slice(bounds[k], bounds[k + 1])
            part = None if state is None else tuple(np.ascontiguousarray(s[:, rows]) for s in state)
            return ids[rows], targets[rows], part, train, seeds[k], float(weights[k])

        with blas.limited(1):
            if self.processes:
                for k in range(1, shards):
                    self._send(k, ("shard", job(k)))
                results = [_shard_step_or_error(self.model, job(0))]
                # every reply is read, even after an error, so none is left for the next step
                results += [self._receive(k) for k in range(1, shards)]
                if not any(isinstance(r, BaseException) for r in results):
                    # the shards' weighted gradients summed into model.grads, a part per process
                    self._sumsq = sum(self._everywhere(("merge", shards), _merge_or_error,
                                                       self.replicas, shards))
            else:
                futures = [self.pool.submit(_shard_step_or_error, self.replicas[k], job(k))
                           for k in range(1, shards)]
                results = [_shard_step_or_error(self.model, job(0))]
                results += [f.result() for f in futures]
        _raise_first_error(results)
        loss = float(sum(w * r[0] for w, r in zip(weights, results)))
        if not self.processes:             # each shard's gradient came out weighted
            total = self.model.grads.flat
            for replica in self.replicas[1:shards]:
                total += replica.grads.flat
            self._sumsq = None
        new_state = tuple(np.concatenate([r[1][j] for r in results], axis=1)
                          for j in range(len(results[0][1])))
        return loss, new_state, None

    def grad_norm(self) -> float:
        """The L2 norm of model.grads as the last loss_and_grad left it."""
        if self._sumsq is None:
            return self.model.grads.norm()
        return math.sqrt(self._sumsq)

    def update(self, lr: float, coef: float = 1.0) -> None:
        """Scale model.grads by `coef` where it is below 1 (gradient clipping), then apply one
        optimizer step at `lr`: each process its own part where the shards run in processes,
        else all here."""
        optimizer = self.optimizer
        if not self.processes:
            _clip_and_step(optimizer, self.model.grads, lr, optimizer.step_count + 1, coef,
                           slice(None))
            return
        count = optimizer.step_count + 1
        self._everywhere(("step", lr, count, coef), _clip_and_step_or_error, self._own_part,
                         self.model.grads, lr, count, coef)
        optimizer.step_count = count

    def _everywhere(self, message, here, *args) -> list:
        """Send `message` to every worker process, run here(*args, parts[0]) meanwhile, and
        return the results, ours first; raises the first error once all replies are in."""
        for k in range(1, self.workers):
            self._send(k, message)
        results = [here(*args, self.parts[0])]
        results += [self._receive(k) for k in range(1, self.workers)]
        _raise_first_error(results)
        return results

    def _send(self, k: int, job) -> None:
        if not sent(self.pipes[k - 1], job):   # BrokenPipeError must not pass for a closed stdout
            self._lost()

    def _receive(self, k: int):
        """Shard k's (loss, final state) from its process, or the exception it raised."""
        try:
            return self.pipes[k - 1].recv()
        except (EOFError, OSError):
            self._lost()

    def _lost(self):
        self.close()
        raise WorkerError("a training worker process ended unexpectedly (out of memory, or "
                          "killed?); resume the run, or set train.threads=1")


def _shard_step(replica, job):
    """(loss, final state) of one shard; its gradient, scaled by the shard's share of the
    batch, lands in replica.grads."""
    ids, targets, state, train, seed, weight = job
    rng = np.random.default_rng(seed) if seed is not None else None
    loss, new_state, cache = replica.loss(ids, targets, state, train, rng)
    replica.loss_backward(cache, scale=weight)
    return loss, new_state


def _merge(replicas, shards: int, part: slice) -> float:
    """model.grads[part] += the other shards' gradients there -> its sum of squares after."""
    total = replicas[0].grads.flat[part]
    for replica in replicas[1:shards]:
        total += replica.grads.flat[part]
    return float(np.dot(total, total))


class _Flat:
    """A bare flat buffer: what Optimizer.step reads of a gradient's FlatParams."""

    def __init__(self, flat: np.ndarray):
        self.flat = flat


def _clip_and_step(optimizer, grads, lr: float, count: int, coef: float, part: slice) -> None:
    """grads[part] *= coef if coef < 1, then `optimizer` (the whole one for part slice(None),
    else its Optimizer.part of that part) takes its update as step `count`."""
    g = grads.flat[part]
    if coef < 1.0:
        np.multiply(g, coef, out=g)
    optimizer.step_count = count - 1
    optimizer.step(_Flat(g), lr)


def _raise_first_error(results) -> None:
    """Raise the first exception among a round's results (read in full before, so no reply is
    left in a pipe for the next round)."""
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _or_error(fn):
    """fn's result, or the exception it raised (to be raised by the caller after every reply)."""
    def wrapped(*args):
        try:
            return fn(*args)
        except Exception as error:  # noqa: BLE001 - raised by the caller after the others
            return error
    return wrapped


_shard_step_or_error = _or_error(_shard_step)
_merge_or_error = _or_error(_merge)
_clip_and_step_or_error = _or_error(_clip_and_step)


def _serve(pipe, replicas, k: int, part: slice, optimizer) -> None:
    """Worker process k: run what it is sent (its shard of a step, its part of the merge or of
    the update) until it is sent None or the pipe closes. An error is sent back, to be raised
    in the parent."""
    grads = replicas[0].grads                            # the merged gradient (shared)
    own_part = optimizer.part(part)
    while True:
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        kind = message[0]
        if kind == "shard":
            reply = _shard_step_or_error(replicas[k], message[1])
        elif kind == "merge":
            reply = _merge_or_error(replicas, message[1], part)
        else:                                            # "step", lr, count, coef
            _, lr, count, coef = message
            reply = _clip_and_step_or_error(own_part, grads, lr, count, coef, part)
        try:
            pipe.send(reply)
        except OSError:                                  # the parent left (Ctrl-C): end quietly
            return
