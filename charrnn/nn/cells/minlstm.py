"""The minLSTM cell (Feng et al., "Were RNNs All We Needed?", arXiv 2410.01201, 2024, sec. 3.2).

    f  = sigmoid(W_if x + b_if),   i = sigmoid(W_ii x + b_ii)
    n  = W_in x + b_in                      (the paper's h~; linear, as the paper's sequential form)
    f' = f / (f + i),   i' = i / (f + i) = 1 - f'
    h' = f' * h + i' * n

No gate sees the previous state, so there is no weight_hh and no memory cell: the products of
all T steps are one GEMM, and h_t = f'_t * h_{t-1} + i'_t * n_t is an element-wise linear
recurrence (charrnn/nn/cells/scan.py).

Fast form: f' = sigmoid(d) with d = softplus(-p_i) - softplus(-p_f) = log f - log i (p_f, p_i
the pre-activations), which stays finite where f and i both underflow to 0 and f / (f + i) would
be 0 / 0. Its derivatives: d d / d p_f = 1 - f, d d / d p_i = -(1 - i).

Shape key: T time steps, B batch, D input features, H hidden units. Weights: w_ih [3H, D] and
b_ih [3H], gate blocks f, i, n (model.forget_bias is added to f's bias); w_hh and b_hh are None
(WEIGHTS). Checkpoint names: rnn.weight_ih_l{k}, rnn.bias_ih_l{k} (docs/min-cells.md).
"""

from __future__ import annotations

import numpy as np

from charrnn.nn.cells.projection import input_projection, weight_grads
from charrnn.nn.cells.scan import linear_scan, linear_scan_reverse

GATES = ("f", "i", "n")
STATE = ("h",)
WEIGHTS = ("weight_ih", "bias_ih")      # no product with the previous state


# -- the sequence kernels ------------------------------------------------------------------------

def _softplus_neg(p):
    """softplus(-p) = -log sigmoid(p), in place."""
    np.negative(p, out=p)
    return np.logaddexp(0, p, out=p)


def forward(x, state0, w_ih, w_hh, b_ih, b_hh, **_):
    """Over T steps.  x [T, B, D], state0 = (h0 [B, H],) -> (out [T, B, H], (h_T,), cache)."""
    H = w_ih.shape[0] // 3
    gates = input_projection(x, w_ih, b_ih)             # [T, B, 3H]: f, i (pre-activations), n
    sf, si, n = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:]
    _softplus_neg(sf)
    _softplus_neg(si)
    fp = np.subtract(sf, si)                              # -d
    with np.errstate(over="ignore"):                      # exp -> inf gives the limit f' = 0
        np.exp(fp, out=fp)
        fp += 1
        np.reciprocal(fp, out=fp)                         # f' = sigmoid(d)
    # 1 - f = -expm1(-softplus(-p_f)), kept for the backward (likewise 1 - i)
    for s in (sf, si):
        np.negative(s, out=s)
        np.expm1(s, out=s)
        np.negative(s, out=s)
    hs = np.empty((x.shape[0] + 1,) + state0[0].shape, gates.dtype)
    hs[0] = state0[0]
    np.subtract(n, np.multiply(fp, n), out=hs[1:])        # i' n = (1 - f') n
    linear_scan(fp, hs[1:], state0[0], out=hs[1:])
    cache = (x, hs, gates, fp, w_ih)
    return hs[1:], (hs[-1].copy(),), cache


def trace(cache):
    """{"h", "f", "i", "n": [T, B, H]}: the state after every step, the forget and input gates
    after the sigmoid (before their normalisation) and the candidate, read from forward's cache
    (which holds 1 - f and 1 - i)."""
    hs, gates = cache[1], cache[2]
    H = hs.shape[-1]
    return {"h": hs[1:], "f": 1.0 - gates[..., :H], "i": 1.0 - gates[..., H:2 * H],
            "n": gates[..., 2 * H:]}


