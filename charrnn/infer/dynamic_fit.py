"""Where dynamic evaluation's settings come from: the gradient's RMS (MS) and a small search.

MS, the root mean square of the training gradient per parameter (Krause et al. 2017, arXiv
1709.07432, section 5), from one of two sources:

  gradient_ms   the paper's: with the final weights, batch 1, segments of n characters read in
                order with the state carried (the same gradient as the update's), over
                `windows` evenly spaced windows of the training text, each from a zero state:
                MS = sqrt(mean over segments of g^2), accumulated in float64.
  adam_ms       a proxy needing no training text: Adam's second moment in the checkpoint
                (optim.exp_avg_sq.<name>), MS = sqrt(v / (1 - beta2^steps)). Its gradients are
                of training batches (batch x seq_len characters), so its scale is smaller than
                the batch-1 segments'; the fitted eta absorbs that.

fit_settings: a coordinate search on a held-out slice: eta over ETA_STEPS x the start value with
lambda fixed, then lambda over LAMBDA_STEPS x its start value at the best eta; each point is
one dynamic pass over the slice from the checkpoint's weights.

Public API:
  gradient_ms(model, train_ids, segment, windows, window_chars) -> [P] float64
  adam_ms(optim, model, steps=None, beta2=0.999) -> [P] float64, or None when absent
  fit_settings(model, ids, kind, eta, lam, ms, segment, epsilon) -> (eta, lam, rows)
  fit_split(n, fraction) -> characters in the fitting slice
"""

from __future__ import annotations

import numpy as np

from charrnn.infer.dynamic import Rule, dynamic_ids, segment_grad, segment_step
from charrnn.infer.evaluate import EvalError

MS_WINDOWS = 20          # windows of the training text the paper's MS is gathered over
MS_WINDOW_CHARS = 1000   # characters per window (20,000 in all: a few seconds)
ETA_STEPS = (0.25, 0.5, 1.0, 2.0, 4.0)
LAMBDA_STEPS = (0.0, 0.25, 1.0, 4.0)
FIT_FRACTION = 0.1     # of the text searched on by --fit (the rest is scored)


def gradient_ms(model, train_ids, segment: int, windows: int = MS_WINDOWS,
                window_chars: int = MS_WINDOW_CHARS) -> np.ndarray:
    """[P] float64: RMS over training segments of the segment gradient (module docstring).
    EvalError when the training text has fewer than 2 characters."""
    ids = np.asarray(train_ids).reshape(-1)
    if len(ids) < 2:
        raise EvalError("the training text is too short to gather the gradient's RMS")
    width = min(window_chars, len(ids))
    starts = np.unique(np.linspace(0, len(ids) - width, windows).astype(np.int64))
    total, count = np.zeros(model.params.size), 0
    for a in starts:
        window, state = ids[a:a + width], None
        for s in range(0, len(window) - 1, segment):
            piece = window[s:s + segment + 1]
            logits, _, state, cache = segment_step(model, piece, state)
            g = segment_grad(model, logits, cache, piece[1:]).flat
            total += np.square(g, dtype=np.float64)
            count += 1
    return np.sqrt(total / count)


def adam_ms(optim: dict, model, steps: int | None = None, beta2: float = 0.999):
    """[P] float64 sqrt of Adam's bias-corrected second moment in the model's parameter order,
    from a checkpoint's optimizer tensors (keys 'exp_avg_sq.<name>' or 'optim.exp_avg_sq.<name>');
    None when the checkpoint has none (another optimizer, or saved without its state)."""
    parts = []
    for name in model.params.names():
        v = optim.get(f"exp_avg_sq.{name}", optim.get(f"optim.exp_avg_sq.{name}"))
        if v is None:
            return None
        parts.append(np.asarray(v, np.float64).reshape(-1))
    v = np.concatenate(parts)
    correction = 1.0 - beta2 ** steps if steps else 1.0
    return np.sqrt(v / correction)


def fit_split(n: int, fraction: float = FIT_FRACTION) -> int:
    """Characters of an n-character text used for fitting (the rest is scored): at least 2 and
    leaving at least 2. EvalError when the text is too short to cut."""
    if n < 4:
        raise EvalError(f"--fit needs a text of at least 4 characters to cut into a fitting "
                        f"slice and a scored rest; got {n}")
    return int(min(max(2, round(n * fraction)), n - 2))


def fit_settings(model, ids, kind: str, eta: float, lam: float, ms, segment: int,
                 epsilon: float):
    """(best eta, best lambda, rows) of the coordinate search of the module docstring on ids.

    rows: [{"eta", "lambda", "loss"}] in the order tried (loss in nats/char). The model's
    weights are restored to their starting values after each pass and at the end."""
    theta0 = model.params.flat.copy()
    rows = []

    def trial(e, l):
        model.params.flat[...] = theta0
        rule = Rule(kind, e, l, ms, epsilon).bind(model)
        total, n = dynamic_ids(model, ids, rule, segment)
        rows.append({"eta": e, "lambda": l, "loss": total / n})
        return total / n

    best_eta = min((eta * f for f in ETA_STEPS), key=lambda e: trial(e, lam))
    lams = sorted({min(1.0, lam * f) for f in LAMBDA_STEPS})
    done = {r["lambda"]: r["loss"] for r in rows if r["eta"] == best_eta}
    best_lam = min(lams, key=lambda l: done[l] if l in done else trial(best_eta, l))
    model.params.flat[...] = theta0
    return best_eta, best_lam, rows
