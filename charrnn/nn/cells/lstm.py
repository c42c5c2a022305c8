"""The LSTM cell, as torch.nn.LSTM (Hochreiter & Schmidhuber, 1997, with the forget gate of
Gers et al., 2000).

    [i, f, g, o] = [sigmoid, sigmoid, tanh, sigmoid](W_ih x + b_ih + W_hh h + b_hh)
    c' = f * c + i * g
    h' = o * tanh(c')

Shape key: T time steps, B batch, D input features, H hidden units. Weights: w_ih [4H, D],
w_hh [4H, H], b_ih [4H], b_hh [4H], gate blocks in PyTorch's order i, f, g, o.

Fast forms:
- the gate pre-activations are kept gate-major, [T, 4, B, H], so every gate of a step is one
  contiguous [B, H] block and each element-wise call runs NumPy's contiguous inner loop;
- the four nonlinearities of a step are one tanh over all gates, with
  sigmoid(a) = 0.5 tanh(a / 2) + 0.5 and the sigmoid gates' rows of the weights and biases
  pre-scaled by 1/2 (exact in binary floating point);
- the backward's gate-derivative factors are computed for all steps in bulk before its time
  loop, in the memory of the forward's activations (the cache is spent).
"""

from __future__ import annotations

import numpy as np

from charrnn.fast.stepproduct import StepProduct
from charrnn.nn.cells.projection import input_projection, weight_grads

GATES = ("i", "f", "g", "o")
STATE = ("h", "c")


# -- the sequence kernels ------------------------------------------------------------------------

def _gate_scale(H, dtype):
    """1/2 on the sigmoid gates' rows (i, f, o), 1 on g's: then one tanh over all four gates
    gives tanh(a / 2) and tanh(a), and sigmoid(a) = 0.5 tanh(a / 2) + 0.5."""
    scale = np.full(4 * H, 0.5, dtype)
    scale[2 * H:3 * H] = 1
    return scale


def scales_activations(T, B, D, H) -> bool:
    """Whether the halving goes on each step's activations (T*B*4H of them) rather than on the
    weights (4H*(D+H)): the fewer. The same bits either way (halving is exact)."""
    return T * B < D + H


