"""Seeing inside the network: how far back a gradient reaches, and whether the gradients are right.

`gradient_decay(model, ids, target)` answers "how much does the last prediction depend on the
characters before it?" The model reads a window of T characters from a zero state (eval mode, no
dropout); only the loss of predicting the character after the window is backpropagated, so the
gradient at each earlier step has travelled back through time alone. For every layer k it
reports, at distance d = 0 .. T-1 steps back from the last step,

    norms[d]        = || dL/dh_{T-1-d} ||             (the layer's hidden output, 2-norm over H)
    decay_per_step  = geometric mean of norms[d+1] / norms[d], d = 0 .. T-2
                    = (norms[T-1] / norms[0]) ** (1 / (T-1))    (the product telescopes)
    steps_to_threshold = the smallest d with norms[d] < threshold * norms[0]  (threshold 1e-3),
                         or None when the gradient stays above it within the window

A vanilla tanh RNN typically loses three orders of magnitude in a dozen steps; an LSTM's cell
path keeps the gradient alive much longer. The numbers are computed in float64 whatever the
checkpoint's dtype, so a gradient that decays below float32's range still shows its size.

`check_random_model(...)` is `charrnn gradcheck`: a tiny random float64 model checked against
central differences with charrnn.gradcheck.check_model.

Everything here returns plain data (dicts, lists, floats); `format_*` turn it into text tables.
"""

from __future__ import annotations

import math

import numpy as np

from charrnn.config import ModelConfig
from charrnn.nn import cells
from charrnn.nn.model import CharRNN
from charrnn.tools import gradcheck
from charrnn.store.text import DataError
from charrnn.store.vocab import UnknownCharactersError

THRESHOLD = 1e-3


# -- gradient decay through time ---------------------------------------------------------------

def as_float64(model: CharRNN) -> CharRNN:
    """The same model in float64 (itself when it already is)."""
    if model.dtype == np.float64:
        return model
    copy = CharRNN(model.vocab_size, model.spec, dtype=np.float64, seed=0)
    copy.params.copy_from(model.params.views)
    return copy


def gradient_decay(model: CharRNN, ids, target: int, threshold: float = THRESHOLD) -> dict:
    """Norms of dL/dh_t per layer for the loss of predicting `target` after the window `ids`.

    ids: 1-D sequence of T >= 2 character ids (the window); target: the id of the next character.
    Returns {"window", "loss", "threshold", "layers": [{"layer", "norms", "decay_per_step",
    "steps_to_threshold"}, ...]} with norms[d] at distance d from the last step (see module doc).
    """
    model = as_float64(model)
    ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
    T = ids.shape[1]
    if T < 2:
        raise ValueError("the window must hold at least 2 characters")
    logits, _, cache = model.forward(ids, state=None, train=False)
    last = logits[0, -1] - logits[0, -1].max()
    probs = np.exp(last) / np.exp(last).sum()
    loss = -math.log(probs[target])
    dlogits = np.zeros_like(logits)
    dlogits[0, -1] = probs
    dlogits[0, -1, target] -= 1.0
    traces = [np.zeros((T, 1, model.hidden_size)) for _ in range(model.layers)]
    model.backward(dlogits, cache, dh_traces=traces)
    layers = []
    for k, trace in enumerate(traces):
        norms = np.linalg.norm(trace[::-1, 0, :], axis=1)        # index = distance from the end
        layers.append({"layer": k, "norms": [float(n) for n in norms],
                       "decay_per_step": decay_per_step(norms),
                       "steps_to_threshold": steps_to_threshold(norms, threshold)})
    return {"window": T, "loss": float(loss), "threshold": threshold, "layers": layers}


def decay_per_step(norms) -> float | None:
    """Geometric mean of the successive ratios norms[d+1] / norms[d]; None without a gradient."""
    norms = np.asarray(norms, dtype=np.float64)
    if len(norms) < 2 or not norms[0] > 0:
        return None
    if norms[-1] == 0:
        return 0.0
    return float(math.exp((math.log(norms[-1]) - math.log(norms[0])) / (len(norms) - 1)))


def steps_to_threshold(norms, threshold: float = THRESHOLD) -> int | None:
    """The first distance d with norms[d] < threshold * norms[0], or None within the window."""
    norms = np.asarray(norms, dtype=np.float64)
    below = np.flatnonzero(norms < threshold * norms[0]) if len(norms) else []
    return int(below[0]) if len(below) else None


