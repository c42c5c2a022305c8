"""One recurrent layer over a whole sequence: vanilla RNN, GRU and LSTM, forward and backward.

Shape key: T time steps, B batch, D input features (E for layer 0, else H), H hidden units,
G gates (1 rnn, 3 gru, 4 lstm). Sequences are time-major: x [T, B, D], out [T, B, H], so every
per-step slice x[t] is one contiguous [B, D] block.

Weights follow torch.nn.RNN / GRU / LSTM: w_ih [G*H, D], w_hh [G*H, H], b_ih [G*H], b_hh [G*H],
gate blocks stacked in PyTorch's order (gru: r, z, n; lstm: i, f, g, o). Inside the LSTM the
gate pre-activations are kept gate-major, [T, 4, B, H], so each gate of a step is one contiguous
[B, H] block (the RNN and GRU keep [T, B, G*H]).

How the kernels are made fast (and why the loop looks as it does):
- the input projection x W_ih^T + b for all T steps is one GEMM before the time loop; only the
  recurrent product h W_hh^T runs inside it, in column blocks that OpenBLAS multiplies without
  repacking the weights at every step (charrnn/fast/stepproduct.py), into preallocated buffers;
- the LSTM's four gate nonlinearities of a step are one tanh over all gates, with
  sigmoid(a) = 0.5 tanh(a / 2) + 0.5 and the sigmoid gates' rows of the weights and biases
  pre-scaled by 1/2 (exact in binary floating point), then one multiply and one add by
  per-column constants: 11.6 against 14.1 us a step at B=25, H=128 for the earlier
  1 / (1 + exp(-a)) form (exp, add, divide and a fix-up of the g block), and 3% off a whole
  LSTM step on the 2-core Zen 4 machine, whose NumPy tanh is as fast as its exp. The GRU's
  r and z use sigmoid(a) = 1 / (1 + exp(-a)) with their rows pre-scaled by -1; exp
  overflowing to inf for very negative gates gives the exact limit 0 (the warning is
  silenced);
- the backward's gate-derivative factors (e.g. g * i * (1 - i)) are computed for all steps in
  bulk before its time loop, which then holds only the recurrent GEMM and a few small updates;
- the weight gradients are one GEMM each over all T*B rows after the loop;
- layer 0 may take a TokenInput (the embedding table and the ids) instead of the embedded
  rows, so its input products run over the V vocabulary rows rather than the T*B positions.

`forward(x, state0, w_ih, w_hh, b_ih, b_hh) -> (out, state, cache)` and
`backward(dout, dstate, cache, grads=None, dh_trace=None) -> (dx, dstate0, grads)` where state is a tuple
((h,) or (h, c), each [B, H]) and grads a dict with weight_ih, weight_hh, bias_ih, bias_hh
(written into the given arrays when `grads` is passed, allocated otherwise). dx has x's shape,
except for a TokenInput x: then it is the gradient of the embedding table [V, E]. A backward
consumes its cache (the LSTM's reuses the activations' memory).
"""

from __future__ import annotations

import numpy as np

from charrnn.nn import ops
from charrnn.fast.stepproduct import StepProduct

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