def backward(dout, dstate, cache, grads=None, dh_trace=None):
    """BPTT through forward.  dout [T, B, H], dstate = (dh_T,) -> (dx, (dh0,), grads).

    dh_trace, an optional [T, B, H] array, receives dL/dh_t of every step. Consumes the cache.
    """
    x, hs, gates, fp, w_ih = cache
    H = fp.shape[-1]
    omf, omi, n = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:]
    g = linear_scan_reverse(fp, dout, np.asarray(dstate[0], fp.dtype))
    if dh_trace is not None:
        dh_trace[...] = g
    dh0 = fp[0] * g[0]
    # k = g (h_prev - n) f' (1 - f');  dp_f = k (1 - f),  dp_i = -k (1 - i),  dn = g (1 - f')
    ip = np.subtract(1, fp)
    k = np.subtract(hs[:-1], n)
    k *= g
    k *= fp
    k *= ip
    np.multiply(g, ip, out=n)
    omf *= k
    np.negative(k, out=k)
    omi *= k
    dx, grads = weight_grads(gates, None, x, None, w_ih, grads)
    return dx, (dh0,), grads


def kinks(cache):
    """None: the minLSTM is smooth everywhere."""
    return None


# -- the batch-1 step of sampling (charrnn/nn/stepper.py) -----------------------------------------
# One layer's buffer is [-p_f, -p_i, n], filled by the input side alone (layer 0: the table
# row): the f and i columns are negated so softplus(-p) is one logaddexp.

def step_columns(w_t, side):
    """The step's columns of a transposed weight or bias [..., 3H] (input side only)."""
    H = w_t.shape[-1] // 3
    return np.concatenate([-w_t[..., :2 * H], w_t[..., 2 * H:]], axis=-1)


def step_layout(H):
    """(buffer width, product columns, table columns, {extra state: columns}) of one layer."""
    return 3 * H, slice(0, 3 * H), slice(0, 3 * H), {}


def step_body(buf, h, tmp, nonlinearity="tanh"):
    """The step after the product: buf [3H] = [-p_f, -p_i, n]; writes h [H]."""
    H = h.shape[0]
    sfi, f, i, n, tmp = buf[:2 * H], buf[:H], buf[H:2 * H], buf[2 * H:], tmp[:H]
    logaddexp, tanh, mul, add, sub = np.logaddexp, np.tanh, np.multiply, np.add, np.subtract

    def body():
        logaddexp(0.0, sfi, out=sfi)    # softplus(-p_f), softplus(-p_i)
        sub(i, f, out=f)                # d = log f - log i
        mul(f, 0.5, out=f)
        tanh(f, out=f)
        mul(f, 0.5, out=f)
        add(f, 0.5, out=f)              # f' = sigmoid(d)
        sub(h, n, out=tmp)              # h' = n + f' (h - n)
        mul(tmp, f, out=tmp)
        add(n, tmp, out=h)
    return body


# -- the textbook step (charrnn/nn/reference.py) ------------------------------------------------

def reference_step(x, state, w_ih, w_hh, b_ih, b_hh, **_):
    """One step, plainly.  x [B, D], state (h [B, H],) -> ((h',), saved for the backward)."""
    h = state[0]
    H = h.shape[1]
    gi = x @ w_ih.T + b_ih
    f = 1.0 / (1.0 + np.exp(-gi[:, :H]))
    i = 1.0 / (1.0 + np.exp(-gi[:, H:2 * H]))
    n = gi[:, 2 * H:]
    fp, ip = f / (f + i), i / (f + i)
    return (fp * h + ip * n,), dict(f=f, i=i, n=n, h=h)


def reference_step_backward(dstate, saved):
    """(d input-side pre-activations, None: no hidden side, d state)."""
    dh = dstate[0]
    f, i, n, h = saved["f"], saved["i"], saved["n"], saved["h"]
    s = f + i
    dfp, dip = dh * h, dh * n                 # through f' = f / s and i' = i / s
    df = (dfp * i - dip * i) / s ** 2
    di = (dip * f - dfp * f) / s ** 2
    dgi = np.concatenate([df * f * (1 - f), di * i * (1 - i), dh * i / s], axis=1)
    return dgi, None, (dh * f / s,)
