"""The GRU cell, in PyTorch's form (torch.nn.GRU; Cho et al., 2014).

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h  =  n + z * (h - n)

Shape key: T time steps, B batch, D input features, H hidden units. Weights: w_ih [3H, D],
w_hh [3H, H], b_ih [3H], b_hh [3H], gate blocks in PyTorch's order r, z, n. b_hn stays inside
r * (...), so the n gate keeps its input-side and hidden-side products apart.

Fast forms: r and z use sigmoid(a) = 1 / (1 + exp(-a)) with their rows of the weights and
biases negated once (exact), so a step needs no negation; exp overflowing to inf for very
negative gates gives the exact limit 0 (the warning is silenced). The backward's gate-derivative
factors are computed for all steps in bulk before its time loop.
"""

from __future__ import annotations

import numpy as np

from charrnn.fast.stepproduct import StepProduct
from charrnn.nn.cells.projection import input_projection, weight_grads

GATES = ("r", "z", "n")
STATE = ("h",)


# -- the sequence kernels ------------------------------------------------------------------------

def forward(x, state0, w_ih, w_hh, b_ih, b_hh, **_):
    """Over T steps.  x [T, B, D], state0 = (h0 [B, H],) -> (out [T, B, H], (h_T,), cache)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    one = x.dtype.type(1)
    # r and z only ever see the sum of both biases; b_hn must stay inside r * (...)
    neg = np.ones(3 * H, x.dtype)
    neg[:2 * H] = -1
    bias = b_ih.copy()
    bias[:2 * H] += b_hh[:2 * H]
    gates = input_projection(x, w_ih * neg[:, None], bias * neg)   # becomes [r, z, n] in place
    recurrent = StepProduct((w_hh * neg[:, None]).T, B, steps=T)   # [H, 3H]; r, z columns negated
    b_hn = b_hh[2 * H:]
    hs = np.empty((T + 1, B, H), x.dtype)
    hs[0] = state0[0]
    hn = np.empty((T, B, H), x.dtype)                  # W_hn h + b_hn, needed by the backward
    rec = np.empty((B, 3 * H), x.dtype)
    tmp = np.empty((B, H), x.dtype)
    with np.errstate(over="ignore"):
        for t in range(T):
            recurrent.into(hs[t], rec)
            g = gates[t]
            rz, n = g[:, :2 * H], g[:, 2 * H:]
            rz += rec[:, :2 * H]
            np.exp(rz, out=rz)
            rz += one
            np.divide(one, rz, out=rz)
            np.add(rec[:, 2 * H:], b_hn, out=hn[t])
            np.multiply(rz[:, :H], hn[t], out=tmp)
            n += tmp
            np.tanh(n, out=n)
            np.subtract(hs[t], n, out=tmp)
            tmp *= rz[:, H:]
            np.add(n, tmp, out=hs[t + 1])
    cache = (x, hs, gates, hn, w_ih, w_hh)
    return hs[1:], (hs[T].copy(),), cache


def backward(dout, dstate, cache, grads=None, dh_trace=None):
    """BPTT through forward.  dout [T, B, H], dstate = (dh_T,) -> (dx, (dh0,), grads).

    dh_trace, an optional [T, B, H] array, receives dL/dh_t of every step.
    """
    x, hs, gates, hn, w_ih, w_hh = cache
    T, B, _ = x.shape
    H = w_hh.shape[1]
    r, z, n = gates[:, :, :H], gates[:, :, H:2 * H], gates[:, :, 2 * H:]
    h_prev = hs[:-1]
    # per-step factors, in bulk:  dz_pre = dh * fz,  dn_pre = dh * fn,  dr_pre = dn_pre * fr
    fz = (h_prev - n) * z * (1 - z)
    fn = (1 - z) * (1 - n * n)
    fr = hn * r * (1 - r)
    dgx = np.empty_like(gates)     # d(input-side pre-activations):  [dr, dz, dn]
    dgh = np.empty_like(gates)     # d(hidden-side pre-activations): [dr, dz, dn * r]
    rec = np.empty((B, H), x.dtype)
    recurrent = StepProduct(w_hh, B)
    dh = np.array(dstate[0], dtype=x.dtype, copy=True)
    for t in range(T - 1, -1, -1):
        dh += dout[t]
        if dh_trace is not None:
            dh_trace[t] = dh
        dn = np.multiply(dh, fn[t], out=dgx[t, :, 2 * H:])
        np.multiply(dh, fz[t], out=dgh[t, :, H:2 * H])
        np.multiply(dn, fr[t], out=dgh[t, :, :H])
        np.multiply(dn, r[t], out=dgh[t, :, 2 * H:])
        recurrent.into(dgh[t], rec)
        dh *= z[t]
        dh += rec
    dgx[:, :, :2 * H] = dgh[:, :, :2 * H]
    dx, grads = weight_grads(dgx, dgh, x, h_prev, w_ih, grads)
    return dx, (dh,), grads


def trace(cache):
    """{"h", "r", "z", "n": [T, B, H]}: the state after every step and the gates' activations
    (r, z after the sigmoid, n after the tanh), read from forward's cache (views)."""
    hs, gates = cache[1], cache[2]
    H = hs.shape[-1]
    return {"h": hs[1:], "r": gates[:, :, :H], "z": gates[:, :, H:2 * H], "n": gates[:, :, 2 * H:]}


