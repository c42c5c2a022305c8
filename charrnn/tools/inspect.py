"""`charrnn inspect`: what the model sees, character by character and unit by unit.

One pass over the text, the exact sequential pass of `charrnn eval`
(charrnn.infer.evaluate.sequential_forward: batch 1, zero initial state, chunks of
`chunk_len` characters with the state carried), keeping for every character t = 0 .. N-1:

    surprisal[t] = -log2 p(x_t | x_0 .. x_{t-1})   bits; NaN at t = 0 (nothing predicts x_0)
                 = eval's per-character loss / ln 2, so mean(surprisal[1:]) = eval's bits/char
    top_ids[t], top_probs[t]   the k most likely characters after reading x_t (what the model
                 expects at t + 1; row t - 1 is what it expected at t), probabilities descending
    states[(layer, name)][t]   every layer's state after reading x_t, by the cell's STATE names
                 (h; h and c for the LSTM), and with gates=True each gate's activation too
                 (charrnn.nn.cells' trace: LSTM i, f, g, o; GRU r, z, n)

Shapes: N characters, K = min(top_k, V), H hidden units; surprisal [N] float64, top_ids [N, K]
int, top_probs [N, K] float64, each states array [N, H] in the model's dtype. Memory grows
linearly with N: N * H * (layers x arrays) * 4 bytes for float32 models (a 100,000-character
text through a 2-layer 256-unit LSTM keeps 2 x 2 arrays: about 410 MB), plus N * K * 16 bytes.

Public API:
  inspect_text(model, vocab, text, top_k=5, gates=False, unknown="error", chunk_len=1024)
      -> Inspection
  Inspection    the figures above, with loss / bits_per_char / chars_skipped and unit names
  surprising_spans(surprisal, width, count) -> [(start, bits)]   the most surprising windows
  find_units(ins, after, per_feature) -> charrnn.tools.units.rank_units of the text's features
  DEFAULT_TOP_K, SPAN_WIDTH, SPAN_COUNT
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from charrnn.infer.evaluate import (
    DEFAULT_CHUNK,
    EvalError,
    char_nll,
    encode_text,
    sequential_forward,
)
from charrnn.tools import units as unit_finder

DEFAULT_TOP_K = 5
SPAN_WIDTH = 12        # characters per reported span
SPAN_COUNT = 5


@dataclass
class Inspection:
    """What `inspect_text` measured (shapes in the module docstring)."""
    text: str                    # the characters read (outside-vocabulary ones dropped with skip)
    vocab: list[str]             # the model's characters, in id order
    cell: str
    layers: int
    hidden_size: int
    surprisal: np.ndarray        # [N] bits; NaN at 0
    top_ids: np.ndarray          # [N, K] ids of the most likely next characters after x_t
    top_probs: np.ndarray        # [N, K] their probabilities
    states: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)   # [N, H] each
    chars_skipped: int = 0
    dynamic_surprisal: np.ndarray | None = None   # [N] bits under dynamic evaluation (--dynamic)
    dynamic: dict | None = None                   # its settings (charrnn/infer/dynamic.py)

    @property
    def dynamic_bits_per_char(self) -> float | None:
        """Mean dynamic surprisal of x_1 .. x_{N-1} (bits), or None without --dynamic."""
        if self.dynamic_surprisal is None:
            return None
        return float(np.mean(self.dynamic_surprisal[1:]))

    @property
    def loss(self) -> float:
        """Mean negative log-likelihood of x_1 .. x_{N-1}, nats per character (eval's loss)."""
        return self.bits_per_char * math.log(2)

    @property
    def bits_per_char(self) -> float:
        return float(np.mean(self.surprisal[1:]))

    @property
    def state_names(self) -> list[str]:
        """The names of the arrays kept per layer, in the cell's order (h first)."""
        return list(dict.fromkeys(name for _, name in self.states))


def inspect_text(model, vocab, text: str, top_k: int = DEFAULT_TOP_K, gates: bool = False,
                 unknown: str = "error", chunk_len: int = DEFAULT_CHUNK) -> Inspection:
    """Run `text` through `model` once and keep every figure (module docstring).

    unknown: 'error' raises UnknownTextError for characters outside the vocabulary, 'skip'
    drops them (counted in chars_skipped). EvalError for a text of fewer than 2 characters
    (after skipping); ValueError for top_k < 1.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1; got {top_k}")
    ids, skipped, _ = encode_text(vocab, text, unknown, "the text")
    if len(ids) < 2:
        raise EvalError(f"the text has {len(ids)} character(s) the model knows; inspecting "
                        f"needs at least 2 (one to read, one to predict)")
    n, k = len(ids), min(top_k, len(vocab))
    keep = _kept_names(model.cell_module, gates)
    states = {(layer, name): np.empty((n, model.hidden_size), model.dtype)
              for layer in range(model.layers) for name in keep}
    surprisal = np.full(n, np.nan)
    top_ids = np.empty((n, k), np.int64)
    top_probs = np.empty((n, k))
    for start, logits, cache in sequential_forward(model, ids, chunk_len):
        stop = start + len(logits)
        targets = np.asarray(ids[start + 1:stop + 1], np.int64)    # one short at the text's end
        surprisal[start + 1:start + 1 + len(targets)] = (
            char_nll(logits[:len(targets)], targets) / math.log(2))
        top_ids[start:stop], top_probs[start:stop] = _top(logits, k)
        for layer, layer_cache in enumerate(cache["layers"]):
            trace = model.cell_module.trace(layer_cache)
            for name in keep:
                states[(layer, name)][start:stop] = trace[name][:, 0]
    return Inspection(text=vocab.decode(ids), vocab=vocab.to_list(), cell=model.cell,
                      layers=model.layers, hidden_size=model.hidden_size, surprisal=surprisal,
                      top_ids=top_ids, top_probs=top_probs, states=states,
                      chars_skipped=int(skipped))


def _kept_names(cell_module, gates: bool) -> list[str]:
    """The cell's STATE names, then (gates) its gate names that are not states."""
    names = list(cell_module.STATE)
    return names + [g for g in cell_module.GATES if g not in names] if gates else names


def _top(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids [T, k], probabilities [T, k]) of the k largest softmax(logits) rows [T, V], in
    float64, most likely first."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    part = np.argpartition(-p, k - 1, axis=1)[:, :k] if k < p.shape[1] else np.tile(
        np.arange(p.shape[1]), (len(p), 1))
    pk = np.take_along_axis(p, part, axis=1)
    order = np.argsort(-pk, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(pk, order, axis=1)


def find_units(ins: Inspection, after=unit_finder.DEFAULT_AFTER,
               per_feature: int = unit_finder.DEFAULT_PER_FEATURE) -> list[dict]:
    """The units of every kept state array ranked for each feature of the inspected text
    (charrnn.tools.units.rank_units); [] when per_feature is 0."""
    if per_feature < 1:
        return []
    return unit_finder.rank_units(unit_finder.text_features(ins.text, after), ins.states,
                                  per_feature)


def surprising_spans(surprisal: np.ndarray, width: int = SPAN_WIDTH, count: int = SPAN_COUNT
                     ) -> list[tuple[int, float]]:
    """The `count` windows of `width` characters with the most bits in total, not overlapping,
    most surprising first: [(start index, total bits)]. Characters without a surprisal (the
    first) count 0."""
    bits = np.nan_to_num(np.asarray(surprisal, np.float64))
    width = max(1, min(width, len(bits)))
    totals = np.convolve(bits, np.ones(width), mode="valid")      # totals[s] = bits[s:s+width]
    spans = []
    for start in np.argsort(-totals, kind="stable"):
        if len(spans) == count:
            break
        if all(abs(int(start) - s) >= width for s, _ in spans):
            spans.append((int(start), float(totals[start])))
    return spans
