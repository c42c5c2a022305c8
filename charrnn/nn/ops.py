"""Stateless forward/backward pairs for the non-recurrent layers.

Shape key: N rows (N = T*B, time-major), V vocabulary, E embedding, D input features, O outputs.
Each `*_backward` takes what its `*_forward` returned (or cached) and returns the gradients named
`d` + the forward's argument. Where a gradient belongs to a parameter, the caller may pass an `out`
array (a view into the model's flat gradient buffer) so nothing is allocated.
"""

from __future__ import annotations

import numpy as np


def embedding_forward(weight: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row gather: x[..., :] = weight[ids[...], :].  weight [V, E], ids [...] -> x [..., E]."""
    return weight[ids]


def embedding_backward(dx: np.ndarray, ids: np.ndarray, dweight: np.ndarray) -> np.ndarray:
    """Scatter-add: dweight[v] = sum of dx over the positions where ids == v.  Writes dweight [V, E].

    As a stable sort of the ids and one np.add.reduceat over the rows in that order: faster
    than np.add.at, with no [N, V] one-hot.
    """
    dweight[...] = 0
    flat = ids.reshape(-1)
    if flat.size == 0:
        return dweight
    rows = dx.reshape(-1, dweight.shape[1])
    order = np.argsort(flat, kind="stable")
    sorted_ids = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    dweight[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return dweight


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """y = x W^T + b.  x [N, D], weight [O, D], bias [O] -> y [N, O] (as torch.nn.Linear)."""
    y = x @ weight.T
    y += bias
    return y


def linear_backward(dy, x, weight, dweight=None, dbias=None):
    """Gradients of y = x W^T + b.  dy [N, O] -> (dx [N, D], dweight [O, D], dbias [O]).

    dweight = dy^T x and dbias = sum_n dy[n] are one GEMM and one reduction over all rows.
    """
    dweight = np.dot(dy.T, x, out=dweight) if dweight is not None else dy.T @ x
    if dbias is None:
        dbias = dy.sum(axis=0)
    else:
        np.sum(dy, axis=0, out=dbias)
    return dy @ weight, dweight, dbias


def feedforward_forward(x, w1, b1, w2, b2):
    """The feed-forward block y = relu(x W1^T + b1) W2^T + b2 (torch.nn.Sequential(Linear,
    ReLU, Linear)).  x [N, H], w1 [M, H], b1 [M], w2 [H, M], b2 [H] -> (y [N, H], cache)."""
    u = linear_forward(x, w1, b1)
    np.maximum(u, 0, out=u)
    return linear_forward(u, w2, b2), (x, u)


def feedforward_backward(dy, cache, w1, w2, grads):
    """Gradients of feedforward_forward.  dy [N, H] -> dx [N, H]; grads = (dw1, db1, dw2, db2)
    are written in place. relu'(0) = 0, as PyTorch's."""
    x, u = cache
    dw1, db1, dw2, db2 = grads
    du, _, _ = linear_backward(dy, u, w2, dw2, db2)
    du *= u > 0
    return linear_backward(du, x, w1, dw1, db1)[0]


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator):
    """Inverted dropout: y = x * mask, mask = keep / (1 - p), keep ~ Bernoulli(1 - p).

    Returns (y, mask); mask is None (and y is x) when p == 0. Scaling at training time keeps
    the expected activation unchanged, so evaluation uses the network as it is.
    """
    if p <= 0.0:
        return x, None
    keep = rng.random(x.shape, dtype=np.float64) >= p
    mask = keep.astype(x.dtype)
    mask *= x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dy: np.ndarray, mask) -> np.ndarray:
    """dx = dy * mask (dy itself when dropout was off)."""
    return dy if mask is None else dy * mask


def softmax_cross_entropy_forward(logits: np.ndarray, targets: np.ndarray):
    """Mean cross-entropy of softmax(logits) against integer targets.

    loss = (1/N) sum_n [log sum_v exp(logits[n, v]) - logits[n, targets[n]]]
    logits [N, V], targets [N] -> (loss as a Python float, probs [N, V] for the backward).
    The max is subtracted per row first so exp never overflows. A negative target (padding,
    charrnn/train/docbatch.py) is ignored: N counts only the others (loss 0 when none is left).
    """
    padded = targets.min(initial=0) < 0
    rows = np.arange(logits.shape[0])
    n = int(np.count_nonzero(targets >= 0)) if padded else logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    sums = probs.sum(axis=1, keepdims=True)
    # float64 accumulation: the mean over many rows must not lose digits in float32
    if padded:
        keep = targets >= 0
        nll = np.log(sums[keep, 0]).astype(np.float64) - shifted[rows[keep], targets[keep]]
    else:
        nll = np.log(sums[:, 0]).astype(np.float64) - shifted[rows, targets]
    probs /= sums
    return float(nll.sum() / max(n, 1)), probs


def softmax_cross_entropy_backward(probs: np.ndarray, targets: np.ndarray,
                                   weight: float = 1.0) -> np.ndarray:
    """dlogits = weight * (softmax(logits) - onehot(targets)) / N, the gradient of weight times
    the mean loss.  Reuses (overwrites) probs [N, V]. Rows with a negative target get zero."""
    if targets.min(initial=0) < 0:
        keep = targets >= 0
        probs[np.flatnonzero(keep), targets[keep]] -= 1.0
        probs[~keep] = 0
        probs *= probs.dtype.type(weight / max(int(np.count_nonzero(keep)), 1))
        return probs
    n = probs.shape[0]
    probs[np.arange(n), targets] -= 1.0
    probs *= probs.dtype.type(weight / n)
    return probs
