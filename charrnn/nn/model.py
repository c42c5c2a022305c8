"""CharRNN: embedding -> L stacked recurrent layers -> linear decoder, forward and backward.

Shape key: B batch, T time, V vocabulary, E embedding, H hidden, L layers, G gates.

    x_0      = embedding.weight[ids]                         [T, B, E]
    y_k      = dropout(cell_k(x_k, state_k))  (+ x_k)        [T, B, H]   k = 0 .. L-1
    x_{k+1}  = y_k  (+ ffn_k(y_k))                           [T, B, H]
    logits   = x_L decoder.weight^T + decoder.bias           [T, B, V]

The bracketed terms are optional blocks, off by default: `+ x_k` with model.residual (layers
k >= 1, whose input is H wide), `+ ffn_k(y_k) = relu(y_k W1^T + b1) W2^T + b2` with
model.ffn_mult > 0 (W1 [ffn_mult*H, H], named ffn.{k}.0.weight as in torch.nn.Sequential(Linear,
ReLU, Linear); docs/min-cells.md). With either, the stack is no longer torch.nn.LSTM's.

Dropout (inverted, training only) sits between layers and before the decoder, as
torch.nn.LSTM(dropout=p) followed by torch.nn.Dropout(p). Parameter names and shapes are
PyTorch's (docs/design.md), so `torch.nn.Module.load_state_dict` accepts them unchanged.

The state is a tuple of [L, B, H] arrays, one per name in the cell's STATE: (h,) for rnn and
gru, (h, c) for lstm, as PyTorch's h_n / (h_n, c_n). The architecture comes from a
config.ModelConfig (`spec`); the cell's math from the registry in charrnn/nn/cells.
Public arrays are batch-major ([B, T] ids, [B, T, V] logits); inside, everything is time-major
so each time step is one contiguous block.
"""

from __future__ import annotations

import math

import numpy as np

from charrnn.nn import cells, ops
from charrnn.nn.params import FlatParams


def parameter_shapes(vocab_size: int, spec) -> dict[str, tuple[int, ...]]:
    """PyTorch's names and shapes, in the order the flat buffer stores them.

    spec: a config.ModelConfig (cell, layers, hidden_size, embed_size). ValueError for an
    unknown cell.
    """
    cell = cells.get(spec.cell)
    G, H, weights = len(cell.GATES), spec.hidden_size, cells.weights_of(cell)
    shapes = {"embedding.weight": (vocab_size, spec.embed_size)}
    for k in range(spec.layers):
        d_in = spec.embed_size if k == 0 else H
        layer = {"weight_ih": (G * H, d_in), "weight_hh": (G * H, H),
                 "bias_ih": (G * H,), "bias_hh": (G * H,)}
        shapes.update({f"rnn.{name}_l{k}": shape for name, shape in layer.items()
                       if name in weights})
    shapes["decoder.weight"] = (vocab_size, H)
    shapes["decoder.bias"] = (vocab_size,)
    M = spec.ffn_mult * H                         # last: the other weights draw as without them
    for k in range(spec.layers if M else 0):      # torch.nn.Sequential(Linear, ReLU, Linear)
        shapes.update({f"ffn.{k}.0.weight": (M, H), f"ffn.{k}.0.bias": (M,),
                       f"ffn.{k}.2.weight": (H, M), f"ffn.{k}.2.bias": (H,)})
    return shapes


