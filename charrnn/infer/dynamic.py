"""Dynamic evaluation: a model that keeps learning from the text it reads.

Krause, Kahembwe, Murray & Renals (2017), "Dynamic Evaluation of Neural Sequence Models",
arXiv 1709.07432. The text's ids x_0 .. x_{N-1} are read once, in order, batch 1, the state
carried as in the exact static pass (charrnn/infer/evaluate.py). They are cut into segments of
n characters: segment s reads x_{sn} .. x_{sn+n-1} and predicts x_{sn+1} .. x_{sn+n}. Each
segment is first scored with the weights as they are, then used for one update:

    g      = grad_theta of the segment's mean loss (nats/char), the state arriving at the
             segment held constant (the model's own backward, dropout off)
    theta <- theta - eta * g / (MS + eps) + lambda * decay * (theta0 - theta)   (rule "rms")
    theta <- theta - eta * g + lambda * (theta0 - theta)                        (rule "sgd")

MS is the root mean square of the gradient over training data (one value per parameter: the
paper's "RMS_norm"); decay = MS / mean(MS), clipped to at most 1 / lambda so that no weight is
pulled past theta0; theta0 the checkpoint's weights; eps = epsilon * mean(MS), so the rule does
not depend on MS's scale. Both terms are computed from the weights before the update. The
state carried into segment s + 1 is the one computed in segment s's forward (the weights
before segment s's update), as in the paper's code.

So the prediction of x_t uses weights updated only with segments whose targets all precede x_t:
no character is scored by weights that saw it. With eta = 0 the weights never move and the
pass is the static one read in chunks of n characters.

Shapes: P parameters (the flat buffer), n characters per segment, V vocabulary.

Public API:
  Rule(kind, eta, lam, ms=None, epsilon=EPSILON)    the update, one vectorised pass over [P]
      .bind(model) -> Rule   theta0 and buffers for that model;   .update(model)
      .reset(model)          theta <- theta0
  segment_step(model, ids, state) -> (logits [n, V], nll [n] float64, state, cache)
  segment_grad(model, logits, cache, targets) -> model.grads (the segment's gradient)
  dynamic_pass(model, ids, rule, segment=SEGMENT) -> iterator of (start, logits [n, V], nll [n])
  dynamic_ids(model, ids, rule, segment=SEGMENT) -> (total nll in nats, characters scored)
  dynamic_documents(model, ids, eod_id, rule, segment, reset) -> (nll [D], scored [D])
  check_settings(kind, eta, lam, segment, epsilon)    DynamicError for a bad one
  DynamicError    a bad setting (one sentence, exit status 2)
"""

from __future__ import annotations

import numpy as np

from charrnn.errors import UsageError
from charrnn.fast import blas
from charrnn.infer.evaluate import EvalError, char_nll, document_spans
from charrnn.nn import ops

RULES = ("rms", "sgd")
SEGMENT = 20          # characters per update: the paper's 5 measured worse and half as fast
EPSILON = 0.01        # eps / mean(MS): keeps weights whose gradient is ~0 in training still

class DynamicError(UsageError, ValueError):
    """A setting of dynamic evaluation that cannot work; one sentence naming it and the fix
    (exit status 2)."""


def check_settings(kind: str, eta: float, lam: float, segment: int, epsilon: float) -> None:
    """DynamicError for a rule name outside RULES, eta < 0, lambda outside [0, 1], a segment
    < 1 or epsilon <= 0 (NaN included)."""
    if kind not in RULES:
        raise DynamicError(f"unknown rule {kind!r}; choose one of {', '.join(RULES)}")
    if not eta >= 0:
        raise DynamicError(f"--eta (the learning rate) must be >= 0; got {eta}")
    if not 0 <= lam <= 1:
        raise DynamicError(f"--lambda (the decay rate toward the trained weights) must be in "
                           f"[0, 1]; got {lam}")
    if segment < 1:
        raise DynamicError(f"--segment must be >= 1 character; got {segment}")
    if not epsilon > 0:
        raise DynamicError(f"--epsilon must be > 0; got {epsilon}")


