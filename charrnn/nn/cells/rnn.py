"""The vanilla (Elman) RNN cell, as torch.nn.RNN.

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),     act = tanh or relu

With relu and weight_hh initialised to the identity it is the IRNN of Le, Jaitly & Hinton,
"A Simple Way to Initialize Recurrent Networks of Rectified Linear Units" (2015).

Shape key: T time steps, B batch, D input features, H hidden units. Weights: w_ih [H, D],
w_hh [H, H], b_ih [H], b_hh [H]. Sequences are time-major: x [T, B, D], out [T, B, H].
"""

from __future__ import annotations

import numpy as np

from charrnn.fast.stepproduct import StepProduct
from charrnn.nn.cells.projection import input_projection, weight_grads

GATES = ("h",)                 # one block of rows in weight_ih / weight_hh
NONLINEARITIES = ("tanh", "relu")  # model.nonlinearity: the activation of h
STATE = ("h",)


# -- the sequence kernels ------------------------------------------------------------------------

def forward(x, state0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh"):
    """Over T steps.  x [T, B, D], state0 = (h0 [B, H],) -> (out [T, B, H], (h_T,), cache)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    hs = np.empty((T + 1, B, H), x.dtype)     # hs[t + 1] = h_t; hs[0] = h0
    hs[0] = state0[0]
    pre = input_projection(x, w_ih, b_ih + b_hh)
    recurrent = StepProduct(w_hh.T, B, steps=T)
    relu = nonlinearity == "relu"
    for t in range(T):
        recurrent.add_to(hs[t], pre[t])
        if relu:
            np.maximum(pre[t], 0, out=hs[t + 1])
        else:
            np.tanh(pre[t], out=hs[t + 1])
    cache = (x, hs, w_ih, w_hh, relu)
    return hs[1:], (hs[T].copy(),), cache


def backward(dout, dstate, cache, grads=None, dh_trace=None):
    """BPTT through forward.  dout [T, B, H], dstate = (dh_T,) -> (dx, (dh0,), grads).

    dh_trace, an optional [T, B, H] array, receives dL/dh_t of every step.
    """
    x, hs, w_ih, w_hh, relu = cache
    T = x.shape[0]
    out = hs[1:]
    # d act / d pre, for all steps at once: relu' = [h > 0], tanh' = 1 - h^2
    dact = (out > 0).astype(x.dtype) if relu else 1 - out * out
    dpre = np.empty_like(dact)
    dh = np.array(dstate[0], dtype=x.dtype, copy=True)
    recurrent = StepProduct(w_hh, dh.shape[0])
    for t in range(T - 1, -1, -1):
        dh += dout[t]
        if dh_trace is not None:
            dh_trace[t] = dh
        np.multiply(dh, dact[t], out=dpre[t])
        recurrent.into(dpre[t], dh)
    dx, grads = weight_grads(dpre, dpre, x, hs[:-1], w_ih, grads)
    return dx, (dh,), grads


def trace(cache):
    """{"h": [T, B, H]}: the state after every step, read from forward's cache (views)."""
    return {"h": cache[1][1:]}


def kinks(cache):
    """Which units sit on the relu's kink side (h > 0), as bytes, or None when tanh: a
    finite-difference check is only valid while this pattern does not change."""
    x, hs, _, _, relu = cache
    return np.packbits(hs[1:] > 0).tobytes() if relu else None


# -- the batch-1 step of sampling (charrnn/nn/stepper.py) -----------------------------------------

def step_columns(w_t, side):
    """The step's columns of a transposed weight or bias [..., H] (side 'x' or 'h'): as is."""
    return w_t


def step_layout(H):
    """(buffer width, product columns, table columns, {extra state: columns}) of one layer."""
    return H, slice(0, H), slice(0, H), {}


def step_body(buf, h, tmp, nonlinearity="tanh"):
    """The step after the products: buf [H] holds the pre-activation; writes h [H]."""
    tanh, maximum = np.tanh, np.maximum
    if nonlinearity == "relu":
        return lambda: maximum(buf, 0.0, out=h)
    return lambda: tanh(buf, out=h)


# -- the textbook step (charrnn/nn/reference.py) ------------------------------------------------

def reference_step(x, state, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh"):
    """One step, plainly.  x [B, D], state (h [B, H],) -> ((h',), saved for the backward)."""
    a = x @ w_ih.T + b_ih + state[0] @ w_hh.T + b_hh
    h = np.maximum(a, 0) if nonlinearity == "relu" else np.tanh(a)
    return (h,), dict(a=a, h=h, relu=nonlinearity == "relu")


def reference_step_backward(dstate, saved):
    """(d input-side pre-activations, d hidden-side ones, d state not through W_hh)."""
    da = dstate[0] * ((saved["a"] > 0) if saved["relu"] else (1 - saved["h"] ** 2))
    return da, da, (0.0,)
