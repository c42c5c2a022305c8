"""The exact evaluation pass of a model of two or more layers as a two-stage pipeline over two
cores: layer 0 of chunk c + 1 in a forked child while this process runs the layers above on
chunk c. The operations and their order are those of the one-process loop, so the result is the
same to the last bit.
"""

from __future__ import annotations

import numpy as np

from charrnn.fast import blas
from charrnn.fast.parallel import WorkerError, fork_worker, sent, stop_worker
from charrnn.fast.shared import shared_zeros


def pipelined_nll(model, ids: np.ndarray, chunk_len: int, score) -> float:
    """The exact pass with layer 0 in a forked process, one chunk ahead of the layers above:
    the sum of score(logits [T, V], targets [T]) over the chunks of ids (inputs ids[:-1],
    targets ids[1:]). WorkerError when the child process is lost; its own errors are raised.

    The child runs layer 0 over chunk c + 1 while this process runs layers 1 .. L-1, the
    decoder and the loss over chunk c; the chunks' layer-0 outputs pass through two slots of
    shared memory, and each side tells the other through a pipe when a slot is full or free
    again. The operations are those of the sequential loop, in the same order, so the result
    is the same to the last bit (a test checks); two layers take about half the time.
    """
    n = len(ids) - 1                                   # inputs ids[:-1], targets ids[1:]
    H = model.hidden_size
    slots = shared_zeros(2 * chunk_len * H, model.dtype).reshape(2, chunk_len, 1, H)
    ours, child = fork_worker(_layer0_server, (model, ids, chunk_len, slots), "charrnn-eval-layer0")
    lost = WorkerError("the evaluation's layer-0 process ended unexpectedly (out of memory?)")

    def wait_for_chunk():
        """Until the child says its next chunk is in its slot; raises the error it sent."""
        try:
            reply = ours.recv()
        except EOFError:
            raise lost from None
        if isinstance(reply, BaseException):
            raise reply

    try:
        with blas.limited(1):                          # the other core is the child's
            zero = model.initial_state(1)
            states = [tuple(s[k] for s in zero) for k in range(model.layers)]
            total, chunks = 0.0, -(-n // chunk_len)
            for c, start in enumerate(range(0, n, chunk_len)):
                wait_for_chunk()
                T = min(chunk_len, n - start)
                x = slots[c % 2, :T]
                for k in range(1, model.layers):
                    x, states[k], _ = model.block_forward(k, x, states[k])
                # slot c % 2 is free for chunk c + 2; if the child has ended, with an error it
                # sent first, which wait_for_chunk raises
                if c + 2 < chunks and not sent(ours, c):
                    wait_for_chunk()
                    raise lost
                logits = model.decode(x.reshape(T, H))
                total += score(logits, ids[start + 1:start + T + 1].astype(np.int64))
            return total
    finally:
        stop_worker(ours, child)


def _layer0_server(pipe, model, ids: np.ndarray, chunk_len: int, slots: np.ndarray) -> None:
    """The child of pipelined_nll: layer 0 over every chunk, into slot c % 2."""
    n = len(ids) - 1
    state = tuple(s[0] for s in model.initial_state(1))
    blas.set_threads(1)                                # the other core is the parent's
    try:
        for c, start in enumerate(range(0, n, chunk_len)):
            if c >= 2:
                pipe.recv()                            # chunk c - 2 has left slot c % 2
            T = min(chunk_len, n - start)
            x = model.embed(ids[start:start + T].astype(np.int64)[:, None])
            out, state, _ = model.block_forward(0, x, state)
            slots[c % 2, :T] = out
            pipe.send(c)
    except (EOFError, OSError):
        return                                         # the parent stopped reading: done
    except Exception as error:  # noqa: BLE001 - raised in the parent
        try:
            pipe.send(error)
        except OSError:
            pass