class TokenInput:
    """Layer 0's input x = embedding[ids] [T, B, E], kept as the embedding table and the ids.

    Forward: the input projection x W_ih^T + b is a row gather from the [V, G*H] table
    embedding W_ih^T + b, so V rows go through the GEMM instead of T*B (65 instead of 2,500
    for a 50 x 50 batch of English text): 1.1 -> 0.15 ms per 25 x 50 shard at H=128.
    Backward: with the gate gradients summed per token, S = onehot(ids)^T dgates [V, G*H],
    dW_ih = S^T embedding and d embedding = S W_ih; one [V, T*B] x [T*B, G*H] product instead of
    two of inner size E (dW_ih and dx), so it is used when V <= 2E (1.8 -> 1.1 ms, same shard).
    The model passes a TokenInput when V < T*B.
    """

    def __init__(self, embedding: np.ndarray, ids: np.ndarray):
        self.embedding, self.ids = embedding, ids
        self.shape = ids.shape + embedding.shape[1:]
        self.dtype = embedding.dtype

    def rows(self) -> np.ndarray:
        """x as [T*B, E] rows."""
        return self.embedding[self.ids.reshape(-1)]

    def grads(self, dg: np.ndarray, w_ih: np.ndarray, dw_ih: np.ndarray) -> np.ndarray:
        """dg [T*B, G*H] -> the gradient of the embedding [V, E]; writes dW_ih = dg^T x."""
        V, E = self.embedding.shape
        flat = self.ids.reshape(-1)
        if V > 2 * E:                  # two products of inner size E are cheaper
            np.dot(dg.T, self.rows(), out=dw_ih)
            return ops.embedding_backward(dg @ w_ih, flat, np.empty_like(self.embedding))
        onehot = np.zeros((V, flat.size), dg.dtype)
        onehot[flat, np.arange(flat.size)] = 1
        per_token = onehot @ dg
        np.dot(per_token.T, self.embedding, out=dw_ih)
        return per_token @ w_ih


