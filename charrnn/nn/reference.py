"""The model, slowly and obviously: one time step, one sequence position, one sum at a time.

Batch-major, the cell's textbook step (each cell module's `reference_step` and
`reference_step_backward`), weight gradients accumulated step by step, the softmax and the
embedding gradient by Python loops. Nothing here is fast; the fast kernels (the cells' sequence
forward / backward, the model, the batch-1 Stepper) are tested against it to 1e-10 in float64,
as llm.c keeps `matmul_forward_naive` beside its fast kernel.
"""

from __future__ import annotations

import numpy as np

from charrnn.nn import cells

WEIGHTS = cells.LAYER_WEIGHTS


def reference_forward(params, spec, ids, state0, masks=None):
    """ids [B, T], state0 a tuple of [L, B, H] (one per name in the cell's STATE) ->
    (logits [B, T, V], final state, what the backward needs). masks: per layer a [T, B, H]
    dropout multiplier or None."""
    cell, L = cells.get(spec.cell), spec.layers
    B, T = ids.shape
    masks = masks or [None] * L
    inputs = [[params["embedding.weight"][ids[:, t]] for t in range(T)]]
    saved, finals, blocks = [], [], []
    for k in range(L):
        w = [params.get(f"rnn.{n}_l{k}") for n in WEIGHTS]    # None: a weight the cell lacks
        state = tuple(s[k] for s in state0)
        steps, outs = [], []
        for t in range(T):
            new, step_saved = cell.reference_step(inputs[k][t], state, *w,
                                                  nonlinearity=spec.nonlinearity)
            steps.append((state, step_saved))
            state = new
            outs.append(state[0] if masks[k] is None else state[0] * masks[k][t])
        if spec.residual and k >= 1:
            outs = [y + x for y, x in zip(outs, inputs[k])]
        blocks.append(outs)                    # the feed-forward block's input
        if spec.ffn_mult:
            outs = [y + feedforward(params, k, y)[0] for y in outs]
        finals.append(state)
        saved.append(steps)
        inputs.append(outs)
    wd, bd = params["decoder.weight"], params["decoder.bias"]
    logits = np.stack([y @ wd.T + bd for y in inputs[L]], axis=1)
    final = tuple(np.stack([f[j] for f in finals]) for j in range(len(state0)))
    return logits, final, (inputs, saved, masks, blocks)


def feedforward(params, k, y):
    """Layer k's feed-forward block of y [B, H]: (relu(y W1^T + b1) W2^T + b2, the hidden
    pre-activation u [B, M])."""
    u = y @ params[f"ffn.{k}.0.weight"].T + params[f"ffn.{k}.0.bias"]
    return np.maximum(u, 0) @ params[f"ffn.{k}.2.weight"].T + params[f"ffn.{k}.2.bias"], u


def feedforward_backward(params, grads, k, y, dout):
    """The gradient reaching the block's input y [B, H] from dout [B, H] at y + ffn(y);
    adds the block's weight gradients to grads."""
    u = feedforward(params, k, y)[1]
    r = np.maximum(u, 0)
    grads[f"ffn.{k}.2.weight"] += dout.T @ r
    grads[f"ffn.{k}.2.bias"] += dout.sum(axis=0)
    du = (dout @ params[f"ffn.{k}.2.weight"]) * (u > 0)
    grads[f"ffn.{k}.0.weight"] += du.T @ y
    grads[f"ffn.{k}.0.bias"] += du.sum(axis=0)
    return dout + du @ params[f"ffn.{k}.0.weight"]


def cross_entropy(logits, targets):
    """(mean -log softmax(logits)[target] over [B, T], its gradient wrt logits)."""
    B, T, _ = logits.shape
    loss, dlogits = 0.0, np.zeros_like(logits)
    for b in range(B):
        for t in range(T):
            z = logits[b, t] - logits[b, t].max()
            p = np.exp(z) / np.exp(z).sum()
            loss += -np.log(p[targets[b, t]]) / (B * T)
            p[targets[b, t]] -= 1
            dlogits[b, t] = p / (B * T)
    return loss, dlogits


def reference_loss_and_grads(params, spec, ids, targets, state0, masks=None, dstate=None):
    """Loss = mean cross-entropy over all [B, T] targets + sum_j <dstate_j, final_state_j>.

    params: name -> array; ids, targets [B, T]; state0: tuple of [L, B, H]; masks: per layer a
    [T, B, H] dropout multiplier or None; dstate: weights of the final state in the objective
    (so its gradient flows back), a tuple like state0, or None.
    Returns (loss, logits [B, T, V], final state, grads by name, d state0).
    """
    cell, L = cells.get(spec.cell), spec.layers
    B, T = ids.shape
    logits, final, (inputs, saved, masks, blocks) = reference_forward(params, spec, ids,
                                                                      state0, masks)
    loss, dlogits = cross_entropy(logits, targets)
    if dstate is not None:
        loss += sum(float((d * s).sum()) for d, s in zip(dstate, final))
    grads = {name: np.zeros_like(v) for name, v in params.items()}
    wd = params["decoder.weight"]
    douts = []
    for t in range(T):
        grads["decoder.weight"] += dlogits[:, t].T @ inputs[L][t]
        grads["decoder.bias"] += dlogits[:, t].sum(axis=0)
        douts.append(dlogits[:, t] @ wd)
    dstate0 = [np.zeros_like(s) for s in state0]
    for k in range(L - 1, -1, -1):
        w_ih, w_hh = params[f"rnn.weight_ih_l{k}"], params.get(f"rnn.weight_hh_l{k}")
        ds = tuple(np.zeros_like(s[k]) if dstate is None else dstate[j][k].copy()
                   for j, s in enumerate(state0))
        if spec.ffn_mult:
            douts = [feedforward_backward(params, grads, k, y, d)
                     for y, d in zip(blocks[k], douts)]
        dxs = [None] * T
        for t in range(T - 1, -1, -1):
            dout = douts[t] if masks[k] is None else douts[t] * masks[k][t]
            (h_prev, *_), step_saved = saved[k][t]
            dgi, dgh, direct = cell.reference_step_backward((ds[0] + dout,) + ds[1:], step_saved)
            grads[f"rnn.weight_ih_l{k}"] += dgi.T @ inputs[k][t]
            grads[f"rnn.bias_ih_l{k}"] += dgi.sum(axis=0)
            dxs[t] = dgi @ w_ih
            if w_hh is None:                   # no recurrent product: all of dh is direct
                ds = tuple(direct)
                continue
            grads[f"rnn.weight_hh_l{k}"] += dgh.T @ h_prev
            grads[f"rnn.bias_hh_l{k}"] += dgh.sum(axis=0)
            ds = (dgh @ w_hh + direct[0],) + tuple(direct[1:])
        for j, d in enumerate(ds):
            dstate0[j][k] = d
        if spec.residual and k >= 1:
            dxs = [dx + d for dx, d in zip(dxs, douts)]
        douts = dxs
    for t in range(T):
        for b in range(B):
            grads["embedding.weight"][ids[b, t]] += douts[t][b]
    return loss, logits, final, grads, tuple(dstate0)
