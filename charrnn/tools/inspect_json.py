"""`charrnn inspect --json`: every figure as one JSON object, written as it is formatted.

The schema (format "charrnn-inspect/1"; N characters, K predictions, L layers, H units):

    format         "charrnn-inspect/1"
    checkpoint     the checkpoint file read
    model          {"cell", "layers", "hidden_size", "vocab_size"}
    vocab          the model's characters, in id order
    text           the characters inspected (outside-vocabulary ones removed with --unknown skip)
    chars, chars_scored, chars_skipped           N, N - 1, characters skipped
    loss, bits_per_char, perplexity               as `charrnn eval` (nats, bits, exp(loss))
    surprisal      [N]: -log2 p(x_t | x_0 .. x_{t-1}) in bits; null for the first character
    dynamic, dynamic_surprisal   with --dynamic only: the settings and bits_per_char of the
                   dynamic pass (docs/dynamic-eval.md) and its surprisal [N], as surprisal's
    top_k          K
    top_chars      [N][K]: the K most likely characters after reading x_t (row t - 1 is what
                   the model expected at t), most likely first
    top_probs      [N][K]: their probabilities
    states         {name: [L][N][H]}: each layer's state after reading x_t ("h"; "c" for the
                   LSTM; with --gates the gate activations too: "i", "f", "g", "o" / "r", "z", "n")
    spans          [{"start", "end", "bits", "text"}]: the most surprising windows
    units          [{"feature", "description", "units": [{"layer", "state", "unit", "r"}]}]:
                   the units most correlated with each text feature (charrnn.tools.units)

Numbers in arrays have 7 significant digits (float32's precision); the arrays are written row
by row, so memory does not grow with the output (it is about N x L x H x arrays x 11 bytes).

Public API:
  write_json(stream, ins, ranked, spans, checkpoint, span_width)
"""

from __future__ import annotations

import json
import math

import numpy as np


def _numbers(values) -> str:
    """A JSON array of numbers with 7 significant digits; NaN as null."""
    return "[" + ",".join("null" if v != v else f"{v:.7g}" for v in np.asarray(values).tolist()) + "]"


def write_json(stream, ins, ranked: list[dict], spans: list[tuple[int, float]], checkpoint: str,
               span_width: int) -> None:
    """Write the inspection `ins` (an Inspection) as the JSON object of the module docstring."""
    loss = ins.loss
    head = {
        "format": "charrnn-inspect/1", "checkpoint": checkpoint,
        "model": {"cell": ins.cell, "layers": ins.layers, "hidden_size": ins.hidden_size,
                  "vocab_size": len(ins.vocab)},
        "vocab": ins.vocab, "text": ins.text, "chars": len(ins.text),
        "chars_scored": len(ins.text) - 1, "chars_skipped": ins.chars_skipped, "loss": loss,
        "bits_per_char": ins.bits_per_char,
        "perplexity": math.exp(loss) if loss < 700 else None, "top_k": ins.top_ids.shape[1],
    }
    w = stream.write
    w(json.dumps(head)[:-1])
    w(', "surprisal": ' + _numbers(ins.surprisal))
    if ins.dynamic_surprisal is not None:       # charrnn inspect --dynamic
        w(', "dynamic": ' + json.dumps({**ins.dynamic, "bits_per_char": ins.dynamic_bits_per_char}))
        w(', "dynamic_surprisal": ' + _numbers(ins.dynamic_surprisal))
    w(', "top_chars": [' + ",".join(json.dumps([ins.vocab[i] for i in row])
                                    for row in ins.top_ids.tolist()) + "]")
    w(', "top_probs": [' + ",".join(_numbers(row) for row in ins.top_probs) + "]")
    w(', "states": {')
    for j, name in enumerate(ins.state_names):
        w(("," if j else "") + json.dumps(name) + ": [")
        for layer in range(ins.layers):
            w(("," if layer else "") + "[")
            for t, row in enumerate(ins.states[(layer, name)]):
                w(("," if t else "") + _numbers(row))
            w("]")
        w("]")
    w("}")
    tail = {"spans": [{"start": s, "end": min(s + span_width, len(ins.text)), "bits": b,
                       "text": ins.text[s:s + span_width]} for s, b in spans],
            "units": ranked}
    w(", " + json.dumps(tail)[1:] + "\n")
