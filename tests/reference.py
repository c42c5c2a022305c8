"""A slow, obviously-correct reference of the model: one time step, one gate at a time.

Batch-major, textbook sigmoid, separate products per gate, weight gradients accumulated step by
step and the embedding gradient by a Python loop. Nothing here is meant to be fast; the fast
kernels in charrnn.cells / charrnn.model are tested against it.
"""

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _step_forward(cell, nonlinearity, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of one layer -> (h', c', what the backward needs)."""
    H = h.shape[1]
    gi = x @ w_ih.T + b_ih            # input-side pre-activations, [B, G*H]
    gh = h @ w_hh.T + b_hh            # hidden-side pre-activations
    if cell == "rnn":
        a = gi + gh
        h_new = np.maximum(a, 0) if nonlinearity == "relu" else np.tanh(a)
        return h_new, None, dict(a=a, h_new=h_new)
    if cell == "gru":
        r = sigmoid(gi[:, :H] + gh[:, :H])
        z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        hn = gh[:, 2 * H:]
        n = np.tanh(gi[:, 2 * H:] + r * hn)
        h_new = (1 - z) * n + z * h
        return h_new, None, dict(r=r, z=z, n=n, hn=hn)
    a = gi + gh
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:])
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return h_new, c_new, dict(i=i, f=f, g=g, o=o, c_prev=c, c_new=c_new)


def _step_backward(cell, nonlinearity, dh, dc, x, h_prev, sc, w_ih, w_hh, grads, k):
    """Backward of one step: accumulate weight gradients, return (dx, dh_prev, dc_prev)."""
    if cell == "rnn":
        da = dh * ((sc["a"] > 0) if nonlinearity == "relu" else (1 - sc["h_new"] ** 2))
        dgi = dgh = da
        dc_prev = None
    elif cell == "gru":
        r, z, n, hn = sc["r"], sc["z"], sc["n"], sc["hn"]
        dn = dh * (1 - z)
        dz = dh * (h_prev - n)
        dan = dn * (1 - n ** 2)
        dar = dan * hn * r * (1 - r)
        daz = dz * z * (1 - z)
        dgi = np.concatenate([dar, daz, dan], axis=1)
        dgh = np.concatenate([dar, daz, dan * r], axis=1)
        dc_prev = None
    else:
        i, f, g, o = sc["i"], sc["f"], sc["g"], sc["o"]
        tc = np.tanh(sc["c_new"])
        do = dh * tc
        dct = dc + dh * o * (1 - tc ** 2)
        di, dg, df = dct * g, dct * i, dct * sc["c_prev"]
        dc_prev = dct * f
        dgi = dgh = np.concatenate(
            [di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)], axis=1)
    grads[f"rnn.weight_ih_l{k}"] += dgi.T @ x
    grads[f"rnn.weight_hh_l{k}"] += dgh.T @ h_prev
    grads[f"rnn.bias_ih_l{k}"] += dgi.sum(axis=0)
    grads[f"rnn.bias_hh_l{k}"] += dgh.sum(axis=0)
    dh_prev = dgh @ w_hh + (dh * sc["z"] if cell == "gru" else 0)
    return dgi @ w_ih, dh_prev, dc_prev


def reference_loss_and_grads(params, spec, ids, targets, state0, masks=None, dstate=None):
    """Loss = mean cross-entropy over all [B, T] targets + sum_j <dstate_j, final_state_j>.

    params: name -> array; ids, targets [B, T]; state0: tuple of [L, B, H] (h,) or (h, c);
    masks: per layer a [T, B, H] dropout multiplier or None; dstate: weights of the final state
    in the objective (so its gradient flows back), tuple like state0, or None.
    Returns (loss, logits [B, T, V], final state, grads by name, d state0).
    """
    cell, nl, L = spec.cell, spec.nonlinearity, spec.layers
    B, T = ids.shape
    lstm = cell == "lstm"
    masks = masks or [None] * L
    xs = [params["embedding.weight"][ids[:, t]] for t in range(T)]
    inputs, caches, finals = [xs], [], []
    for k in range(L):
        w = [params[f"rnn.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h, c = state0[0][k], (state0[1][k] if lstm else None)
        outs, step_caches, hs = [], [], [h]
        for t in range(T):
            h, c, sc = _step_forward(cell, nl, inputs[k][t], h, c, *w)
            step_caches.append(sc)
            hs.append(h)
            outs.append(h if masks[k] is None else h * masks[k][t])
        finals.append((h, c))
        caches.append((step_caches, hs))
        inputs.append(outs)
    wd, bd = params["decoder.weight"], params["decoder.bias"]
    logits = np.stack([y @ wd.T + bd for y in inputs[L]], axis=1)       # [B, T, V]
    loss, dlogits = 0.0, np.zeros_like(logits)
    for b in range(B):
        for t in range(T):
            z = logits[b, t] - logits[b, t].max()
            p = np.exp(z) / np.exp(z).sum()
            loss += -np.log(p[targets[b, t]]) / (B * T)
            p[targets[b, t]] -= 1
            dlogits[b, t] = p / (B * T)
    final = (np.stack([f[0] for f in finals]),) + ((np.stack([f[1] for f in finals]),) if lstm else ())
    if dstate is not None:
        loss += sum(float((d * s).sum()) for d, s in zip(dstate, final))

    grads = {name: np.zeros_like(v) for name, v in params.items()}
    douts = []
    for t in range(T):
        grads["decoder.weight"] += dlogits[:, t].T @ inputs[L][t]
        grads["decoder.bias"] += dlogits[:, t].sum(axis=0)
        douts.append(dlogits[:, t] @ wd)
    dstate0 = [np.zeros_like(s) for s in state0]
    for k in range(L - 1, -1, -1):
        w_ih, w_hh = params[f"rnn.weight_ih_l{k}"], params[f"rnn.weight_hh_l{k}"]
        step_caches, hs = caches[k]
        dh = np.zeros_like(hs[0]) if dstate is None else dstate[0][k].copy()
        dc = (np.zeros_like(hs[0]) if dstate is None else dstate[1][k].copy()) if lstm else None
        dxs = [None] * T
        for t in range(T - 1, -1, -1):
            dout = douts[t] if masks[k] is None else douts[t] * masks[k][t]
            dxs[t], dh, dc = _step_backward(cell, nl, dh + dout, dc, inputs[k][t], hs[t],
                                            step_caches[t], w_ih, w_hh, grads, k)
        dstate0[0][k] = dh
        if lstm:
            dstate0[1][k] = dc
        douts = dxs
    for t in range(T):
        for b in range(B):
            grads["embedding.weight"][ids[b, t]] += douts[t][b]
    return loss, logits, final, grads, tuple(dstate0)
