"""Batches of documents: no hidden state is ever carried from one document into the next.

The training ids of documents mode are EOD d_1 EOD d_2 ... d_n EOD (charrnn/store/corpus.py).
Unit i is document i read from the EOD before it: inputs ids[s_i : s_{i+1}], targets
ids[s_i + 1 : s_{i+1} + 1], where s_i is the position of the i-th EOD, so its first target is the
document's first character and its last target is EOD. A unit is cut into pieces of T inputs;
a row of a batch holds one piece, padded after the unit's end with input EOD and target
PAD (-1, which the loss ignores: charrnn/nn/ops.py). A piece that starts a unit starts from a
zero state (`resets(k)`); a later piece of the same unit continues the state of the row's
previous batch. So a row never mixes two documents, and no cell needs a reset mask
(docs/documents.md says why this design).

Both batchers add one method to data.py's protocol:

  batches.resets(k) -> bool [B]   rows whose carried state is zeroed before batch k

DocumentStreams (data.batching: contiguous): the units, in order, are shared out to B streams
as contiguous runs with about the same number of pieces each; batch k is piece k of every
stream, so a long document keeps truncated BPTT's carried state across batches, as char-rnn's
streams do. batches_per_epoch = the fewest pieces of any stream. RandomPieces (random): B
pieces drawn uniformly from all pieces, each from a zero state.
"""

from __future__ import annotations

import numpy as np

from charrnn.store.text import DataError

PAD = -1     # the target of a padding position: no loss, no gradient


def pieces(ids: np.ndarray, eod_id: int, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, length, first) of every piece, in order: start indexes ids, length <= seq_len,
    first: the piece starts its unit."""
    eods = np.flatnonzero(ids == eod_id)
    if len(eods) < 2:
        raise DataError("the training text has no document; give data.path more text")
    starts, ends = eods[:-1], eods[1:]                 # unit i: inputs ids[starts[i]:ends[i]]
    counts = -(-(ends - starts) // seq_len)
    unit = np.repeat(np.arange(len(starts)), counts)
    offset = np.arange(len(unit)) - np.repeat(np.cumsum(counts) - counts, counts)
    start = starts[unit] + offset * seq_len
    length = np.minimum(seq_len, ends[unit] - start)
    return start, length, offset == 0


def fill(ids: np.ndarray, start: np.ndarray, length: np.ndarray, seq_len: int, eod_id: int):
    """(x, y) int64 [R, T] of R pieces: the ids, then padding (input EOD, target PAD)."""
    t = np.arange(seq_len)
    valid = t[None, :] < length[:, None]
    pos = np.where(valid, start[:, None] + t[None, :], 0)
    x = np.where(valid, ids[pos].astype(np.int64), eod_id)
    y = np.where(valid, ids[pos + 1].astype(np.int64), PAD)
    return x, y


class DocumentStreams:
    """B streams of whole units, state carried within a unit and zeroed at each unit's start."""

    stateful = True

    def __init__(self, ids: np.ndarray, eod_id: int, batch_size: int, seq_len: int):
        start, length, first = pieces(ids, eod_id, seq_len)
        B, n = batch_size, len(start)
        if n < B:
            raise DataError(f"the training documents make {n} pieces of seq_len {seq_len}; "
                            f"batch_size {B} needs at least {B}; use more text or a smaller "
                            f"train.batch_size")
        # stream b takes the units whose first piece falls in [b n / B, (b+1) n / B)
        unit_starts = np.flatnonzero(first)
        at = np.searchsorted(unit_starts, np.arange(B) * n / B)
        cuts = unit_starts[np.minimum(at, len(unit_starts) - 1)]
        bounds = np.append(cuts, n)
        per_stream = np.diff(bounds)
        if per_stream.min() < 1:
            raise DataError(f"the training documents are too few for batch_size {B} streams; "
                            f"use a smaller train.batch_size")
        K = int(per_stream.min())
        rows = bounds[:-1, None] + np.arange(K)[None, :]          # [B, K] piece indices
        self.ids, self.eod_id = ids, eod_id
        self.batch_size, self.seq_len = B, seq_len
        self._start, self._length, self._first = start[rows], length[rows], first[rows]
        self.batches_per_epoch = K

    def _check(self, k: int) -> None:
        if not 0 <= k < self.batches_per_epoch:
            raise IndexError(f"batch {k} is outside 0..{self.batches_per_epoch - 1}")

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch k: (x, y) int64 [B, T]; y is PAD after a unit's end."""
        self._check(k)
        return fill(self.ids, self._start[:, k], self._length[:, k], self.seq_len, self.eod_id)

    def resets(self, k: int) -> np.ndarray:
        """bool [B]: rows whose piece k starts a unit (their state is zeroed before it)."""
        self._check(k)
        return self._first[:, k].copy()


class RandomPieces:
    """B pieces drawn uniformly at random from the `rng` the trainer checkpoints; no carry."""

    stateful = False

    def __init__(self, ids: np.ndarray, eod_id: int, batch_size: int, seq_len: int,
                 rng: np.random.Generator):
        self._start, self._length, _ = pieces(ids, eod_id, seq_len)
        self.ids, self.eod_id, self.rng = ids, eod_id, rng
        self.batch_size, self.seq_len = batch_size, seq_len
        self.batches_per_epoch = max(1, len(self._start) // batch_size)

    def get(self, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= k < self.batches_per_epoch:
            raise IndexError(f"batch {k} is outside 0..{self.batches_per_epoch - 1}")
        chosen = self.rng.integers(0, len(self._start), size=self.batch_size)
        return fill(self.ids, self._start[chosen], self._length[chosen], self.seq_len, self.eod_id)

    def resets(self, k: int) -> np.ndarray:
        return np.ones(self.batch_size, bool)


def make_document_batches(ids: np.ndarray, eod_id: int, train_cfg, batching: str,
                          rng: np.random.Generator | None = None):
    """The documents-mode batcher named by data.batching."""
    if batching == "contiguous":
        return DocumentStreams(ids, eod_id, train_cfg.batch_size, train_cfg.seq_len)
    if rng is None:
        raise ValueError("random batching needs a numpy Generator (rng)")
    return RandomPieces(ids, eod_id, train_cfg.batch_size, train_cfg.seq_len, rng)
