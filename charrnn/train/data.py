"""Split the training ids from validation, and cut training ids into batches.

Every batcher (these two, and documents mode's in docbatch.py) declares the protocol
`Batches`, so the trainer needs no `if batching == ...`:

  batches.batches_per_epoch    int, >= 1
  batches.stateful             True: carry hidden state from batch k to k+1 (reset at position 0)
  batches.by_document          True: batches.resets(k) names the streams zeroed before batch k
  batches.describe()           a line for the start-of-run report (what an epoch covers), or None
  batches.get(k) -> (x, y)     int64 arrays [B, T]; y[:, t] is the character after x[:, t]

Exact resume: the trainer stores `(epoch, position)` where position is the index of the NEXT batch
to run (after finishing batch k it stores k + 1, or (epoch + 1, 0) after the last one), and on
resume continues with `get(position)`. For RandomWindows it also stores and restores its numpy
Generator's `bit_generator.state`, because windows are drawn from it in call order.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np

from charrnn.store.text import DataError


def split_train_val(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) views: the last `val_fraction` of the ids is validation, as nanoGPT does."""
    n_train = int(len(ids) * (1.0 - val_fraction))
    return ids[:n_train], ids[n_train:]


def min_train_chars(batch_size: int, seq_len: int, batching: str = "contiguous") -> int:
    """Fewest training characters that make one batch.

    contiguous: B streams of L = (N-1)//B inputs need L >= T, so N >= B*T + 1.
    random: one window of T inputs plus its target needs N >= T + 1.
    """
    return batch_size * seq_len + 1 if batching == "contiguous" else seq_len + 1


def min_corpus_chars(val_fraction: float, batch_size: int, seq_len: int,
                     batching: str = "contiguous") -> int:
    """Smallest corpus whose split leaves enough training text and >= 2 validation characters."""

    def enough(n: int) -> bool:
        n_train = int(n * (1.0 - val_fraction))
        return n_train >= min_train_chars(batch_size, seq_len, batching) and n - n_train >= 2

    # Both split sizes are non-decreasing in n, so `enough` is monotone: binary search it.
    hi = int(2 / val_fraction) + int(min_train_chars(batch_size, seq_len, batching)
                                     / (1.0 - val_fraction)) + 4
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid + 1, hi)
    return lo


def validate_split(train_ids: np.ndarray, val_ids: np.ndarray, val_fraction: float,
                   batch_size: int, seq_len: int, batching: str = "contiguous") -> None:
    """DataError unless the training split makes a batch and validation has >= 2 characters.

    Validation needs two characters: one input and the target after it.
    """
    n = len(train_ids) + len(val_ids)
    need = min_corpus_chars(val_fraction, batch_size, seq_len, batching)
    if len(val_ids) < 2:
        raise DataError(
            f"the validation split is too small: {n} characters x val_fraction {val_fraction} "
            f"leaves {len(val_ids)}; use at least {need} characters of text or a larger "
            f"data.val_fraction"
        )
    if len(train_ids) < min_train_chars(batch_size, seq_len, batching):
        raise DataError(
            f"the training split has {len(train_ids)} characters; batch_size {batch_size} x "
            f"seq_len {seq_len} needs a corpus of at least {need} characters with val_fraction "
            f"{val_fraction}; use more text or a smaller train.batch_size / train.seq_len"
        )


def _too_small(n: int, batch_size: int, seq_len: int, batching: str) -> DataError:
    need = min_train_chars(batch_size, seq_len, batching)
    return DataError(
        f"the training text has {n} characters; batch_size {batch_size} x seq_len {seq_len} "
        f"needs at least {need} ({batching} batching); use more text or a smaller "
        f"train.batch_size / train.seq_len"
    )


class Batches(Protocol):
    """What the training loop reads of a batcher (see the module docstring)."""

    batches_per_epoch: int
    stateful: ClassVar[bool]
    by_document: ClassVar[bool]

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def resets(self, k: int) -> np.ndarray:
        """bool [B]: the streams whose document starts at batch k (by_document batchers)."""

    def describe(self) -> str | None:
        """A line for the start-of-run report on what an epoch covers, or None."""


