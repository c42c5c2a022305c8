"""Loss, bits per character and perplexity of a model on a text: one exact sequential pass.

The protocol (shared by `charrnn eval` and the validation pass of `charrnn train`):
- the text's ids x_0 .. x_{N-1} are read once, in order, as a single sequence (batch 1) from a
  zero initial state; the state is carried from one chunk of `chunk_len` characters to the next,
  so chunking changes nothing but speed and memory;
- x_0 is not scored (nothing precedes it); every later x_t is scored with the model's prediction
  from x_0 .. x_{t-1}:  nll_t = -log softmax(logits_{t-1})[x_t];
- n_scored = N - 1 (N capped by max_chars); loss = sum(nll_t) / n_scored in nats per character,
  bits per character = loss / ln 2, perplexity = exp(loss).

Each chunk is one call of CharRNN.forward (so a layer's input projection for the whole chunk is
one matrix product, and the numbers are the training forward's); the log-softmax and the sum
are done in float64. A model of two or more layers on a text of more than a few chunks runs
the same operations as a two-stage pipeline over both cores where the platform can fork
(Linux): layer 0 of the next chunk in a child process while this one runs the layers above
(charrnn/fast/pipeline.py; the same bits, about half the time for two layers).

Parallel streams (`streams` K > 1, opt-in, approximate): one stream is batch 1, so its speed is
bounded by one matrix-vector product per layer and step, about the training throughput. With K
streams the scored positions 1 .. N-1 are cut into K contiguous segments of L = ceil((N-1)/K)
characters, read side by side as a batch of K. Stream k scores x_{1+kL} .. x_{(k+1)L} and
starts reading `warmup` W characters before its segment (from x_0 when kL <= W), from a zero
state, without scoring them. Only characters more than W back from a segment's start are lost
to the model, so the result approaches the exact one as W grows, and equals it (to rounding)
when every stream's warm-up reaches x_0; it costs W + L steps of batch K instead of N - 1 steps
of batch 1.

Public API:
  evaluate_ids(model, ids, chunk_len=DEFAULT_CHUNK, max_chars=None, streams=1, warmup=0,
               pipeline=True)
      -> (total_nll, n_scored)
  evaluate_text(model, vocab, text, unknown="error", chunk_len=DEFAULT_CHUNK, streams=1,
                warmup=0, pipeline=True) -> EvalResult
  EvalResult(loss, bits_per_char, perplexity, chars_scored, chars_skipped, streams,
             warmup).to_dict()
  evaluate_documents(model, ids, eod_id, max_chars=None) -> (nll per document, scored per document)
  evaluate_document_list(model, vocab, docs, unknown="error") -> EvalResult with .documents
  format_result(result) -> str                     the lines `charrnn eval` prints
  sequential_forward(model, ids, chunk_len) -> iterator of (start, logits, cache)
      the exact pass's forward calls (charrnn inspect reads its states from the caches)
  char_nll(logits, targets) -> per-character nll [T] (nats, float64)
  encode_text(vocab, text, unknown, what) -> (ids, n_skipped, unknown_chars)
  EvalError        a text that cannot be evaluated (empty, one character)
  UnknownTextError characters outside the vocabulary (an UnknownCharactersError)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.fast import blas
from charrnn.fast.parallel import can_fork
from charrnn.fast.pipeline import pipelined_nll
from charrnn.store.vocab import UnknownCharactersError

DEFAULT_CHUNK = 1024  # characters per forward call: long enough to amortise, small in memory
LOGITS_BUDGET = 32 << 20  # bytes of float64 logits per forward call: caps chunks of a big vocabulary
PIPELINE_MIN_CHUNKS = 4  # shorter texts: forking the layer-0 process costs more than it saves


class EvalError(CharrnnError, ValueError):
    """A text that cannot be evaluated; one sentence naming the problem and the fix."""


class UnknownTextError(UnknownCharactersError):
    """Characters outside the vocabulary in a text the user gave (a prime, an eval text).

    The message names the text, how many characters and which, and the `--unknown skip` fix.
    """

    def __init__(self, what: str, unknown: set[str], count: int):
        super().__init__(unknown, count)
        shown = ", ".join(repr(c) for c in sorted(self.unknown)[:10])
        more = ", ..." if len(self.unknown) > 10 else ""
        self.args = (f"{what} has {self.count} character(s) not in the model's vocabulary "
                     f"({len(self.unknown)} distinct: {shown}{more}); remove them or pass "
                     f"--unknown skip to drop them",)


def encode_text(vocab, text: str, unknown: str, what: str):
    """(ids, n_skipped, unknown chars) of a user's text; unknown='error' raises UnknownTextError
    naming `what` ("the text", "the prime"), unknown='skip' drops those characters."""
    if unknown not in ("error", "skip"):
        raise ValueError(f"unknown must be 'error' or 'skip'; got {unknown!r}")
    ids, skipped, chars = vocab.encode_skipping(text)
    if skipped and unknown == "error":
        raise UnknownTextError(what, chars, skipped)
    return ids, skipped, chars


@dataclass
class EvalResult:
    loss: float            # mean negative log-likelihood, nats per character
    bits_per_char: float   # loss / ln 2
    perplexity: float      # exp(loss)
    chars_scored: int      # characters predicted (the text's length minus one)
    chars_skipped: int = 0  # characters dropped as outside the vocabulary (--unknown skip)
    streams: int = 1        # parallel streams (1: the exact protocol)
    warmup: int = 0         # characters each stream reads before its segment (streams > 1)
    documents: list | None = None   # documents mode: [{"document", "chars_scored", "loss"}]

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.documents is None:
            del d["documents"]
        return d


def char_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log softmax(logits)[target] of each row, in nats, float64.  logits [T, V], targets [T]
    -> [T]: the per-character losses whose mean is eval's loss. One float64 copy of the
    logits, worked on in place."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    picked = z[np.arange(len(targets)), targets]
    np.exp(z, out=z)
    return np.log(z.sum(axis=1)) - picked


def _chunk_nll(logits: np.ndarray, targets: np.ndarray) -> float:
    """Sum over rows of -log softmax(logits)[target], in float64.  logits [T, V], targets [T]."""
    return float(char_nll(logits, targets).sum())


def chunk_for(vocab_size: int, chunk_len: int = DEFAULT_CHUNK) -> int:
    """chunk_len, shortened so that a chunk's float64 logits [chunk, V] fit LOGITS_BUDGET."""
    return max(1, min(chunk_len, LOGITS_BUDGET // (8 * max(vocab_size, 1))))


def sequential_forward(model, ids, chunk_len: int = DEFAULT_CHUNK):
    """The exact pass's forward calls: read ids (1-D) once, in order, from a zero state, in
    chunks of chunk_len characters with the state carried. Yields (start, logits [T, V], cache)
    per chunk: row t of logits is the prediction after reading ids[start + t]; cache is
    CharRNN.forward's (per-layer states: charrnn.nn.cells' trace)."""
    state, chunk_len = None, chunk_for(model.vocab_size, chunk_len)
    for start in range(0, len(ids), chunk_len):       # ids are converted a chunk at a time
        x = np.asarray(ids[start:start + chunk_len]).astype(np.int64)
        logits, state, cache = model.forward(x[None, :], state)
        yield start, logits[0], cache


def evaluate_ids(model, ids, chunk_len: int = DEFAULT_CHUNK, max_chars: int | None = None,
                 streams: int = 1, warmup: int = 0, pipeline: bool = True) -> tuple[float, int]:
    """(total negative log-likelihood in nats, number of characters scored) of a sequence.

    ids: 1-D character ids; only the first `max_chars` are used when it is given. See the module
    docstring for the protocol (and for streams > 1, the approximate parallel one). pipeline:
    allow the two-process pipeline of the exact pass (same result; False keeps one process).
    EvalError when fewer than two characters remain.
    """
    ids = np.asarray(ids).reshape(-1)
    if max_chars is not None:
        ids = ids[:max_chars]
    n = len(ids)
    if n < 2:
        raise EvalError(f"the text has {n} character{'s' if n != 1 else ''} after encoding; "
                        f"evaluation needs at least 2 (one to read, one to predict)")
    if chunk_len < 1 or streams < 1 or warmup < 0:
        raise ValueError(f"need chunk_len >= 1, streams >= 1, warmup >= 0; "
                         f"got {chunk_len}, {streams}, {warmup}")
    chunk_len = chunk_for(model.vocab_size, chunk_len)
    if streams > 1:
        return _evaluate_streams(model, ids, streams, warmup, chunk_len), n - 1
    if pipeline and model.layers >= 2 and can_fork() and n - 1 > PIPELINE_MIN_CHUNKS * chunk_len:
        return pipelined_nll(model, ids, chunk_len, _chunk_nll), n - 1
    total = 0.0
    # one BLAS thread, as the pipeline's two processes: the same bits whatever the core count
    # (a threaded product may round differently), and no slower for one-row products
    with blas.limited(1):
        for start, logits, _ in sequential_forward(model, ids[:-1], chunk_len):
            total += _chunk_nll(logits, ids[start + 1:start + 1 + len(logits)].astype(np.int64))
    return total, n - 1


def streams_used(scored: int, streams: int) -> int:
    """The streams a pass over `scored` targets really reads when asked for `streams`: segments
    of ceil(scored / streams) targets, none empty (so never more than the targets)."""
    seg = -(-scored // streams)
    return -(-scored // seg)


def _evaluate_streams(model, ids: np.ndarray, streams: int, warmup: int, chunk_len: int) -> float:
    """Total nll of ids[1:] read as K parallel streams with warm-up (module docstring).

    Row k of the [K, W + L] input grid holds x_{kL - W + t} at step t (padding where that index
    is outside 0 .. N-2); its output at step t >= W scores x_{kL - W + t + 1}. A row whose
    warm-up would start before x_0 has its state zeroed at the step where x_0 arrives, so the
    padding before it has no effect. Forward calls of about `chunk_len` rows each.
    """
    n = len(ids) - 1                                   # inputs x_0 .. x_{n-1}, targets x_1 .. x_n
    seg = -(-n // streams)
    k_rows = streams_used(n, streams)
    warm = min(warmup, (k_rows - 1) * seg)             # longer warm-up than any row can use: none
    starts = np.arange(k_rows) * seg - warm            # index of each row's step-0 input
    steps = warm + seg
    grid = np.zeros((k_rows, steps + 1), ids.dtype)    # inputs and, shifted by one, targets
    for k, start in enumerate(starts):
        lo = max(start, 0)
        row = ids[lo:start + steps + 1]
        grid[k, lo - start:lo - start + len(row)] = row
    resets = {int(-s): np.flatnonzero(starts == s) for s in starts if s < 0}
    cuts = sorted(set(range(0, steps, max(1, chunk_len // k_rows))) | set(resets))
    state, total = None, 0.0
    for a, b in zip(cuts, cuts[1:] + [steps]):
        if a in resets and state is not None:
            for part in state:                         # rows whose text starts here: zero state
                part[:, resets[a]] = 0
        logits, state, _ = model.forward(grid[:, a:b].astype(np.int64), state)
        t = np.arange(a, b)[None, :]
        keep = (t >= warm) & (starts[:, None] + t + 1 <= n)
        if keep.any():
            total += _chunk_nll(logits[keep], grid[:, a + 1:b + 1][keep])
    return total


def document_spans(ids: np.ndarray, eod_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the documents of EOD d_1 EOD ... d_n EOD: document i is read from
    ids[starts[i]] (its EOD) and scores ids[starts[i] + 1 : ends[i] + 1] (itself, then EOD)."""
    eods = np.flatnonzero(np.asarray(ids) == eod_id)
    return eods[:-1], eods[1:]


def evaluate_documents(model, ids, eod_id: int, max_chars: int | None = None,
                       chunk_len: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(nll [D] float64 in nats, scored [D]) of each document of ids (EOD d_1 EOD ... d_n EOD),
    each read from a zero state: the first D documents whose scored characters fit in max_chars
    (at least one). Documents up to chunk_len characters run side by side, padded, in batches of
    about BATCH_CHARS positions; longer ones alone through evaluate_ids. The figures are those of
    evaluate_ids(EOD + d_i + EOD), up to float rounding."""
    ids = np.asarray(ids).reshape(-1)
    starts, ends = document_spans(ids, eod_id)
    if len(starts) == 0:
        raise EvalError("the text has no document; evaluation needs at least one")
    lengths = ends - starts
    if max_chars is not None:
        lengths = lengths[:max(1, int(np.searchsorted(np.cumsum(lengths), max_chars, "right")))]
    nll = np.zeros(len(lengths))
    for i in np.flatnonzero(lengths > chunk_len):
        nll[i] = evaluate_ids(model, ids[starts[i]:ends[i] + 1], chunk_len, pipeline=False)[0]
    short = np.flatnonzero(lengths <= chunk_len)
    short = short[np.argsort(lengths[short], kind="stable")]
    at = 0
    while at < len(short):
        width = int(lengths[short[min(at + BATCH_ROWS, len(short)) - 1]])
        rows = short[at:at + max(1, min(BATCH_ROWS, BATCH_CHARS // width))]
        nll[rows] = _padded_nll(model, ids, starts[rows], lengths[rows], eod_id)
        at += len(rows)
    return nll, lengths.astype(np.int64)


BATCH_ROWS, BATCH_CHARS = 256, 1 << 15   # documents per forward call, and positions


def _padded_nll(model, ids, starts, lengths, eod_id) -> np.ndarray:
    """Per-row nll of documents read side by side from a zero state, padded after their end."""
    width = int(lengths.max())
    t = np.arange(width)
    valid = t[None, :] < lengths[:, None]
    pos = np.where(valid, starts[:, None] + t[None, :], 0)
    x = np.where(valid, ids[pos].astype(np.int64), eod_id)
    logits, _, _ = model.forward(x)
    z = logits.astype(np.float64)
    z -= z.max(axis=2, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=2))
    target = np.take_along_axis(z, ids[pos + 1].astype(np.int64)[:, :, None], axis=2)[:, :, 0]
    return np.where(valid, lse - target, 0.0).sum(axis=1)


def evaluate_text(model, vocab, text: str, unknown: str = "error",
                  chunk_len: int = DEFAULT_CHUNK, streams: int = 1,
                  warmup: int = 0, pipeline: bool = True) -> EvalResult:
    """Evaluate a text; unknown='error' raises UnknownCharactersError on characters outside the
    vocabulary, unknown='skip' drops them and counts them in chars_skipped. pipeline: as
    evaluate_ids's."""
    if len(text) < 2:
        what = "empty" if not text else "one character long"
        raise EvalError(f"the text is {what}; evaluation needs at least 2 characters "
                        f"(one to read, one to predict)")
    ids, skipped, _ = encode_text(vocab, text, unknown, "the text")
    if skipped and len(ids) < 2:
        raise EvalError(f"only {len(ids)} character(s) of the text are in the model's vocabulary "
                        f"after skipping {skipped}; evaluation needs at least 2")
    streams = streams_used(len(ids) - 1, streams)       # what the result reports
    total, n = evaluate_ids(model, ids, chunk_len, streams=streams, warmup=warmup,
                            pipeline=pipeline)
    loss = total / n
    return EvalResult(loss=loss, bits_per_char=loss / math.log(2),
                      perplexity=math.exp(loss) if loss < 700 else math.inf, chars_scored=n,
                      chars_skipped=int(skipped), streams=streams,
                      warmup=warmup if streams > 1 else 0)


def evaluate_document_list(model, vocab, docs: list[str], unknown: str = "error",
                           chunk_len: int = DEFAULT_CHUNK) -> EvalResult:
    """Evaluate documents (a documents-mode model: vocab.eod set), each from a zero state: it
    reads EOD then the document and scores the document's characters and the EOD after it.
    loss = the sum over documents / the characters scored; result.documents has each one's."""
    if not docs:
        raise EvalError("the text has no document (documents mode: no non-empty line or "
                        "paragraph); evaluation needs at least one")
    eod = vocab.eod
    ids, skipped, _ = encode_text(vocab, eod + eod.join(docs) + eod, unknown, "the text")
    nll, counts = evaluate_documents(model, ids, vocab.eod_id, chunk_len=chunk_len)
    loss = float(nll.sum() / counts.sum())
    per = [{"document": i, "chars_scored": int(n), "loss": float(v / n)}
           for i, (v, n) in enumerate(zip(nll, counts))]
    return EvalResult(loss=loss, bits_per_char=loss / math.log(2),
                      perplexity=math.exp(loss) if loss < 700 else math.inf,
                      chars_scored=int(counts.sum()), chars_skipped=int(skipped), documents=per)


def format_result(r: EvalResult) -> str:
    """The human-readable lines of `charrnn eval` (without --json)."""
    lines = [f"loss:          {r.loss:.6f} nats/char",
             f"bits/char:     {r.bits_per_char:.6f}",
             f"perplexity:    {r.perplexity:.4f}",
             f"chars scored:  {r.chars_scored}"]
    if r.chars_skipped:
        lines.append(f"chars skipped: {r.chars_skipped}")
    if r.documents is not None:
        lines.append(f"documents:     {len(r.documents)}, each from a zero state (--json: each one's loss)")
    if r.streams > 1:
        lines.append(f"protocol:      {r.streams} parallel streams, {r.warmup} characters of "
                     f"warm-up each (approximate; --streams 1 is exact)")
    return "\n".join(lines)
