"""One time step of a CharRNN for one sequence (batch 1): the inference path of sampling.

Shape key: V vocabulary, E embedding, H hidden, L layers, G gates.

Generation cannot use the model's sequence forward (every input is the previous output), so
`Stepper` gives the same logits as `CharRNN.forward` (tested to 1e-10 in float64) with as few
NumPy calls per character as it can:

- the hidden states live in one preallocated vector  z = [h_0, 1, h_1, 1, ..., h_{L-1}, 1]; layer
  k >= 1 reads the contiguous slice [h_{k-1}, 1, h_k, 1] and multiplies it by one stacked matrix
  [W_ih^T; b_ih; W_hh^T; b_hh], so its input product, recurrent product and both biases are a
  single np.dot(..., out=); the decoder reads [h_{L-1}, 1] against [W_dec^T; b_dec] x 1/T;
- layer 0's input product is a row lookup in a precomputed table  emb W_ih0^T + b_ih0  [V, G*H];
- a cell without weight_hh (cells.has_recurrent_weights: minGRU, minLSTM) multiplies only
  [h_{k-1}, 1] by [W_ih^T; b_ih], and its layer 0 is the table row alone, with no product;
- each cell decides its columns (reordered, pre-scaled: the cell module's `step_columns`), its
  buffer (`step_layout`: the gate columns, and extra state such as the LSTM's c kept right
  after them) and the element-wise work after the products (`step_body`);
- with model.residual or model.ffn_mult, z holds two slots a layer, [h_k, 1, o_k, 1], o_k the
  block's output (h_k, plus o_{k-1} when residual, plus the feed-forward block's [o_k, 1]
  [W1^T; b1] -> relu -> [., 1] [W2^T; b2]); layer k >= 1 reads [o_{k-1}, 1, h_k, 1] and the
  decoder [o_{L-1}, 1];
- every intermediate is written into a buffer allocated once, through views bound once.
"""

from __future__ import annotations

import numpy as np

from charrnn.nn import cells


