"""The character vocabulary: every distinct character of the training text, in code-point order.

Encoding and decoding are vectorised: text becomes an array of code points (one byte each for
ASCII text, else UTF-32) and a lookup table maps code points to ids. Text is processed in chunks
of CHUNK characters written into one preallocated output array, so encoding a 100 MB corpus costs
about the text plus the ids plus a few MB, never the 4x of a whole-text UTF-32 copy.

API summary:
  Vocab.from_text(text, eod=None) / Vocab(symbols, eod=None) / Vocab.from_list(symbols, eod=None)
  / Vocab.from_json(s)
  vocab.symbols, len(vocab), char in vocab, vocab.index(char), vocab.dtype
  vocab.eod, vocab.eod_id                    the reserved end-of-document symbol (documents mode) or None
  vocab.encode(text) -> ids                  raises UnknownCharactersError on unseen characters
  vocab.encode_skipping(text) -> (ids, n_skipped, unknown_chars)   drops unseen characters
  vocab.decode(ids) -> str
  vocab.to_list() / vocab.to_json()
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np

from charrnn.errors import CharrnnError

CHUNK = 1 << 18  # characters per encoding chunk: ~4 MB of temporaries (int64 indices, int32 ids), few calls

_SENTINEL = -1  # lookup-table value for "not in the vocabulary"

# The end-of-document symbol of documents mode (U+0003, ASCII's END OF TEXT): a vocabulary
# reserves it with `eod`, and checkpoints store it beside the symbol list.
EOD = "\x03"


class UnknownCharactersError(CharrnnError, ValueError):
    """Text has characters outside the vocabulary.

    Attributes: `unknown` (set of the distinct unknown characters) and `count` (how many
    occurrences in the text).
    """

    def __init__(self, unknown: set[str], count: int):
        self.unknown = set(unknown)
        self.count = int(count)
        shown = ", ".join(repr(c) for c in sorted(self.unknown)[:10])
        more = ", ..." if len(self.unknown) > 10 else ""
        super().__init__(
            f"the text has {self.count} character(s) not in the model's vocabulary "
            f"({len(self.unknown)} distinct: {shown}{more}); remove them or skip unknown characters"
        )


def _code_points(chunk: str) -> np.ndarray:
    """Code points of a str as uint8 (ASCII, 1 byte/char) or uint32 (UTF-32), without a loop."""
    if chunk.isascii():  # O(1) in CPython: compact strings know whether they are ASCII
        return np.frombuffer(chunk.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(chunk.encode("utf-32-le"), dtype="<u4")


def _chunks(text: str) -> Iterable[str]:
    """Consecutive slices of CHUNK characters (read at call time, so tests can shrink it)."""
    for start in range(0, len(text), CHUNK):
        yield text[start:start + CHUNK]


def _ids_dtype(n: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids 0..n-1 (uint8 up to 256 symbols)."""
    if n <= 1 << 8:
        return np.dtype(np.uint8)
    if n <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