def forward(x, state0, w_ih, w_hh, b_ih, b_hh, **_):
    """Over T steps.  x [T, B, D], state0 = (h0, c0), each [B, H]
    -> (out [T, B, H], (h_T, c_T), cache)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    scale = _gate_scale(H, x.dtype)
    half = x.dtype.type(0.5)
    # gates hold a / 2 (i, f, o) and a (g); then tanh, * 1/2 and + 1/2 on i, f, o, as scalar
    # operations on [i, f] and on o (cheaper than per-gate constants). The halving is exact, so
    # it goes on the weights, or for few rows (a short segment) on each step's activations
    few = scales_activations(T, B, x.shape[2], H)
    wx, wh, bias = w_ih, w_hh, b_ih + b_hh
    if not few:
        wx, wh, bias = w_ih * scale[:, None], w_hh * scale[:, None], bias * scale
    step_scale = scale.reshape(4, 1, H)
    gates = input_projection(x, wx, bias, groups=4)
    recurrent = StepProduct(wh.T, B, groups=4, steps=T)   # [H, 4H] -> [4, B, H]
    hs = np.empty((T + 1, B, H), x.dtype)
    cs = np.empty((T + 1, B, H), x.dtype)
    tanh_c = np.empty((T, B, H), x.dtype)
    hs[0], cs[0] = state0
    ig = np.empty((B, H), x.dtype)
    i, f, g, o = (gates[:, k] for k in range(4))       # [T, B, H] each
    i_f = gates[:, :2]
    for t in range(T):
        a = gates[t]                                   # [4, B, H]
        recurrent.add_to(hs[t], a)
        if few:
            a *= step_scale
        np.tanh(a, out=a)
        for sigmoid in (i_f[t], o[t]):                 # i, f, o = sigmoid(a); g = tanh(a)
            sigmoid *= half
            sigmoid += half
        np.multiply(i[t], g[t], out=ig)
        np.multiply(f[t], cs[t], out=cs[t + 1])
        cs[t + 1] += ig
        np.tanh(cs[t + 1], out=tanh_c[t])
        np.multiply(o[t], tanh_c[t], out=hs[t + 1])
    cache = (x, hs, cs, tanh_c, gates, w_ih, w_hh)
    return hs[1:], (hs[T].copy(), cs[T].copy()), cache


def _factors(gates, cs, tanh_c, one):
    """Turn the activations in `gates` [T, 4, B, H] into the backward's per-step factors, in
    place -> (factors, f, dc_from_h):

        [di, df, dg] = dc * k[:, :3] (per gate),  do = dh * k[:, 3],
        k_i = i(1-i) g,  k_f = f(1-f) c_{t-1},  k_g = (1-g^2) i,  k_o = o(1-o) tanh(c_t),
        dc_from_h = o (1 - tanh(c_t)^2),  and a copy of f for the loop.

    s (1 - s) is taken for the three sigmoid gates together, a quarter of the steps per pass
    (so the temporary is [T/4, 3, B, H]), leaving g in place for k_i.
    """
    T = gates.shape[0]
    i, f, g, o = (gates[:, k] for k in range(4))
    dc_from_h = np.multiply(tanh_c, tanh_c)
    np.subtract(one, dc_from_h, out=dc_from_h)
    dc_from_h *= o
    f_keep = f.copy()
    kg = np.multiply(g, g)
    np.subtract(one, kg, out=kg)
    kg *= i                                            # k_g, while i is still the gate
    step = max(1, T // 4)
    one_minus = np.empty((step, 3) + gates.shape[2:], gates.dtype)
    for t0 in range(0, T, step):
        n = min(step, T - t0)
        for sigmoid, spare in ((gates[t0:t0 + n, :2], one_minus[:n, :2]),
                               (gates[t0:t0 + n, 3], one_minus[:n, 2])):
            np.subtract(one, sigmoid, out=spare)
            sigmoid *= spare                           # s (1 - s): i, f and o
    del one_minus
    i *= g
    f *= cs[:-1]
    o *= tanh_c
    g[...] = kg
    return gates, f_keep, dc_from_h


def backward(dout, dstate, cache, grads=None, dh_trace=None):
    """BPTT through forward.  dout [T, B, H], dstate = (dh_T, dc_T) -> (dx, (dh0, dc0), grads).

    Consumes the cache (its activations become the backward's factors). dh_trace, an optional
    [T, B, H] array, receives dL/dh_t of every step.
    """
    x, hs, cs, tanh_c, gates, w_ih, w_hh = cache
    T, B, _ = x.shape
    H = w_hh.shape[1]
    factors, f, dc_from_h = _factors(gates, cs, tanh_c, x.dtype.type(1))
    # Step t's gate gradients [B, 4H] (row-major, PyTorch's order: what the recurrent product
    # and the weight gradients take) are written into the memory of step t's factors once
    # they are read: the same bytes, so `gates` holds dgates [T, B, 4H] after the loop.
    dgates = gates.reshape(T, B, 4 * H)
    row = np.empty((B, 4 * H), x.dtype)
    row4 = row.reshape(B, 4, H).transpose(1, 0, 2)    # [4, B, H], a view of row
    dh = np.array(dstate[0], dtype=x.dtype, copy=True)
    dc = np.array(dstate[1], dtype=x.dtype, copy=True)
    tmp = np.empty((B, H), x.dtype)
    recurrent = StepProduct(w_hh, B)
    for t in range(T - 1, -1, -1):
        dh += dout[t]
        if dh_trace is not None:
            dh_trace[t] = dh
        np.multiply(dh, dc_from_h[t], out=tmp)
        dc += tmp
        np.multiply(factors[t, :3], dc, out=row4[:3])
        np.multiply(factors[t, 3], dh, out=row4[3])
        dc *= f[t]
        dgates[t] = row
        recurrent.into(row, dh)
    dx, grads = weight_grads(dgates, dgates, x, hs[:-1], w_ih, grads)
    return dx, (dh, dc), grads


def trace(cache):
    """{"h", "c", "i", "f", "g", "o": [T, B, H]}: both states after every step and the gates'
    activations, read from forward's cache (views; before a backward, which spends the cache)."""
    _, hs, cs, _, gates, _, _ = cache
    return {"h": hs[1:], "c": cs[1:], **{name: gates[:, k] for k, name in enumerate(GATES)}}


def kinks(cache):
    """None: the LSTM is smooth everywhere."""
    return None


# -- the batch-1 step of sampling (charrnn/nn/stepper.py) -----------------------------------------
# One layer's buffer is [o, i, f, g, c]: the sigmoid gates are one slice [:3H] (halved, for
# sigmoid(a) = 0.5 tanh(a / 2) + 0.5), and [i, f] lines up with [g, c], so [i * g, f * c] is
# one multiply.

def step_columns(w_t, side):
    """The step's columns of a transposed weight or bias [..., 4H] (side 'x' or 'h'):
    reordered o, i, f, g, the first 3H halved."""
    H = w_t.shape[-1] // 4
    out = w_t[..., np.r_[3 * H:4 * H, 0:2 * H, 2 * H:3 * H]].copy()
    out[..., :3 * H] *= 0.5
    return out


def step_layout(H):
    """(buffer width, product columns, table columns, {extra state: columns}) of one layer."""
    return 5 * H, slice(0, 4 * H), slice(0, 4 * H), {"c": slice(4 * H, 5 * H)}


def step_body(buf, h, tmp, nonlinearity="tanh"):
    """The step after the products: buf [5H] = [o, i, f, g, c]; writes h and c."""
    H = h.shape[0]
    gates, sig, o = buf[:4 * H], buf[:3 * H], buf[:H]
    i_f, g_c, c = buf[H:3 * H], buf[3 * H:], buf[4 * H:]
    ig, fc, tc = tmp[:H], tmp[H:], tmp[:H]
    tanh, mul, add = np.tanh, np.multiply, np.add

    def body():
        tanh(gates, out=gates)
        mul(sig, 0.5, out=sig)          # sigmoid = 0.5 tanh(a / 2) + 0.5
        add(sig, 0.5, out=sig)
        mul(i_f, g_c, out=tmp)          # [i * g, f * c]
        add(ig, fc, out=c)              # c' = f * c + i * g
        tanh(c, out=tc)
        mul(o, tc, out=h)               # h' = o * tanh(c')
    return body


# -- the textbook step (charrnn/nn/reference.py) ------------------------------------------------

def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def reference_step(x, state, w_ih, w_hh, b_ih, b_hh, **_):
    """One step, plainly.  x [B, D], state (h, c) [B, H] -> ((h', c'), saved for the backward)."""
    h, c = state
    H = h.shape[1]
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i = _sigmoid(a[:, :H])
    f = _sigmoid(a[:, H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = _sigmoid(a[:, 3 * H:])
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return (h_new, c_new), dict(i=i, f=f, g=g, o=o, c=c, c_new=c_new)


def reference_step_backward(dstate, saved):
    """(d input-side pre-activations, d hidden-side ones, d state not through W_hh)."""
    dh, dc = dstate
    i, f, g, o = saved["i"], saved["f"], saved["g"], saved["o"]
    tc = np.tanh(saved["c_new"])
    dct = dc + dh * o * (1 - tc ** 2)
    da = np.concatenate([dct * g * i * (1 - i), dct * saved["c"] * f * (1 - f),
                         dct * i * (1 - g ** 2), dh * tc * o * (1 - o)], axis=1)
    return da, da, (0.0, dct * f)