class CharRNN:
    """A character-level recurrent language model with a hand-written backward pass.

    `params` and `grads` are FlatParams (named views into one flat buffer each); `backward`
    writes into `grads`, so copy it if you need it to survive the next backward.
    """

    def __init__(self, vocab_size: int, spec, dtype=np.float32, seed: int = 0):
        self.cell_module = cells.get(spec.cell)
        self.vocab_size = int(vocab_size)
        self.spec = spec
        self.cell = spec.cell
        self.layers = spec.layers
        self.hidden_size = spec.hidden_size
        self.dropout = float(spec.dropout)
        self.residual = bool(spec.residual)
        self.ffn = spec.ffn_mult > 0
        self.dtype = np.dtype(dtype)
        self.params = FlatParams(parameter_shapes(vocab_size, spec), self.dtype)
        self.grads = self.params.zeros_like()
        self.init_weights(np.random.default_rng(seed))

    # -- initialisation ---------------------------------------------------------------------

    def init_weights(self, rng: np.random.Generator) -> None:
        """PyTorch's defaults, then the recurrent-weight and forget-bias options of the spec.

        embedding ~ N(0, 1); rnn weights and biases and decoder ~ U(-1/sqrt(H), 1/sqrt(H)).
        init=orthogonal: each H x H gate block of weight_hh orthogonal (QR of a Gaussian).
        init=identity: each gate block of weight_hh = identity_scale * I and all rnn biases 0
        (the IRNN of Le, Jaitly & Hinton, 2015, when used with a relu RNN).
        A cell with a forget gate ("f" in its GATES, the LSTM): forget_bias is added to bias_ih's
        forget block, so the cell starts remembering (Gers et al., 2000).
        """
        p, H, spec = self.params, self.hidden_size, self.spec
        for name, view in p.items():
            if name == "embedding.weight":
                view[...] = rng.standard_normal(view.shape)
            else:                               # fan-in: H, or M for the ffn's second linear
                fan_in = p[name.replace("bias", "weight")].shape[1] if ".2." in name else H
                bound = 1.0 / math.sqrt(fan_in)
                view[...] = rng.uniform(-bound, bound, view.shape)
        gates = self.cell_module.GATES
        G = len(gates)
        recurrent = cells.has_recurrent_weights(self.cell_module)
        for k in range(self.layers):
            for gate in range(G if recurrent else 0):
                w_hh = p[f"rnn.weight_hh_l{k}"]
                block = w_hh[gate * H:(gate + 1) * H]
                if spec.init == "orthogonal":
                    q, r = np.linalg.qr(rng.standard_normal((H, H)))
                    block[...] = q * np.sign(np.diag(r))   # sign fix: uniform over O(H)
                elif spec.init == "identity":
                    block[...] = spec.identity_scale * np.eye(H)
            if spec.init == "identity":
                p[f"rnn.bias_ih_l{k}"][...] = 0
                if recurrent:
                    p[f"rnn.bias_hh_l{k}"][...] = 0
            if "f" in gates:
                f = gates.index("f")
                p[f"rnn.bias_ih_l{k}"][f * H:(f + 1) * H] += spec.forget_bias

    # -- state --------------------------------------------------------------------------------

    def initial_state(self, batch_size: int) -> tuple[np.ndarray, ...]:
        """Zeros: one [L, B, H] array per name in the cell's STATE."""
        return tuple(np.zeros((self.layers, batch_size, self.hidden_size), self.dtype)
                     for _ in self.cell_module.STATE)

    # -- forward / backward -------------------------------------------------------------------

    def forward(self, ids, state=None, train=False, rng=None):
        """ids [B, T] -> (logits [B, T, V], final state, cache).

        `train` turns dropout on (then `rng`, a numpy Generator, draws the masks).
        """
        logits, new_state, cache = self._forward_tm(np.asarray(ids).T, state, train, rng)
        T, B = cache["ids"].shape
        return logits.reshape(T, B, -1).transpose(1, 0, 2), new_state, cache

    def backward(self, dlogits, cache, dstate=None, dh_traces=None):
        """dlogits [B, T, V] (and optionally d final state) -> (grads, d initial state).

        Consumes the cache: its buffers are reused and freed, so run one backward per forward.

        dh_traces: optional list of L arrays [T, B, H] that receive dL/dh_t of each layer.
        """
        dl = np.ascontiguousarray(np.asarray(dlogits, self.dtype).transpose(1, 0, 2))
        return self._backward_tm(dl.reshape(-1, self.vocab_size), cache, dstate, dh_traces)

    def loss(self, ids, targets, state=None, train=False, rng=None):
        """Mean cross-entropy (nats/char) of predicting targets [B, T] -> (loss, state, cache)."""
        logits, new_state, cache = self._forward_tm(np.asarray(ids).T, state, train, rng)
        cache["targets"] = np.asarray(targets).T.reshape(-1)
        loss, cache["probs"] = ops.softmax_cross_entropy_forward(logits, cache["targets"])
        return loss, new_state, cache

    def loss_backward(self, cache, dstate=None, scale=1.0):
        """The backward of `loss`: gradients of scale x the loss (plus <dstate, final state>)
        land in self.grads; returns the gradient of the initial state. Consumes the cache."""
        dlogits = ops.softmax_cross_entropy_backward(cache.pop("probs"), cache["targets"], scale)
        return self._backward_tm(dlogits, cache, dstate)[1]

    def loss_and_grad(self, ids, targets, state=None, train=True, rng=None, dstate=None):
        """Loss, gradients and carried state of one training step.

        Returns (loss, final state, d initial state); parameter gradients land in self.grads.
        `dstate` is the gradient arriving at the final state (None: the loss is all there is).
        """
        loss, new_state, cache = self.loss(ids, targets, state, train, rng)
        return loss, new_state, self.loss_backward(cache, dstate)

    def embed(self, ids_tm):
        """Layer 0's input for ids_tm [T, B]: the embedded rows [T, B, E], or, when V < T*B, a
        cells.TokenInput (layer 0's products then run over the V table rows)."""
        T, B = ids_tm.shape
        if self.vocab_size < T * B:
            return cells.TokenInput(self.params["embedding.weight"], ids_tm)
        return ops.embedding_forward(self.params["embedding.weight"], ids_tm)

    def layer_forward(self, k, x, state0):
        """Layer k alone (no dropout): x [T, B, D], state0 (h,) or (h, c) of [B, H]
        -> (out [T, B, H], final state, cache)."""
        p = self.params
        w = [p[f"rnn.{name}_l{k}"] if f"rnn.{name}_l{k}" in p else None    # None: not the cell's
             for name in cells.LAYER_WEIGHTS]
        return self.cell_module.forward(x, state0, *w, nonlinearity=self.spec.nonlinearity)

    def ffn_weights(self, k):
        """(w1 [M, H], b1 [M], w2 [H, M], b2 [H]) of layer k's feed-forward block."""
        return tuple(self.params[f"ffn.{k}.{i}.{n}"] for i in (0, 2) for n in ("weight", "bias"))

    def block_forward(self, k, x, state0, p_drop=0.0, rng=None):
        """Layer k with what follows it: x [T, B, D] -> (x' [T, B, H], final state, cache).

            y  = dropout(cell_k(x)),   plus x when residual and k >= 1
            x' = y + ffn_k(y)          when ffn_mult > 0, else y
        """
        out, final, layer_cache = self.layer_forward(k, x, state0)
        y, mask = ops.dropout_forward(out, p_drop, rng)
        if self.residual and k >= 1:
            y = y + x                          # a new array: out is the cell's cached state
        ffn_cache = None
        if self.ffn:
            T, B, H = y.shape
            f, ffn_cache = ops.feedforward_forward(y.reshape(T * B, H), *self.ffn_weights(k))
            y = (f + y.reshape(T * B, H)).reshape(T, B, H)
        return y, final, (layer_cache, mask, ffn_cache)

    def decode(self, top):
        """Logits [N, V] of the top layer's outputs top [N, H]."""
        return ops.linear_forward(top, self.params["decoder.weight"], self.params["decoder.bias"])

    def _forward_tm(self, ids_tm, state, train, rng):
        """Time-major forward.  ids_tm [T, B] -> (logits [T*B, V], state, cache)."""
        T, B = ids_tm.shape
        if state is None:
            state = self.initial_state(B)
        x = self.embed(ids_tm)
        p_drop = self.dropout if train else 0.0
        if p_drop > 0 and rng is None:
            raise ValueError("dropout in training needs an rng")
        layer_caches, masks, ffn_caches, finals = [], [], [], []
        for k in range(self.layers):
            x, final, (layer_cache, mask, ffn_cache) = self.block_forward(
                k, x, tuple(s[k] for s in state), p_drop, rng)
            layer_caches.append(layer_cache)
            masks.append(mask)
            ffn_caches.append(ffn_cache)
            finals.append(final)
        top = x.reshape(T * B, self.hidden_size)
        logits = self.decode(top)
        new_state = tuple(np.stack([f[j] for f in finals]) for j in range(len(state)))
        cache = {"ids": ids_tm, "top": top, "layers": layer_caches, "masks": masks,
                 "ffn": ffn_caches,
                 "token_input": self.vocab_size < T * B}
        return logits, new_state, cache

    def _backward_tm(self, dlogits, cache, dstate=None, dh_traces=None):
        """Time-major backward.  dlogits [T*B, V] -> (self.grads, d initial state [L, B, H] each)."""
        p, g = self.params, self.grads
        T, B = cache["ids"].shape
        dtop, _, _ = ops.linear_backward(dlogits, cache["top"], p["decoder.weight"],
                                         g["decoder.weight"], g["decoder.bias"])
        dx = dtop.reshape(T, B, self.hidden_size)
        n_state = len(self.cell_module.STATE)
        dstate0 = [np.zeros((self.layers, B, self.hidden_size), self.dtype) for _ in range(n_state)]
        for k in range(self.layers - 1, -1, -1):
            if self.ffn:
                w1, _, w2, _ = self.ffn_weights(k)
                grads = tuple(g[f"ffn.{k}.{i}.{n}"] for i in (0, 2) for n in ("weight", "bias"))
                dy = dx.reshape(T * B, self.hidden_size)
                dx = (dy + ops.feedforward_backward(dy, cache["ffn"][k], w1, w2, grads)
                      ).reshape(T, B, self.hidden_size)
            skip = dx if self.residual and k >= 1 else None
            dx = ops.dropout_backward(dx, cache["masks"][k])
            dfinal = tuple(np.zeros((B, self.hidden_size), self.dtype) if dstate is None
                           else np.asarray(d[k], self.dtype) for d in (dstate or [None] * n_state))
            layer_grads = {name: g[f"rnn.{name}_l{k}"]
                           for name in cells.weights_of(self.cell_module)}
            trace = None if dh_traces is None else dh_traces[k]
            dx, d0, _ = self.cell_module.backward(dx, dfinal, cache["layers"][k], layer_grads, trace)
            cache["layers"][k] = None          # spent (the lstm backward reuses it): free it now
            if skip is not None:
                dx = dx + skip
            for j in range(n_state):
                dstate0[j][k] = d0[j]
        if cache["token_input"]:
            g["embedding.weight"][...] = dx     # layer 0 read a TokenInput: dx is d embedding
        else:
            ops.embedding_backward(dx, cache["ids"], g["embedding.weight"])
        return g, tuple(dstate0)
