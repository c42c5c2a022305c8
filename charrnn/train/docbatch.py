"""Batches of documents: no hidden state is ever carried from one document into the next, and
an epoch scores every training character exactly once.

The training ids of documents mode are EOD d_1 EOD d_2 ... d_n EOD (charrnn/store/corpus.py).
Unit i is document i read from the EOD before it: inputs ids[s_i : s_{i+1}], targets
ids[s_i + 1 : s_{i+1} + 1], where s_i is the position of the i-th EOD, so its first target is the
document's first character and its last target is EOD. A unit is cut into pieces of T inputs;
a row of a batch holds one piece, padded after the unit's end with input EOD and target
PAD (-1, which the loss ignores: charrnn/nn/ops.py). A piece that starts a unit starts from a
zero state (`resets(k)`); a later piece of the same unit continues the state of the row's
previous batch. So a row never mixes two documents, and no cell needs a reset mask
(docs/documents.md says why this design).

Both batchers declare by_document = True and add to data.py's protocol (Batches):

  batches.resets(k) -> bool [B]   rows whose carried state is zeroed before batch k
  batches.padding                 the share of an epoch's target slots that are PAD
  batches.describe() -> str       one line for the start-of-run report

DocumentStreams (data.batching: contiguous): whole units are packed into B streams of nearly
equal length, longest first, each to the stream with the fewest pieces so far (the LPT rule:
the longest stream is at most 4/3 of the best packing, and never shorter than the longest
unit, which must stay in one stream to keep its carried state). Batch k is piece k of every
stream; a stream that runs out is padded to the longest one. batches_per_epoch = the longest
stream, so every piece is trained on once an epoch. RandomPieces (random): every piece once an
epoch, in an order drawn afresh each epoch, each from a zero state.
"""

from __future__ import annotations

import heapq

import numpy as np

from charrnn.store.text import DataError

PAD = -1     # the target of a padding position: no loss, no gradient


