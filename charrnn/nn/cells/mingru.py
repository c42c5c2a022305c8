"""The minGRU cell (Feng et al., "Were RNNs All We Needed?", arXiv 2410.01201, 2024, sec. 3.1).

    z  = sigmoid(W_iz x + b_iz)
    n  = W_in x + b_in                      (the paper's h~; linear, as the paper's sequential form)
    h' = (1 - z) * h + z * n

No gate sees the previous state, so there is no weight_hh: the products of all T steps are one
GEMM, and what remains, h_t = a_t * h_{t-1} + b_t with a = 1 - z and b = z * n, is an
element-wise linear recurrence (charrnn/nn/cells/scan.py), forward and backward.

Shape key: T time steps, B batch, D input features, H hidden units. Weights: w_ih [2H, D] and
b_ih [2H], gate blocks z, n; w_hh and b_hh are None (WEIGHTS). The checkpoint keeps PyTorch's
names for them (rnn.weight_ih_l{k}, rnn.bias_ih_l{k}); docs/min-cells.md loads them into PyTorch.
"""

from __future__ import annotations

import numpy as np

from charrnn.nn.cells.projection import input_projection, weight_grads
from charrnn.nn.cells.scan import linear_scan, linear_scan_reverse

GATES = ("z", "n")
STATE = ("h",)
WEIGHTS = ("weight_ih", "bias_ih")      # no product with the previous state


# -- the sequence kernels ------------------------------------------------------------------------

def forward(x, state0, w_ih, w_hh, b_ih, b_hh, **_):
    """Over T steps.  x [T, B, D], state0 = (h0 [B, H],) -> (out [T, B, H], (h_T,), cache)."""
    H = w_ih.shape[0] // 2
    gates = input_projection(x, w_ih, b_ih)               # [T, B, 2H]: z (pre-activation), n
    a, n = gates[..., :H], gates[..., H:]
    with np.errstate(over="ignore"):                      # exp -> inf gives the limit a = 0
        np.exp(a, out=a)
        a += 1
        np.reciprocal(a, out=a)                           # a = 1 - z = sigmoid(-z_pre)
    hs = np.empty((x.shape[0] + 1,) + state0[0].shape, gates.dtype)
    hs[0] = state0[0]
    b = np.multiply(a, n, out=hs[1:])
    np.subtract(n, b, out=b)                              # z n = n - a n
    linear_scan(a, b, state0[0], out=b)
    cache = (x, hs, gates, w_ih)
    return hs[1:], (hs[-1].copy(),), cache


def trace(cache):
    """{"h", "z", "n": [T, B, H]}: the state after every step, the update gate after the sigmoid
    and the (linear) candidate, read from forward's cache (which holds 1 - z)."""
    hs, gates = cache[1], cache[2]
    H = hs.shape[-1]
    return {"h": hs[1:], "z": 1.0 - gates[..., :H], "n": gates[..., H:]}


def backward(dout, dstate, cache, grads=None, dh_trace=None):
    """BPTT through forward.  dout [T, B, H], dstate = (dh_T,) -> (dx, (dh0,), grads).

    dh_trace, an optional [T, B, H] array, receives dL/dh_t of every step. Consumes the cache.
    """
    x, hs, gates, w_ih = cache
    H = gates.shape[-1] // 2
    a, n = gates[..., :H], gates[..., H:]
    g = linear_scan_reverse(a, dout, np.asarray(dstate[0], a.dtype))
    if dh_trace is not None:
        dh_trace[...] = g
    dh0 = a[0] * g[0]
    # dz_pre = g z (n - h_prev) a,  dn = g z = g - g a: written over the gates they came from
    d = np.subtract(n, hs[:-1])           # hs[1:] is the caller's output: not overwritten
    gz = np.multiply(g, a, out=n)
    np.subtract(g, gz, out=gz)
    d *= gz
    np.multiply(d, a, out=a)
    dx, grads = weight_grads(gates, None, x, None, w_ih, grads)
    return dx, (dh0,), grads


def kinks(cache):
    """None: the minGRU is smooth everywhere."""
    return None


# -- the batch-1 step of sampling (charrnn/nn/stepper.py) -----------------------------------------
# One layer's buffer is [z, n], filled by the input side alone (layer 0: the table row); z's
# columns are halved for sigmoid(a) = 0.5 tanh(a / 2) + 0.5.

def step_columns(w_t, side):
    """The step's columns of a transposed weight or bias [..., 2H] (input side only)."""
    H = w_t.shape[-1] // 2
    return np.concatenate([w_t[..., :H] * 0.5, w_t[..., H:]], axis=-1)


def step_layout(H):
    """(buffer width, product columns, table columns, {extra state: columns}) of one layer."""
    return 2 * H, slice(0, 2 * H), slice(0, 2 * H), {}


def step_body(buf, h, tmp, nonlinearity="tanh"):
    """The step after the product: buf [2H] = [z / 2 pre-activation, n]; writes h [H]."""
    H = h.shape[0]
    z, n, tmp = buf[:H], buf[H:], tmp[:H]
    tanh, mul, add, sub = np.tanh, np.multiply, np.add, np.subtract

    def body():
        tanh(z, out=z)
        mul(z, 0.5, out=z)
        add(z, 0.5, out=z)
        sub(n, h, out=tmp)              # h' = h + z * (n - h)
        mul(tmp, z, out=tmp)
        add(h, tmp, out=h)
    return body


# -- the textbook step (charrnn/nn/reference.py) ------------------------------------------------

def reference_step(x, state, w_ih, w_hh, b_ih, b_hh, **_):
    """One step, plainly.  x [B, D], state (h [B, H],) -> ((h',), saved for the backward)."""
    h = state[0]
    H = h.shape[1]
    gi = x @ w_ih.T + b_ih
    z = 1.0 / (1.0 + np.exp(-gi[:, :H]))
    n = gi[:, H:]
    return ((1 - z) * h + z * n,), dict(z=z, n=n, h=h)


def reference_step_backward(dstate, saved):
    """(d input-side pre-activations, None: no hidden side, d state)."""
    dh = dstate[0]
    z, n, h = saved["z"], saved["n"], saved["h"]
    dgi = np.concatenate([dh * (n - h) * z * (1 - z), dh * z], axis=1)
    return dgi, None, (dh * (1 - z),)