def kinks(cache):
    """None: the GRU is smooth everywhere."""
    return None


# -- the batch-1 step of sampling (charrnn/nn/stepper.py) -----------------------------------------
# One layer's buffer is [n_x, r, z, n_h]: the input side's columns are [n, r, z, 0] and the
# hidden side's [0, r, z, n], so one product with [x, 1, h, 1] fills it; r and z are halved
# for sigmoid(a) = 0.5 tanh(a / 2) + 0.5.

def step_columns(w_t, side):
    """The step's columns of a transposed weight or bias [..., 3H] (side 'x' or 'h')."""
    H = w_t.shape[-1] // 3
    r, z, n = w_t[..., :H] * 0.5, w_t[..., H:2 * H] * 0.5, w_t[..., 2 * H:]
    zero = np.zeros_like(n)
    return np.concatenate([n, r, z, zero] if side == "x" else [zero, r, z, n], axis=-1)


def step_layout(H):
    """(buffer width, product columns, table columns, {extra state: columns}) of one layer."""
    return 4 * H, slice(0, 4 * H), slice(0, 3 * H), {}


def step_body(buf, h, tmp, nonlinearity="tanh"):
    """The step after the products: buf [4H] = [n_x, r, z, n_h]; writes h [H]."""
    H = h.shape[0]
    n, rz, r, zg, hn = buf[:H], buf[H:3 * H], buf[H:2 * H], buf[2 * H:3 * H], buf[3 * H:]
    tmp = tmp[:H]
    tanh, mul, add, sub = np.tanh, np.multiply, np.add, np.subtract

    def body():
        tanh(rz, out=rz)
        mul(rz, 0.5, out=rz)
        add(rz, 0.5, out=rz)
        mul(r, hn, out=tmp)
        add(n, tmp, out=n)              # n = tanh(n_x + r * n_h)
        tanh(n, out=n)
        sub(h, n, out=tmp)              # h' = n + z * (h - n)
        mul(tmp, zg, out=tmp)
        add(n, tmp, out=h)
    return body


# -- the textbook step (charrnn/nn/reference.py) ------------------------------------------------

def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def reference_step(x, state, w_ih, w_hh, b_ih, b_hh, **_):
    """One step, plainly.  x [B, D], state (h [B, H],) -> ((h',), saved for the backward)."""
    h = state[0]
    H = h.shape[1]
    gi = x @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    r = _sigmoid(gi[:, :H] + gh[:, :H])
    z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
    hn = gh[:, 2 * H:]
    n = np.tanh(gi[:, 2 * H:] + r * hn)
    h_new = (1 - z) * n + z * h
    return (h_new,), dict(r=r, z=z, n=n, hn=hn, h=h)


def reference_step_backward(dstate, saved):
    """(d input-side pre-activations, d hidden-side ones, d state not through W_hh)."""
    dh = dstate[0]
    r, z, n, hn = saved["r"], saved["z"], saved["n"], saved["hn"]
    dan = dh * (1 - z) * (1 - n ** 2)
    dar = dan * hn * r * (1 - r)
    daz = dh * (saved["h"] - n) * z * (1 - z)
    dgi = np.concatenate([dar, daz, dan], axis=1)
    dgh = np.concatenate([dar, daz, dan * r], axis=1)
    return dgi, dgh, (dh * z,)