class Vocab:
    """An ordered set of single characters; a character's id is its position in `symbols`.

    eod: the symbol reserved as end of document (one of `symbols`), or None: no documents.
    """

    def __init__(self, symbols: Iterable[str], eod: str | None = None):
        symbols = list(symbols)
        if eod is not None and eod not in symbols:
            raise ValueError(f"the end-of-document symbol {eod!r} is not among the symbols")
        self.eod = eod
        for s in symbols:
            if not isinstance(s, str) or len(s) != 1:
                raise ValueError(f"vocabulary symbols must be single characters; got {s!r}")
        if len(set(symbols)) != len(symbols):
            raise ValueError("vocabulary symbols must be distinct; the list has duplicates")
        self.symbols: list[str] = symbols
        self._index = {c: i for i, c in enumerate(symbols)}
        self._codes = np.array([ord(c) for c in symbols], dtype=np.uint32)  # id -> code point
        self.dtype = _ids_dtype(len(symbols))
        # code point -> id; one slot past the largest code point catches every unknown one.
        top = int(self._codes.max()) + 1 if symbols else 0
        self._table = np.full(top + 1, _SENTINEL, dtype=np.int32)
        self._table[self._codes] = np.arange(len(symbols), dtype=np.int32)
        self.eod_id = None if eod is None else self._index[eod]

    @classmethod
    def from_text(cls, text: str, eod: str | None = None) -> Vocab:
        """Every distinct character of `text` (and `eod`, reserved), in code-point order (as
        char-rnn and nanoGPT)."""
        seen = np.zeros(0, dtype=np.int64) if eod is None else np.array([ord(eod)])
        for chunk in _chunks(text):
            present = np.flatnonzero(np.bincount(_code_points(chunk)))
            seen = np.union1d(seen, present)
        return cls((chr(int(c)) for c in seen), eod=eod)

    @classmethod
    def from_list(cls, symbols: list[str], eod: str | None = None) -> Vocab:
        """Rebuild from `to_list()` output (symbols in id order) and the stored `eod`."""
        return cls(symbols, eod=eod)

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        symbols = json.loads(text)
        if not isinstance(symbols, list):
            raise ValueError("a vocabulary in JSON must be a list of single-character strings")
        return cls(symbols)

    def to_list(self) -> list[str]:
        return list(self.symbols)

    def to_json(self) -> str:
        # ensure_ascii keeps control characters and emoji safe in safetensors' string metadata.
        return json.dumps(self.symbols, ensure_ascii=True)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, char: object) -> bool:
        return char in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and (self.symbols, self.eod) == (other.symbols, other.eod)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} symbols)"

    def index(self, char: str) -> int:
        """The id of one character; UnknownCharactersError if it is not in the vocabulary."""
        try:
            return self._index[char]
        except (KeyError, TypeError):
            raise UnknownCharactersError({char}, 1) from None

    def _lookup(self, codes: np.ndarray) -> np.ndarray:
        """int32 ids for code points; _SENTINEL where unknown."""
        # Clip so any code point above the table lands on its last slot, which is the sentinel.
        return np.take(self._table, codes, mode="clip")

    def _encode(self, text: str, skip: bool) -> tuple[np.ndarray, int, set[str]]:
        """Encode chunk by chunk into one preallocated array; returns (ids, n_unknown, unknown)."""
        out = np.empty(len(text), dtype=self.dtype)
        n_out, n_unknown, unknown = 0, 0, set()
        for chunk in _chunks(text):
            codes = _code_points(chunk)
            ids = self._lookup(codes)
            bad = ids < 0
            if bad.any():
                n_bad = int(np.count_nonzero(bad))
                n_unknown += n_bad
                unknown.update(chr(int(c)) for c in np.unique(codes[bad]))
                ids = ids[~bad]
            out[n_out:n_out + len(ids)] = ids
            n_out += len(ids)
        if n_out < len(out):
            out = out[:n_out].copy()  # only when skipping: don't pin the larger buffer
        if n_unknown and not skip:
            raise UnknownCharactersError(unknown, n_unknown)
        return out, n_unknown, unknown

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text` as a 1-D array of `self.dtype` (uint8 for <= 256 symbols, else uint16/32).

        Raises UnknownCharactersError (with `.unknown` and `.count`) if any character is not in
        the vocabulary; the whole text is scanned first so the error reports every one.
        """
        return self._encode(text, skip=False)[0]

    def encode_skipping(self, text: str) -> tuple[np.ndarray, int, set[str]]:
        """Like encode, but drops unknown characters: returns (ids, n_skipped, unknown_chars)."""
        return self._encode(text, skip=True)

    def decode(self, ids) -> str:
        """The text of a sequence of ids (any integer array-like, or one int)."""
        arr = np.asarray(ids)
        if arr.size == 0:
            return ""
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"ids must be integers; got an array of {arr.dtype}")
        if arr.min() < 0 or arr.max() >= len(self):
            raise ValueError(
                f"ids must be in [0, {len(self)}); got values from {arr.min()} to {arr.max()}"
            )
        return self._codes[arr.ravel()].astype("<u4", copy=False).tobytes().decode("utf-32-le")