class Rule:
    """One update rule with its settings, as per-parameter vectors over the flat buffer.

    rms: step = eta / (MS + eps) and pull = lambda * min(MS / mean(MS), 1 / lambda), [P] each;
    sgd: step = eta and pull = lambda, scalars. ms: [P] gradient RMS (needed by rms).
    DynamicError for a bad setting or an rms rule without MS.
    """

    def __init__(self, kind: str, eta: float, lam: float, ms=None, epsilon: float = EPSILON):
        check_settings(kind, eta, lam, 1, epsilon)
        self.kind, self.eta, self.lam, self.epsilon = kind, float(eta), float(lam), float(epsilon)
        self.ms = None if ms is None else np.asarray(ms, np.float64).reshape(-1)
        if kind == "rms" and self.ms is None:
            raise DynamicError("the rms rule needs the gradient's RMS over training data")
        if self.ms is not None and not (np.isfinite(self.ms).all() and self.ms.mean() > 0):
            raise DynamicError("the gradient RMS is zero or not finite; use --rule sgd")
        self.theta0 = None

    def bind(self, model) -> Rule:
        """Keep the model's weights as theta0 and build [P] step and pull vectors in its dtype."""
        p = model.params.flat
        self.theta0, self._tmp = p.copy(), np.empty_like(p)
        if self.kind == "sgd":
            self.step, self.pull = p.dtype.type(self.eta), p.dtype.type(self.lam)
        else:
            if len(self.ms) != p.size:
                raise DynamicError(f"the gradient RMS has {len(self.ms)} values; the model has "
                                   f"{p.size} parameters")
            mean = self.ms.mean()
            self.step = (self.eta / (self.ms + self.epsilon * mean)).astype(p.dtype)
            decay = np.minimum(self.ms / mean, 1.0 / self.lam if self.lam > 0 else np.inf)
            self.pull = (self.lam * decay).astype(p.dtype)
        return self

    def update(self, model) -> None:
        """theta <- theta + pull * (theta0 - theta) - step * g, with g = model.grads.flat, which
        it overwrites with step * g: both terms from the weights before the update. Five passes
        over [P] and no allocation; one thread, since the passes are bound by memory
        bandwidth, which a second thread did not add to (docs/dynamic-eval.md#speed)."""
        p, g, tmp = model.params.flat, model.grads.flat, self._tmp
        np.multiply(g, self.step, out=g)
        if self.lam > 0:
            np.subtract(self.theta0, p, out=tmp)
            np.multiply(tmp, self.pull, out=tmp)
            np.add(p, tmp, out=p)
        np.subtract(p, g, out=p)

    def reset(self, model) -> None:
        """theta <- theta0 (a documents-mode model at a document boundary)."""
        model.params.flat[...] = self.theta0

    def describe(self) -> dict:
        return {"rule": self.kind, "eta": self.eta, "lambda": self.lam, "epsilon": self.epsilon}


def segment_step(model, ids, state):
    """Score one segment: ids [n + 1] (inputs ids[:-1], targets ids[1:]) from state.

    -> (logits [n, V], nll [n] float64 nats (eval's char_nll), final state, forward cache).
    """
    x = np.asarray(ids[:-1], np.int64)
    logits, new_state, cache = model.forward(x[None, :], state)
    return logits[0], char_nll(logits[0], np.asarray(ids[1:], np.int64)), new_state, cache


def segment_grad(model, logits, cache, targets):
    """The gradient of the segment's mean loss, by the model's own backward (the training
    step's softmax cross-entropy and CharRNN.backward, no gradient into the arriving state):
    written into model.grads, which it returns. Consumes the cache."""
    targets = np.asarray(targets, np.int64)
    _, probs = ops.softmax_cross_entropy_forward(logits, targets)
    dlogits = ops.softmax_cross_entropy_backward(probs, targets)
    grads, _ = model.backward(dlogits[None], cache)
    return grads


def dynamic_pass(model, ids, rule: Rule, segment: int = SEGMENT, state=None):
    """Read ids (1-D) once with dynamic evaluation; yields (start, logits [n, V], nll [n]) per
    segment before that segment's update (row t predicts ids[start + t + 1]). The model's
    weights move; rule must be bound to it (Rule.bind). state: the arriving state (None: zero).
    """
    ids = np.asarray(ids).reshape(-1)
    # products of one row, or of a segment's few rows: a second BLAS thread costs more than it
    # saves (docs/dynamic-eval.md#speed)
    with blas.limited(1):
        for start in range(0, len(ids) - 1, segment):
            piece = ids[start:start + segment + 1]
            logits, nll, state, cache = segment_step(model, piece, state)
            yield start, logits, nll
            if rule.eta > 0 or rule.lam > 0:
                segment_grad(model, logits, cache, piece[1:])
                rule.update(model)


def dynamic_ids(model, ids, rule: Rule, segment: int = SEGMENT) -> tuple[float, int]:
    """(total nll in nats, characters scored) of ids read with dynamic evaluation from the
    model's current weights. EvalError for fewer than 2 characters. The weights move."""
    ids = np.asarray(ids).reshape(-1)
    if len(ids) < 2:
        raise EvalError(f"the text has {len(ids)} character(s) after encoding; evaluation "
                        f"needs at least 2 (one to read, one to predict)")
    total = 0.0
    for _, _, nll in dynamic_pass(model, ids, rule, segment):
        total += float(nll.sum())
    return total, len(ids) - 1


def dynamic_documents(model, ids, eod_id: int, rule: Rule, segment: int = SEGMENT,
                      reset: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(nll [D] float64 nats, scored [D]) of each document of ids (EOD d_1 EOD ... d_n EOD),
    each read from a zero state as static eval does; the weights carry over from one document
    to the next, or (reset) go back to theta0 at each document's start."""
    starts, ends = document_spans(np.asarray(ids).reshape(-1), eod_id)
    if len(starts) == 0:
        raise EvalError("the text has no document; evaluation needs at least one")
    nll = np.zeros(len(starts))
    for i, (a, b) in enumerate(zip(starts, ends)):
        if reset:
            rule.reset(model)
        nll[i] = dynamic_ids(model, ids[a:b + 1], rule, segment)[0]
    return nll, (ends - starts).astype(np.int64)
