"""What every cell shares: the input projection before the time loop and the weight gradients
after it.

Shape key: T time steps, B batch, D input features (E for layer 0, else H), H hidden units,
G gates, V vocabulary.

A layer's input-side work does not depend on the recurrence, so it runs over all T steps at
once: the projection x W_ih^T + b is one GEMM before the loop, and after the backward loop the
weight gradients are one GEMM each over all T*B rows.
"""

from __future__ import annotations

import numpy as np

from charrnn.nn import ops

ONE_GEMM_ROWS = 256     # up to this many rows, the projection is one GEMM, not four


class TokenInput:
    """Layer 0's input x = embedding[ids] [T, B, E], kept as the embedding table and the ids.

    Forward: the input projection x W_ih^T + b is a row gather from the [V, G*H] table
    embedding W_ih^T + b, so V rows go through the GEMM instead of T*B.
    Backward: with the gate gradients summed per token, S = onehot(ids)^T dgates [V, G*H],
    dW_ih = S^T embedding and d embedding = S W_ih: one [V, T*B] x [T*B, G*H] product instead of
    two of inner size E (dW_ih and dx), so it is used when V <= 2E.
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


def input_projection(x, w_ih, bias, groups=1):
    """x W_ih^T + bias for all steps in one GEMM (or one table gather).

    x [T, B, D] (or a TokenInput) -> [T, B, G*H], or with groups=G the gate-major [T, G, B, H]
    (each gate of a step one contiguous [B, H] block), converted a quarter of the steps at a
    time (a temporary of a quarter of the result, not a whole second copy) unless T * B <=
    ONE_GEMM_ROWS.
    """
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
    # each GEMM packs all of w_ih, which costs as much as ~100 rows' products: few rows, one GEMM
    step = T if T * B <= ONE_GEMM_ROWS else max(1, T // 4)
    for t0 in range(0, T, step):
        part = x[t0:t0 + step]
        xw = part.reshape(-1, D) @ w_ih.T
        xw += bias
        np.copyto(out[t0:t0 + step], xw.reshape(len(part), B, groups, -1).transpose(0, 2, 1, 3))
    return out


def weight_grads(dgates_x, dgates_h, x, h_prev, w_ih, grads):
    """(dx, grads): the input gradient, and the weight and bias gradients summed over all
    steps, one GEMM per weight.

    dgates_x [T, B, G*H] is the gradient of the input-side pre-activations, dgates_h that of the
    hidden-side ones (the same array except where a cell keeps the two sides apart, as the
    GRU's n gate; None for a cell without weight_hh, which then gets no weight_hh / bias_hh
    gradients), h_prev [T, B, H] the inputs of the recurrent product. grads: a dict with
    weight_ih, weight_hh, bias_ih, bias_hh to write into, or None to allocate one. dx is
    [T, B, D]; for a TokenInput x, the embedding's gradient [V, E].
    """
    T, B, GH = dgates_x.shape
    gx = dgates_x.reshape(T * B, GH)
    if grads is None:
        grads = {"weight_ih": np.empty((GH, x.shape[2]), x.dtype),
                 "bias_ih": np.empty(GH, x.dtype)}
        if dgates_h is not None:
            grads.update(weight_hh=np.empty((GH, h_prev.shape[2]), x.dtype),
                         bias_hh=np.empty(GH, x.dtype))
    if isinstance(x, TokenInput):
        dx = x.grads(gx, w_ih, grads["weight_ih"])
    else:
        np.dot(gx.T, x.reshape(T * B, -1), out=grads["weight_ih"])
        dx = (gx @ w_ih).reshape(x.shape)
    # column sums as a matrix-vector product: np.sum's axis-0 reduction walks the rows one by
    # one, and the product sums float32 more accurately
    ones = np.ones(T * B, x.dtype)
    np.dot(ones, gx, out=grads["bias_ih"])
    if dgates_h is None:
        return dx, grads
    gh = dgates_h.reshape(T * B, GH)
    np.dot(gh.T, h_prev.reshape(T * B, -1), out=grads["weight_hh"])
    if dgates_h is dgates_x:
        grads["bias_hh"][...] = grads["bias_ih"]
    else:
        np.dot(ones, gh, out=grads["bias_hh"])
    return dx, grads