class ContiguousBatches:
    """char-rnn's batching for truncated BPTT with hidden state carried between batches.

    The N training ids are cut into B contiguous streams of L = (N-1)//B characters; stream b is
    ids[b*L : (b+1)*L]. Batch k (0 <= k < L//T) is

        x[b, :] = ids[b*L + k*T     : b*L + k*T + T]
        y[b, :] = ids[b*L + k*T + 1 : b*L + k*T + T + 1]

    so row b of batch k+1 continues row b of batch k, and the hidden state carries over. The
    target of a stream's last character is the next character of the text (the first of stream
    b+1, or for the last stream ids[B*L], which exists because B*L <= N-1). batches_per_epoch =
    L//T; the trailing L - (L//T)*T characters of each stream are unused in that epoch.

    Batches are fresh int64 arrays (cheap at B*T ids): safe for any indexing or arithmetic, and
    they never alias the corpus. Nothing is copied at construction: the streams are views of ids.
    """

    stateful = True
    by_document = False

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int):
        n, B, T = len(ids), batch_size, seq_len
        if n < min_train_chars(B, T, "contiguous"):
            raise _too_small(n, B, T, "contiguous")
        self.batch_size, self.seq_len = B, T
        self.stream_len = (n - 1) // B
        L = self.stream_len
        self._x = ids[:B * L].reshape(B, L)  # views: no copy of the corpus
        self._y = ids[1:B * L + 1].reshape(B, L)
        self.batches_per_epoch = L // T
        self.left_out = (n - 1) - B * self.batches_per_epoch * T   # targets no batch holds

    def describe(self) -> str | None:
        """A line for the start-of-run report when an epoch leaves out more than 1% of the
        targets (the same ones every epoch: each stream's last L mod T, and the text's last
        (N-1) mod B), else None."""
        total = self.left_out + self.batch_size * self.batches_per_epoch * self.seq_len
        if self.left_out <= total / 100:
            return None
        return (f"batches: an epoch of {self.batch_size} streams x {self.batches_per_epoch} "
                f"steps leaves out {self.left_out:,} of {total:,} characters "
                f"({self.left_out / total:.1%}, the streams' ends, the same every epoch); "
                f"a train.seq_len that divides the stream length {self.stream_len:,}, or "
                f"data.batching=random, reaches them")

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch k of an epoch: (x, y), int64 arrays of shape [B, T]."""
        if not 0 <= k < self.batches_per_epoch:
            raise IndexError(f"batch {k} is outside 0..{self.batches_per_epoch - 1}")
        cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return self._x[:, cols].astype(np.int64), self._y[:, cols].astype(np.int64)


class RandomWindows:
    """B windows of T+1 characters at uniformly random starts; no state carried between batches.

    x = window[:, :T], y = window[:, 1:]. The windows come from `rng` (a numpy Generator the
    trainer owns and checkpoints), so `get(k)` depends on the generator's state, not on k; k is
    only range-checked. An "epoch" is max(1, N // (B*T)) batches, about one pass's worth of
    characters, so epoch-based schedules and limits mean the same as with contiguous batching.
    """

    stateful = False
    by_document = False

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator):
        n, B, T = len(ids), batch_size, seq_len
        if n < min_train_chars(B, T, "random"):
            raise _too_small(n, B, T, "random")
        self.ids, self.rng = ids, rng
        self.batch_size, self.seq_len = B, T
        self.batches_per_epoch = max(1, n // (B * T))
        self._offsets = np.arange(T + 1)

    def describe(self) -> None:
        """Nothing to report: the windows are drawn anywhere in the text."""
        return None

    def get(self, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A fresh random batch: (x, y), int64 arrays of shape [B, T]."""
        if not 0 <= k < self.batches_per_epoch:
            raise IndexError(f"batch {k} is outside 0..{self.batches_per_epoch - 1}")
        # Start s needs s + T <= N - 1 for the last target, so s is drawn from [0, N - T).
        starts = self.rng.integers(0, len(self.ids) - self.seq_len, size=self.batch_size)
        windows = self.ids[starts[:, None] + self._offsets].astype(np.int64)
        return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])


def make_batches(ids: np.ndarray, train_cfg, batching: str,
                 rng: np.random.Generator | None = None) -> ContiguousBatches | RandomWindows:
    """The batcher named by data.batching, sized by train.batch_size and train.seq_len."""
    if batching == "contiguous":
        return ContiguousBatches(ids, train_cfg.batch_size, train_cfg.seq_len)
    if batching == "random":
        if rng is None:
            raise ValueError("random batching needs a numpy Generator (rng)")
        return RandomWindows(ids, train_cfg.batch_size, train_cfg.seq_len, rng)
    raise ValueError(f"data.batching must be one of contiguous, random; got {batching!r}")
