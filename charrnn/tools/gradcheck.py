"""Central-difference gradient checking of the whole model, in float64.

The objective checked is

    f(params, state0) = mean cross-entropy(ids -> targets) + sum_j <R_j, final_state_j>

with fixed random weights R on the final state, so the gradient that flows in through the state
(truncated BPTT's carried state) is checked as well as the loss's. Dropout, when on, draws its
masks from a Generator re-seeded for every evaluation, so each evaluation sees the same mask.

The test suite and `charrnn gradcheck` both use `check_model`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.nn.model import CharRNN

DEFAULT_TOLERANCE = 1e-6


@dataclass
class GradCheckResult:
    name: str            # parameter name, or state.h / state.c for the initial state
    max_rel_error: float
    size: int            # number of entries compared


def relative_error(analytic: np.ndarray, numeric: np.ndarray, floor: float = 1e-6) -> float:
    """max over entries of |a - n| / max(|a|, |n|, floor).

    The floor is where relative error stops meaning anything: float64 rounding leaves about
    1e-13 of noise in a numeric derivative (see numeric_gradient), so an exact zero analytic
    gradient (a relu unit that is never on) reads as ~1e-13 numerically. Below |g| = 1e-6 the
    comparison is therefore absolute, to 1e-6 * tolerance = 1e-12 at the default tolerance:
    ten times the noise, and still a million times smaller than any gradient we check.
    """
    diff = np.abs(analytic - numeric)
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    return float((diff / scale).max()) if diff.size else 0.0


def numeric_gradient(f, x: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Fourth-order central differences for every entry i of x, perturbing x in place:

        df/dx_i ~ (f(x - 2h e_i) - 8 f(x - h e_i) + 8 f(x + h e_i) - f(x + 2h e_i)) / (12 h)

    The truncation error is O(h^4) instead of the two-point formula's O(h^2), so h can be large
    enough (1e-3) that float64 rounding in f (about 1e-16 |f| / h) stays near 1e-13: small
    gradients of deep layers are then still measured to better than 1e-6 relative.

    `f()` returns (value, region): region identifies the smooth piece of a piecewise-smooth f
    (the relu on/off pattern; None when f is smooth). When a step would cross into another
    piece, h shrinks tenfold (up to four times), because across a kink the difference quotient
    is not the derivative.
    """
    grad = np.zeros(x.shape, np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        _, region = f()
        h = eps
        for _ in range(5):
            values, regions = [], []
            for step in (-2, -1, 1, 2):
                flat[i] = old + step * h
                value, r = f()
                values.append(value)
                regions.append(r)
            flat[i] = old
            if all(r == region for r in regions):
                break
            h /= 10
        gflat[i] = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * h)
    return grad


def make_problem(model: CharRNN, batch: int, steps: int, seed: int):
    """Random ids, targets, a nonzero initial state and final-state weights for `model`."""
    rng = np.random.default_rng(seed)
    V = model.vocab_size
    ids = rng.integers(0, V, (batch, steps))
    targets = rng.integers(0, V, (batch, steps))
    state0 = tuple(0.5 * rng.standard_normal(s.shape) for s in model.initial_state(batch))
    dstate = tuple(0.1 * rng.standard_normal(s.shape) for s in state0)
    return ids, targets, state0, dstate


def objective(model, ids, targets, state0, dstate, dropout_seed):
    """(f above, relu pattern), evaluated with a freshly seeded dropout Generator."""
    rng = np.random.default_rng(dropout_seed)
    loss, final, cache = model.loss(ids, targets, state0, train=True, rng=rng)
    value = loss + sum(float((d * s).sum()) for d, s in zip(dstate, final))
    return value, _relu_pattern(model, cache)


def _relu_pattern(model, cache):
    """Where each layer's non-smooth units sit (the cell's kinks), or None for a smooth model."""
    kinks = [model.cell_module.kinks(layer) for layer in cache["layers"]]
    kinks += [None if f is None else (f[1] > 0).tobytes() for f in cache["ffn"]]   # ffn's relu
    return None if all(k is None for k in kinks) else b"".join(k or b"" for k in kinks)


def analytic_gradients(model, ids, targets, state0, dstate, dropout_seed):
    """(grads by name, d state0) from the model's own backward pass, copied."""
    rng = np.random.default_rng(dropout_seed)
    _, _, dstate0 = model.loss_and_grad(ids, targets, state0, train=True, rng=rng, dstate=dstate)
    return model.grads.to_dict(), dstate0


def check_model(model: CharRNN, batch: int = 3, steps: int = 10, seed: int = 0,
                eps: float = 1e-3) -> list[GradCheckResult]:
    """Compare every parameter's and the initial state's gradient with central differences."""
    if model.dtype != np.float64:
        raise ValueError("gradient checks need a float64 model")
    ids, targets, state0, dstate = make_problem(model, batch, steps, seed)
    dropout_seed = seed + 1
    grads, dstate0 = analytic_gradients(model, ids, targets, state0, dstate, dropout_seed)

    def f():
        return objective(model, ids, targets, state0, dstate, dropout_seed)

    results = []
    for name, view in model.params.items():
        numeric = numeric_gradient(f, view, eps)
        results.append(GradCheckResult(name, relative_error(grads[name], numeric), view.size))
    for label, s, ds in zip(model.cell_module.STATE, state0, dstate0):
        label = f"state.{label}"
        numeric = numeric_gradient(f, s, eps)
        results.append(GradCheckResult(label, relative_error(ds, numeric), s.size))
    return results