def diagnose_text(model: CharRNN, vocab, text: str, window: int = 100, offset: int = 0,
                  threshold: float = THRESHOLD) -> dict:
    """gradient_decay on text[offset : offset + window], predicting text[offset + window].

    Raises DataError when the text is too short, UnknownCharactersError for characters outside
    the model's vocabulary. The result also names the model and the window's place in the text.
    """
    if window < 2:
        raise DataError(f"--window must be at least 2; got {window}")
    need = offset + window + 1
    if len(text) < need:
        raise DataError(
            f"the text has {len(text)} characters, but a window of {window} from offset {offset} "
            f"needs {need} (the window plus the character it predicts); give more text, a smaller "
            f"--window or a smaller --offset")
    try:
        ids = vocab.encode(text[offset:need])
    except UnknownCharactersError as e:
        shown = ", ".join(repr(c) for c in sorted(e.unknown)[:10])
        raise DataError(
            f"the window and the character it predicts (characters {offset} to {need - 1}) have "
            f"{e.count} character(s) not in the model's vocabulary ({shown}); use text like the "
            f"training text, or another --offset") from None
    result = gradient_decay(model, ids[:-1], int(ids[-1]), threshold)
    spec = model.spec
    result.update({"offset": offset, "cell": spec.cell, "nonlinearity": spec.nonlinearity,
                   "num_layers": spec.layers, "hidden_size": spec.hidden_size,
                   "predicted": text[need - 1]})
    return result


def table_distances(window: int) -> list[int]:
    """0, 1, 2, 5, 10, 20, 50, ... below `window`, and the last distance (window - 1)."""
    out, scale = [0], 1
    while True:
        steps = [m * scale for m in (1, 2, 5) if m * scale < window]
        if not steps:
            break
        out += steps
        scale *= 10
    if out[-1] != window - 1:
        out.append(window - 1)
    return out


def describe_model(result: dict) -> str:
    cell = result["cell"]
    if cell in cells.CELLS and len(cells.nonlinearities_of(cells.CELLS[cell])) > 1:   # rnn
        cell = f"{result['nonlinearity']} {cell}"
    return f"{cell}, {result['num_layers']} layer(s) x {result['hidden_size']}"


def format_decay(result: dict) -> str:
    """The text report of diagnose_text: a summary row per layer and a table of norms."""
    T, thr = result["window"], result["threshold"]
    lines = [f"model: {describe_model(result)}",
             f"window: {T} characters from offset {result['offset']}; loss of predicting "
             f"{result['predicted']!r} after it: {result['loss']:.4f} nats",
             "",
             f"{'layer':>5}  {'decay/step':>10}  steps to {thr:g}"]
    for layer in result["layers"]:
        decay = layer["decay_per_step"]
        steps = layer["steps_to_threshold"]
        lines.append(f"{layer['layer']:>5}  {'-' if decay is None else f'{decay:.4f}':>10}  "
                     f"{'none within window' if steps is None else steps}")
    distances = table_distances(T)
    lines += ["", "||dL/dh|| at each distance (steps back from the last character):",
              "distance " + "".join(f"{d:>10}" for d in distances)]
    for layer in result["layers"]:
        lines.append(f"layer {layer['layer']:<3}" +
                     "".join(f"{layer['norms'][d]:>10.2e}" for d in distances))
    return "\n".join(lines)


# -- gradient check of a tiny random model ------------------------------------------------------

def check_random_model(cell: str = "lstm", layers: int = 2, nonlinearity: str = "tanh",
                       dropout: float = 0.0, seed: int = 0, vocab_size: int = 6,
                       embed_size: int = 3, hidden_size: int = 4, batch: int = 3,
                       steps: int = 10) -> list[dict]:
    """check_model on a small random float64 CharRNN -> [{"name", "entries", "max_rel_error"}]."""
    spec = ModelConfig(cell=cell, nonlinearity=nonlinearity, layers=layers,
                     hidden_size=hidden_size, embed_size=embed_size, dropout=dropout)
    model = CharRNN(vocab_size, spec, dtype=np.float64, seed=seed)
    results = gradcheck.check_model(model, batch=batch, steps=steps, seed=seed)
    return [{"name": r.name, "entries": r.size, "max_rel_error": r.max_rel_error}
            for r in results]


def format_gradcheck(results: list[dict], tolerance: float) -> tuple[str, bool]:
    """(the table and summary line, whether every gradient is within tolerance)."""
    width = max(len("parameter"), *(len(r["name"]) for r in results))
    lines = [f"{'parameter':<{width}}  {'entries':>7}  {'max rel error':>13}  result"]
    failed = []
    for r in results:
        ok = r["max_rel_error"] <= tolerance
        if not ok:
            failed.append(r["name"])
        lines.append(f"{r['name']:<{width}}  {r['entries']:>7}  {r['max_rel_error']:>13.2e}  "
                     f"{'pass' if ok else 'FAIL'}")
    worst = max(results, key=lambda r: r["max_rel_error"])
    if failed:
        lines.append(f"FAIL: {len(failed)} of {len(results)} gradients differ from central "
                     f"differences by more than {tolerance:g} ({', '.join(failed)})")
    else:
        lines.append(f"ok: all {len(results)} gradients match central differences to "
                     f"{tolerance:g} (worst {worst['max_rel_error']:.2e}, {worst['name']})")
    return "\n".join(lines), not failed