class Stepper:
    """One time step of a CharRNN for one sequence, with the same logits as CharRNN.forward.

    step(id) advances the state by one input character and returns the logits for the next one
    (a [V] buffer overwritten by the next call; multiplied by `inv_temperature`). advance(id) does
    the same without the decoder. The state is one array per name in the cell's STATE;
    reset(state) takes the model's tuple of [L, 1, H] or [L, H] arrays, get_state() returns
    copies of [L, 1, H]. `z` and `buf` hold all of it (save and restore them to rewind).
    """

    def __init__(self, model, inv_temperature: float = 1.0):
        p = {name: np.asarray(v, np.float64) for name, v in model.params.items()}
        self.cell = model.cell_module
        self.L, self.H = model.layers, model.hidden_size
        self.V, self.dtype = model.vocab_size, model.dtype
        self.nonlinearity = model.spec.nonlinearity
        L, H, dt = self.L, self.H, self.dtype
        self.residual, M = model.residual, model.spec.ffn_mult * H
        self.blocks = bool(self.residual or M)
        S = 2 if self.blocks else 1                     # slots a layer: h_k (and o_k)
        W = H + 1                                       # one slot of z: a vector then a constant 1
        self.z = np.zeros(S * L * W, dt)
        self.z[H::W] = 1.0
        self.h = [self.z[S * k * W:S * k * W + H] for k in range(L)]
        self.o = [self.z[(S * k + S - 1) * W:(S * k + S) * W] for k in range(L)]   # with its 1
        # a cell without weight_hh reads only its input [o_{k-1}, 1] (layer 0: nothing)
        self.recurrent = cells.has_recurrent_weights(self.cell)
        stop = 2 if self.recurrent else 1
        self.inputs = [self.z[0:W]] + [self.z[(S * k - 1) * W:(S * k - 1 + stop) * W]
                                       for k in range(1, L)]
        self.ffn = [self._ffn_weights(p, k, dt) for k in range(L)] if M else None
        self.u = np.zeros(M + 1, dt)                    # the feed-forward block's [relu(.), 1]
        self.u[M] = 1.0
        width, self.product_cols, self.table_cols, extra = self.cell.step_layout(H)
        self.buf = np.zeros((L, width), dt)             # per layer: gates, then extra state
        self.extra = [self.buf[:, cols] for cols in extra.values()]     # each [L, H]
        self.weights = [None if w is None else w.astype(dt)
                        for w in (self._stacked(p, k) for k in range(L))]
        self.table = self._layer0_table(p).astype(dt)
        dec = np.vstack([p["decoder.weight"].T, p["decoder.bias"][None]])
        with np.errstate(over="ignore", invalid="ignore"):
            self.dec = (dec * inv_temperature).astype(dt)
        self.dec_in = self.o[L - 1]
        self.logits = np.zeros(self.V, dt)
        self.tmp = np.zeros(2 * H, dt)
        self._layers = [self._layer(k) for k in range(L)]

    # -- weights ---------------------------------------------------------------------------------

    def _stacked(self, p, k: int) -> np.ndarray | None:
        """Layer k's matrix for its input slice of z: [W_hh^T; b_hh] (k = 0, whose input side is
        the table) or [W_ih^T; b_ih; W_hh^T; b_hh] (k >= 1), in the cell's step columns.
        Without weight_hh: None (k = 0) or [W_ih^T; b_ih]."""
        hh = None
        if self.recurrent:
            hh = np.vstack([p[f"rnn.weight_hh_l{k}"].T, p[f"rnn.bias_hh_l{k}"][None]])
            hh = self.cell.step_columns(hh, "h")
        if k == 0:
            return None if hh is None else np.ascontiguousarray(hh)
        ih = np.vstack([p[f"rnn.weight_ih_l{k}"].T, p[f"rnn.bias_ih_l{k}"][None]])
        ih = self.cell.step_columns(ih, "x")
        return np.ascontiguousarray(ih if hh is None else np.vstack([ih, hh]))

    @staticmethod
    def _ffn_weights(p, k: int, dt) -> tuple[np.ndarray, np.ndarray]:
        """Layer k's feed-forward block as two stacked matrices: [W1^T; b1], [W2^T; b2]."""
        return tuple(np.ascontiguousarray(np.vstack([p[f"ffn.{k}.{i}.weight"].T,
                                                     p[f"ffn.{k}.{i}.bias"][None]]).astype(dt))
                     for i in (0, 2))

    def _layer0_table(self, p) -> np.ndarray:
        """emb W_ih0^T + b_ih0 for every character, in the cell's table columns: [V, <= G*H]."""
        table = p["embedding.weight"] @ p["rnn.weight_ih_l0"].T + p["rnn.bias_ih_l0"]
        table = self.cell.step_columns(table, "x")
        return np.ascontiguousarray(table[:, self.table_cols])

    # -- the step: one closure per layer over preallocated buffers and pre-bound views ----------

    def _layer(self, k):
        """Layer k's step: the cell's (_cell_step), then the block's residual and feed-forward
        into o_k; a plain stack has no block (o_k is h_k)."""
        cell_step = self._cell_step(k)
        if not self.blocks:
            return cell_step
        block = self._block(k)
        if k == 0:
            def run0(token):
                cell_step(token)
                block()
            return run0

        def run():
            cell_step()
            block()
        return run

    def _block(self, k):
        """o_k = h_k (+ o_{k-1} when residual), then o_k += relu([o_k, 1] F1) [., 1] F2."""
        H, M = self.H, len(self.u) - 1
        h, o, o1, tmp = self.h[k], self.o[k][:H], self.o[k], self.tmp[:H]
        u, hidden = self.u, self.u[:M]
        prev = self.o[k - 1][:H] if self.residual and k >= 1 else None
        f1, f2 = self.ffn[k] if self.ffn else (None, None)
        copyto, add, dot, maximum = np.copyto, np.add, np.dot, np.maximum

        def block():
            if prev is None:
                copyto(o, h)
            else:
                add(h, prev, out=o)
            if f1 is not None:
                dot(o1, f1, out=hidden)
                maximum(hidden, 0, out=hidden)
                dot(u, f2, out=tmp)
                add(o, tmp, out=o)
        return block

    def _cell_step(self, k):
        """Layer k's cell: the product with z (plus the table row for k = 0), then the cell's
        body."""
        v, w, dot, add, table = self.inputs[k], self.weights[k], np.dot, np.add, self.table
        gates, row_target = self.buf[k][self.product_cols], self.buf[k][self.table_cols]
        body = self.cell.step_body(self.buf[k], self.h[k], self.tmp, self.nonlinearity)
        if k == 0 and w is None:               # no recurrent product: the row is the input side
            copyto = np.copyto

            def run0_input_only(token):
                copyto(row_target, table[token])
                body()
            return run0_input_only
        if k == 0:
            def run0(token):
                dot(v, w, out=gates)
                add(row_target, table[token], out=row_target)
                body()
            return run0

        def run():
            dot(v, w, out=gates)
            body()
        return run

    def advance(self, token: int) -> None:
        """Feed one character id: update the state of every layer."""
        self._layers[0](token)
        for run in self._layers[1:]:
            run()

    def step(self, token: int) -> np.ndarray:
        """Feed one character id; the logits (x inv_temperature) for the next one, [V]."""
        self.advance(token)
        np.dot(self.dec_in, self.dec, out=self.logits)
        return self.logits

    def make_step(self):
        """A closure equivalent to `step` with everything it needs bound: id -> logits."""
        dot, run0, upper = np.dot, self._layers[0], tuple(self._layers[1:])
        dec_in, dec, logits = self.dec_in, self.dec, self.logits
        if len(upper) == 1:
            (run1,) = upper

            def step2(token):
                run0(token)
                run1()
                dot(dec_in, dec, out=logits)
                return logits
            return step2

        def step(token):
            run0(token)
            for run in upper:
                run()
            dot(dec_in, dec, out=logits)
            return logits
        return step

    # -- state -----------------------------------------------------------------------------------

    def reset(self, state=None) -> None:
        """Zero state, or the given tuple (one per name in the cell's STATE) of [L, 1, H] or
        [L, H] arrays."""
        for k in range(self.L):
            self.h[k][...] = 0.0 if state is None else np.asarray(state[0]).reshape(self.L, -1)[k]
        self.buf[...] = 0.0
        for j, extra in enumerate(self.extra, start=1):
            extra[...] = 0.0 if state is None else np.asarray(state[j]).reshape(self.L, -1)
        self.logits[...] = 0.0

    def get_state(self) -> tuple[np.ndarray, ...]:
        """Copies of the state in the model's layout: one [L, 1, H] array per name in STATE."""
        h = np.stack(self.h)[:, None, :].copy()
        return (h,) + tuple(extra[:, None, :].copy() for extra in self.extra)