def pieces(ids: np.ndarray, eod_id: int, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, length, first) of every piece, in order: start indexes ids, length <= seq_len,
    first: the piece starts its unit."""
    start, length, first, _ = _pieces_and_units(ids, eod_id, seq_len)
    return start, length, first


def _pieces_and_units(ids: np.ndarray, eod_id: int, seq_len: int):
    """pieces()'s arrays and the piece count of every unit."""
    eods = np.flatnonzero(ids == eod_id)
    if len(eods) < 2:
        raise DataError("the training text has no document; give data.path more text")
    starts, ends = eods[:-1], eods[1:]                 # unit i: inputs ids[starts[i]:ends[i]]
    counts = -(-(ends - starts) // seq_len)
    unit = np.repeat(np.arange(len(starts)), counts)
    offset = np.arange(len(unit)) - np.repeat(np.cumsum(counts) - counts, counts)
    start = starts[unit] + offset * seq_len
    length = np.minimum(seq_len, ends[unit] - start)
    return start, length, offset == 0, counts


def fill(ids: np.ndarray, start: np.ndarray, length: np.ndarray, seq_len: int, eod_id: int):
    """(x, y) int64 [R, T] of R pieces: the ids, then padding (input EOD, target PAD). A piece
    of length 0 is a row of padding only."""
    t = np.arange(seq_len)
    valid = t[None, :] < length[:, None]
    pos = np.where(valid, start[:, None] + t[None, :], 0)
    x = np.where(valid, ids[pos].astype(np.int64), eod_id)
    y = np.where(valid, ids[pos + 1].astype(np.int64), PAD)
    return x, y


def pack(counts: np.ndarray, streams: int) -> list[np.ndarray]:
    """The units (indices into counts) of each of `streams` streams: longest first, each to the
    stream with the fewest pieces so far (ties: the lower stream), then in corpus order within
    a stream. Deterministic: a function of counts and streams only."""
    order = np.argsort(-counts, kind="stable")
    heap = [(0, b) for b in range(streams)]
    owner = np.empty(len(counts), np.int64)
    for u in order.tolist():
        load, b = heapq.heappop(heap)
        owner[u] = b
        heapq.heappush(heap, (load + int(counts[u]), b))
    by_stream = np.argsort(owner, kind="stable")          # corpus order within each stream
    cuts = np.cumsum(np.bincount(owner, minlength=streams))[:-1]
    return np.split(by_stream, cuts)


def _piece_indices(units: np.ndarray, counts: np.ndarray, unit_first: np.ndarray) -> np.ndarray:
    """The indices of the pieces of `units`, unit after unit."""
    c = counts[units]
    return np.repeat(unit_first[units] - (np.cumsum(c) - c), c) + np.arange(int(c.sum()))


def _padding(length: np.ndarray, slots: int) -> float:
    return 1.0 - float(length.sum()) / slots if slots else 0.0


def _padding_words(share: float) -> str:
    """'12.3% of the slots are padding', with the way to less when it is most of them."""
    words = f"{share:.1%} of the slots are padding"
    return words + ("; a train.seq_len nearer the documents' typical length pads less"
                    if share > 0.5 else "")


class DocumentStreams:
    """B streams of whole units, state carried within a unit and zeroed at each unit's start."""

    stateful = True
    by_document = True

    def __init__(self, ids: np.ndarray, eod_id: int, batch_size: int, seq_len: int):
        start, length, first, counts = _pieces_and_units(ids, eod_id, seq_len)
        B = batch_size
        if len(counts) < B:
            raise DataError(f"the training text has {len(counts)} documents, fewer than the "
                            f"{B} streams of train.batch_size (each stream holds whole "
                            f"documents); use --set train.batch_size={len(counts)} or less, "
                            f"or --set data.batching=random")
        unit_first = np.cumsum(counts) - counts             # index of each unit's first piece
        streams = [_piece_indices(units, counts, unit_first) for units in pack(counts, B)]
        K = max(len(s) for s in streams)
        rows = np.full((B, K), -1, np.int64)                # -1: a padding piece
        for b, s in enumerate(streams):
            rows[b, :len(s)] = s
        pad = rows < 0
        self.ids, self.eod_id = ids, eod_id
        self.batch_size, self.seq_len = B, seq_len
        self._start = np.where(pad, 0, start[rows])
        self._length = np.where(pad, 0, length[rows])
        self._first = np.where(pad, True, first[rows])
        self.batches_per_epoch = K
        self.documents, self.pieces = len(counts), len(start)
        self.padding = _padding(length, B * K * seq_len)

    def describe(self) -> str:
        return (f"batches: {self.documents:,} documents ({self.pieces:,} pieces of up to "
                f"{self.seq_len}) packed into {self.batch_size} streams, "
                f"{self.batches_per_epoch:,} steps an epoch; {_padding_words(self.padding)}")

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
    """Every piece once an epoch, B at a time, each from a zero state, in an order drawn from
    the `rng` the trainer checkpoints; the last batch is padded.

    Exact resume: the order of an epoch is a permutation drawn from a copy of rng, which itself
    stays as it is until the epoch's last batch, then moves on to the copy's state. So the
    state the trainer saves at any batch of an epoch gives that epoch's order again.
    """

    stateful = False
    by_document = True

    def __init__(self, ids: np.ndarray, eod_id: int, batch_size: int, seq_len: int,
                 rng: np.random.Generator):
        self._start, self._length, _ = pieces(ids, eod_id, seq_len)
        n, B = len(self._start), batch_size
        if n < B:
            raise DataError(f"the training documents make {n} pieces of train.seq_len "
                            f"{seq_len}, fewer than the {B} rows of train.batch_size; use "
                            f"--set train.batch_size={n} or less, or more text")
        self.ids, self.eod_id, self.rng = ids, eod_id, rng
        self.batch_size, self.seq_len = B, seq_len
        self.batches_per_epoch = -(-n // B)
        self.padding = _padding(self._length, self.batches_per_epoch * B * seq_len)
        self._key, self._order, self._after = None, None, None

    def describe(self) -> str:
        return (f"batches: {len(self._start):,} pieces of up to {self.seq_len} in a new random "
                f"order each epoch, {self.batches_per_epoch:,} steps an epoch; "
                f"{_padding_words(self.padding)}")

    def _epoch_order(self) -> np.ndarray:
        """This epoch's order of the pieces (padded with -1 to whole batches)."""
        key = str(self.rng.bit_generator.state)
        if key != self._key:
            copy = np.random.Generator(type(self.rng.bit_generator)())
            copy.bit_generator.state = self.rng.bit_generator.state
            order = copy.permutation(len(self._start))
            slots = self.batches_per_epoch * self.batch_size
            self._order = np.concatenate([order, np.full(slots - len(order), -1)])
            self._key, self._after = key, copy.bit_generator.state
        return self._order

    def get(self, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= k < self.batches_per_epoch:
            raise IndexError(f"batch {k} is outside 0..{self.batches_per_epoch - 1}")
        chosen = self._epoch_order()[k * self.batch_size:(k + 1) * self.batch_size]
        pad = chosen < 0
        start = np.where(pad, 0, self._start[chosen])
        length = np.where(pad, 0, self._length[chosen])
        if k == self.batches_per_epoch - 1:       # the next epoch draws a new order
            self.rng.bit_generator.state = self._after
        return fill(self.ids, start, length, self.seq_len, self.eod_id)

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
