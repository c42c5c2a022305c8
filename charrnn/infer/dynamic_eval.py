"""`charrnn eval --dynamic`: the static and the dynamic loss of a text, side by side.

The dynamic pass is charrnn/infer/dynamic.py's (Krause et al. 2017, arXiv 1709.07432); the
static one is `charrnn eval`'s exact pass (charrnn/infer/evaluate.py). With `fit`, the settings
are first searched on a held-out slice (charrnn/infer/dynamic_fit.py): the first FIT_FRACTION
of the text, or another text; then both losses are of the rest only, each read from a zero
state and (dynamic) from the checkpoint's weights, so no figure is tuned on the text it reports.

Public API:
  Settings(rule, eta, lam, segment, epsilon, ms_source, reset)   the command line's settings
  pick_ms(model, source, train_ids, optim, steps, segment) -> (MS [P] or None, source used)
  evaluate_dynamic(model, ids, settings, ms, fit_ids=None, fit_note="", eod_id=None) -> dict
  format_dynamic(result) -> str        the lines `charrnn eval --dynamic` prints
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from charrnn.infer.dynamic import EPSILON, SEGMENT, DynamicError, Rule, check_settings, \
    dynamic_documents, dynamic_ids
from charrnn.infer.dynamic_fit import adam_ms, fit_settings, fit_split, gradient_ms
from charrnn.infer.evaluate import evaluate_documents, evaluate_ids

MS_SOURCES = ("auto", "train", "adam")
# measured on configs/shakespeare.yaml's model (docs/dynamic-eval.md). The rms rule's eta
# depends on MS's source: Adam's MS is of batch gradients, smaller than the segments' by ~10x
DEFAULT_ETA = {("rms", "train"): 1e-3, ("rms", "adam"): 1e-4, ("sgd", None): 0.04}
DEFAULT_LAMBDA = {("rms", "train"): 0.005, ("rms", "adam"): 0.005, ("sgd", None): 0.001}
# documents mode: carry the adapted weights from one document to the next; going back to theta0
# at each one measured worse at every eta up to the best (docs/dynamic-eval.md#documents-mode)
RESET_DOCUMENTS = False


@dataclass
class Settings:
    rule: str = "rms"
    eta: float | None = None        # None: the rule's measured default
    lam: float | None = None
    segment: int = SEGMENT
    epsilon: float = EPSILON
    ms_source: str = "auto"         # auto: Adam's state when the checkpoint has it, else the
                                    # training text (Adam's measured better)
    reset: bool | None = None       # documents mode: theta0 again at each document (None:
                                    # RESET_DOCUMENTS, the measured better)

    def resolved(self, source: str | None = None) -> Settings:
        """The settings with the defaults of the rule (and of MS's source, 'train' or 'adam',
        for rms; None: train's) filled in; DynamicError for a bad one."""
        key = (self.rule, source or "train") if self.rule == "rms" else (self.rule, None)
        eta = DEFAULT_ETA.get(key, 0.0) if self.eta is None else self.eta
        lam = DEFAULT_LAMBDA.get(key, 0.0) if self.lam is None else self.lam
        check_settings(self.rule, eta, lam, self.segment, self.epsilon)
        if self.ms_source not in MS_SOURCES:
            raise DynamicError(f"unknown MS source {self.ms_source!r}; choose one of "
                               f"{', '.join(MS_SOURCES)}")
        reset = RESET_DOCUMENTS if self.reset is None else self.reset
        return Settings(self.rule, eta, lam, self.segment, self.epsilon, self.ms_source, reset)


def pick_ms(model, source: str, train_ids, optim: dict, steps: int | None, segment: int,
            beta2: float = 0.999):
    """(MS [P] float64, the source used: 'train' or 'adam') for the rms rule.

    source 'train' needs train_ids (else DynamicError), 'adam' Adam's state in the checkpoint
    (else DynamicError); 'auto' takes Adam's state when there is one (it measured the better
    of the two: docs/dynamic-eval.md), else the training text."""
    ms = None if source == "train" else adam_ms(optim or {}, model, steps, beta2)
    if ms is not None:
        return ms, "adam"
    if source == "adam":
        raise DynamicError("--ms adam needs Adam's state in the checkpoint, which has none; "
                           "use --ms train or --rule sgd")
    if train_ids is not None:
        return gradient_ms(model, train_ids, segment), "train"
    if source == "train":
        raise DynamicError("--ms train needs the run's training text (its config's data.path), "
                           "which cannot be read; use --ms adam or --rule sgd")
    raise DynamicError("the rms rule needs the gradient's RMS: the checkpoint holds no Adam "
                       "state and the training text cannot be read; use --rule sgd")


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def _pass(model, ids, s: Settings, ms, eod_id):
    """(total nll, scored, seconds) of one dynamic pass from the model's current weights,
    which are put back afterwards."""
    theta0 = model.params.flat.copy()
    rule = Rule(s.rule, s.eta, s.lam, ms, s.epsilon).bind(model)
    try:
        if eod_id is None:
            (total, n), secs = _timed(dynamic_ids, model, ids, rule, s.segment)
        else:
            (nll, counts), secs = _timed(dynamic_documents, model, ids, eod_id, rule, s.segment,
                                         s.reset)
            total, n = float(nll.sum()), int(counts.sum())
    finally:
        model.params.flat[...] = theta0
    return total, n, secs


def _static(model, ids, eod_id):
    if eod_id is None:
        (total, n), secs = _timed(evaluate_ids, model, ids)
        return total, n, secs
    (nll, counts), secs = _timed(evaluate_documents, model, ids, eod_id)
    return float(nll.sum()), int(counts.sum()), secs


def evaluate_dynamic(model, ids, settings: Settings, ms=None, fit_ids=None, fit_note: str = "",
                     eod_id: int | None = None, ms_source: str | None = None) -> dict:
    """The static and dynamic losses (nats/char) of ids, and speeds, as a dict.

    fit_ids: a held-out slice to search eta and lambda on first (the result's "fit"); ids is
    then the text scored. eod_id: a documents-mode text (EOD d_1 EOD ...), each document from
    a zero state. ms_source: 'train' or 'adam' (the rms rule's defaults depend on it). The
    model's weights are left as they were.
    """
    s = settings.resolved(ms_source)
    result = {"protocol": "dynamic", "rule": s.rule, "segment": s.segment, "epsilon": s.epsilon}
    if fit_ids is not None:
        eta, lam, rows = fit_settings(model, fit_ids, s.rule, s.eta, s.lam, ms, s.segment,
                                      s.epsilon)
        result["fit"] = {"on": fit_note, "chars": int(len(fit_ids) - 1), "eta": eta,
                         "lambda": lam, "rows": rows}
        s = Settings(s.rule, eta, lam, s.segment, s.epsilon, s.ms_source, s.reset)
    total, n, secs = _pass(model, ids, s, ms, eod_id)
    s_total, s_n, s_secs = _static(model, ids, eod_id)
    loss, static = total / n, s_total / s_n
    result.update({"eta": s.eta, "lambda": s.lam, "loss": loss,
                   "bits_per_char": loss / math.log(2),
                   "perplexity": math.exp(loss) if loss < 700 else math.inf,
                   "static_loss": static, "gain": static - loss, "chars_scored": n,
                   "chars_per_s": n / max(secs, 1e-9),
                   "static_chars_per_s": s_n / max(s_secs, 1e-9)})
    if eod_id is not None:
        result["reset_weights_per_document"] = s.reset
    return result


def split_for_fit(ids, fraction: float | None = None):
    """(fitting slice, scored rest) of ids: the first part, and the rest read from its own start
    (the character where the cut falls is the rest's first input, not scored twice)."""
    ids = np.asarray(ids).reshape(-1)
    k = fit_split(len(ids)) if fraction is None else fit_split(len(ids), fraction)
    return ids[:k], ids[k - 1:]


def format_dynamic(r: dict) -> str:
    """The human-readable lines of `charrnn eval --dynamic` (without --json)."""
    lines = []
    if "fit" in r:
        f = r["fit"]
        lines.append(f"fit on {f['on']} ({f['chars']} characters): eta, lambda, loss")
        lines += [f"  {row['eta']:<10.4g} {row['lambda']:<10.4g} {row['loss']:.6f}"
                  for row in f["rows"]]
        lines.append(f"fitted:        eta {f['eta']:.4g}, lambda {f['lambda']:.4g}")
    lines += [f"static loss:   {r['static_loss']:.6f} nats/char "
              f"({r['static_chars_per_s']:.0f} chars/s)",
              f"dynamic loss:  {r['loss']:.6f} nats/char ({r['chars_per_s']:.0f} chars/s)",
              f"gain:          {r['gain']:.6f} nats/char",
              f"bits/char:     {r['bits_per_char']:.6f}",
              f"perplexity:    {r['perplexity']:.4f}",
              f"chars scored:  {r['chars_scored']}",
              f"settings:      rule {r['rule']}, eta {r['eta']:.4g}, lambda {r['lambda']:.4g}, "
              f"segment {r['segment']}, epsilon {r['epsilon']:.4g}"
              + (f", MS from {r['ms_source']}" if r.get("ms_source") else "")]
    if "reset_weights_per_document" in r:
        lines.append("documents:     each from a zero state; weights "
                     + ("reset at each document" if r["reset_weights_per_document"]
                        else "carried from one document to the next"))
    return "\n".join(lines)