def _input_projection(x, w_ih, bias, groups=1):
    """x W_ih^T + bias for all steps in one GEMM (or one table gather).  x [T, B, D] ->
    [T, B, G*H], or with groups=G the gate-major [T, G, B, H] (each gate of a step one
    contiguous [B, H] block), converted a quarter of the steps at a time (a temporary of a
    quarter of the result, not a whole second copy)."""
    if isinstance(x, TokenInput):
        table = x.embedding @ w_ih.T
        table += bias
        if groups == 1:
            return np.take(table, x.ids, axis=0)
        # row v * G + g of the [V * G, H] table is gate g of token v
        rows = x.ids[:, None, :] * groups + np.arange(groups)[:, None]     # [T, G, B]
        return np.take(table.reshape(-1, table.shape[1] // groups), rows, axis=0)
    T, B, D = x.shape
    if groups == 1:
        xw = x.reshape(T * B, D) @ w_ih.T
        xw += bias
        return xw.reshape(T, B, -1)
    out = np.empty((T, groups, B, w_ih.shape[0] // groups), x.dtype)
    step = max(1, T // 4)
    for t0 in range(0, T, step):
        part = x[t0:t0 + step]
        xw = part.reshape(-1, D) @ w_ih.T
        xw += bias
        np.copyto(out[t0:t0 + step], xw.reshape(len(part), B, groups, -1).transpose(0, 2, 1, 3))
    return out


def _grads(dgates_x, dgates_h, x, h_prev, w_ih, grads):
    """(dx, grads): the input gradient, and the weight and bias gradients summed over all
    steps, one GEMM per weight.

    dgates_x [T, B, G*H] is the gradient of the input-side pre-activations, dgates_h that of the
    hidden-side ones (the same array except in the GRU's n gate), h_prev [T, B, H] the inputs of
    the recurrent product. dx is [T, B, D]; for a TokenInput x, the embedding's gradient [V, E].
    """
    T, B, GH = dgates_x.shape
    gx = dgates_x.reshape(T * B, GH)
    gh = dgates_h.reshape(T * B, GH)
    if grads is None:
        grads = {"weight_ih": np.empty((GH, x.shape[2]), x.dtype),
                 "weight_hh": np.empty((GH, h_prev.shape[2]), x.dtype),
                 "bias_ih": np.empty(GH, x.dtype), "bias_hh": np.empty(GH, x.dtype)}
    if isinstance(x, TokenInput):
        dx = x.grads(gx, w_ih, grads["weight_ih"])
    else:
        np.dot(gx.T, x.reshape(T * B, -1), out=grads["weight_ih"])
        dx = (gx @ w_ih).reshape(x.shape)
    np.dot(gh.T, h_prev.reshape(T * B, -1), out=grads["weight_hh"])
    # column sums as a matrix-vector product: 62 -> 34 us for [1250, 512] (np.sum's axis-0
    # reduction walks the rows one by one), and summed in float32 more accurately
    ones = np.ones(T * B, x.dtype)
    np.dot(ones, gx, out=grads["bias_ih"])
    if dgates_h is dgates_x:
        grads["bias_hh"][...] = grads["bias_ih"]
    else:
        np.dot(ones, gh, out=grads["bias_hh"])
    return dx, grads


# ---------------------------------------------------------------------------------------------
# Vanilla RNN:  h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),  act = tanh or relu
# ---------------------------------------------------------------------------------------------

def rnn_forward(x, state0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh"):
    """Elman RNN over T steps.  x [T, B, D], state0 = (h0 [B, H],) -> out [T, B, H]."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    hs = np.empty((T + 1, B, H), x.dtype)     # hs[t + 1] = h_t; hs[0] = h0
    hs[0] = state0[0]
    pre = _input_projection(x, w_ih, b_ih + b_hh)
    recurrent = StepProduct(w_hh.T, B)
    relu = nonlinearity == "relu"
    for t in range(T):
        recurrent.add_to(hs[t], pre[t])
        if relu:
            np.maximum(pre[t], 0, out=hs[t + 1])
        else:
            np.tanh(pre[t], out=hs[t + 1])
    cache = (x, hs, w_ih, w_hh, relu)
    return hs[1:], (hs[T].copy(),), cache


def rnn_backward(dout, dstate, cache, grads=None, dh_trace=None):
    """BPTT through rnn_forward.  dout [T, B, H], dstate = (dh_T,) -> (dx, (dh0,), grads)."""
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
    dx, grads = _grads(dpre, dpre, x, hs[:-1], w_ih, grads)
    return dx, (dh,), grads


# ---------------------------------------------------------------------------------------------
# GRU (PyTorch's form)
#   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
#   z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
#   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
#   h' = (1 - z) * n + z * h  =  n + z * (h - n)
# ---------------------------------------------------------------------------------------------

def gru_forward(x, state0, w_ih, w_hh, b_ih, b_hh):
    """GRU over T steps.  x [T, B, D], state0 = (h0 [B, H],) -> out [T, B, H]."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    one = x.dtype.type(1)
    # r and z only ever see the sum of both biases; b_hn must stay inside r * (...).
    # Their rows are negated (exactly), so sigmoid(a) = 1 / (1 + exp(row value)).
    neg = np.ones(3 * H, x.dtype)
    neg[:2 * H] = -1
    bias = b_ih.copy()
    bias[:2 * H] += b_hh[:2 * H]
    gates = _input_projection(x, w_ih * neg[:, None], bias * neg)   # becomes [r, z, n] in place
    recurrent = StepProduct((w_hh * neg[:, None]).T, B)   # [H, 3H]; r, z columns negated
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


def gru_backward(dout, dstate, cache, grads=None, dh_trace=None):
    """BPTT through gru_forward.  dout [T, B, H], dstate = (dh_T,) -> (dx, (dh0,), grads)."""
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
    dx, grads = _grads(dgx, dgh, x, h_prev, w_ih, grads)
    return dx, (dh,), grads


# ---------------------------------------------------------------------------------------------
# LSTM (gate order i, f, g, o as PyTorch)
#   [i, f, g, o] = [sigmoid, sigmoid, tanh, sigmoid](W_ih x + b_ih + W_hh h + b_hh)
#   c' = f * c + i * g
#   h' = o * tanh(c')
# ---------------------------------------------------------------------------------------------

def _lstm_gate_scale(H, dtype):
    """1/2 on the sigmoid gates' rows (i, f, o), 1 on g's: then one tanh over all four gates
    gives tanh(a / 2) and tanh(a), and sigmoid(a) = 0.5 tanh(a / 2) + 0.5 (module docstring)."""
    scale = np.full(4 * H, 0.5, dtype)
    scale[2 * H:3 * H] = 1
    return scale


def lstm_forward(x, state0, w_ih, w_hh, b_ih, b_hh):
    """LSTM over T steps.  x [T, B, D], state0 = (h0, c0), each [B, H] -> out [T, B, H].

    The gates are kept gate-major, [T, 4, B, H]: every gate of a step is one contiguous [B, H]
    block, so each element-wise call runs NumPy's contiguous inner loop, where the
    [T, B, 4H] layout made the gate slices strided [B, H] views that go through its general
    iterator (6% off a 25-stream shard at H=128, 2% at H=512, with the backward's share:
    in-process A/B on the 2-core bench machine).
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    scale = _lstm_gate_scale(H, x.dtype)
    half = x.dtype.type(0.5)
    # gates hold a / 2 (i, f, o) and a (g); then tanh, * 1/2 and + 1/2 on i, f, o: the
    # activations (scalar operations on [i, f] and on o: 6.1 us a step at B=25, H=128, where
    # one multiply and one add by [4, 1, 1] per-gate constants take 9.8 us)
    gates = _input_projection(x, w_ih * scale[:, None], (b_ih + b_hh) * scale, groups=4)
    recurrent = StepProduct((w_hh * scale[:, None]).T, B, groups=4)   # [H, 4H] -> [4, B, H]
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


def lstm_backward(dout, dstate, cache, grads=None, dh_trace=None):
    """BPTT through lstm_forward.  dout [T, B, H], dstate = (dh_T, dc_T) -> (dx, (dh0, dc0), grads)."""
    x, hs, cs, tanh_c, gates, w_ih, w_hh = cache
    T, B, _ = x.shape
    H = w_hh.shape[1]
    i, f, g, o = (gates[:, k] for k in range(4))       # [T, B, H] each
    # bulk factors:  [di, df, dg] = dc * k[:, :3] (per gate),  do = dh * k[:, 3],
    #                dc_t = dc_{t+1} * f_{t+1} + dh_t * o_t * (1 - tanh(c_t)^2)
    # with k_i = i(1-i) g, k_f = f(1-f) c_{t-1}, k_g = (1-g^2) i, k_o = o(1-o) tanh(c_t).
    # The factors overwrite the activations in `gates` (the cache is spent: one backward per
    # forward), after the loop's own needs (f, o * (1 - tanh(c)^2)) are taken. Peak memory:
    # one [T, 4, B, H] array for all of this instead of two (H=512: -7.7 MB a layer).
    # s (1 - s) is taken for the three sigmoid gates together, a quarter of the steps per
    # pass (so the temporary is [T/4, 3, B, H]), leaving g in place for k_i.
    one = x.dtype.type(1)
    dc_from_h = np.multiply(tanh_c, tanh_c)
    np.subtract(one, dc_from_h, out=dc_from_h)
    dc_from_h *= o
    f_keep = f.copy()
    kg = np.multiply(g, g)
    np.subtract(one, kg, out=kg)
    kg *= i                                            # k_g, while i is still the gate
    step = max(1, T // 4)
    one_minus = np.empty((step, 3) + gates.shape[2:], x.dtype)
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
    del kg
    f = f_keep
    factors = gates
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
    dx, grads = _grads(dgates, dgates, x, hs[:-1], w_ih, grads)
    return dx, (dh, dc), grads


def forward(cell, x, state0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh"):
    """Dispatch to the cell's forward; see the module docstring for the signature."""
    if cell == "rnn":
        return rnn_forward(x, state0, w_ih, w_hh, b_ih, b_hh, nonlinearity)
    if cell == "gru":
        return gru_forward(x, state0, w_ih, w_hh, b_ih, b_hh)
    if cell == "lstm":
        return lstm_forward(x, state0, w_ih, w_hh, b_ih, b_hh)
    raise ValueError(f"unknown cell {cell!r}; expected one of rnn, gru, lstm")


def backward(cell, dout, dstate, cache, grads=None, dh_trace=None):
    """Dispatch to the cell's backward; see the module docstring for the signature.

    dh_trace, an optional [T, B, H] array, receives dL/dh_t (the total gradient reaching each
    step's hidden output): what `charrnn diagnose` plots to show vanishing gradients.
    """
    fn = {"rnn": rnn_backward, "gru": gru_backward, "lstm": lstm_backward}[cell]
    return fn(dout, dstate, cache, grads, dh_trace)
