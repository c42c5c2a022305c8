"""charrnn's model as torch.nn modules, for the torch engine (engines/torch_engine.py).

Shape key: T time, B batch, V vocabulary, E embedding, H hidden, L layers, G gates, M ffn width.

    x_0     = embedding(ids)                                 [T, B, E]   torch.nn.Embedding
    y_k     = dropout(cell_k(x_k, state_k))  (+ x_k)         [T, B, H]
    x_{k+1} = y_k  (+ ffn_k(y_k))                            [T, B, H]
    logits  = decoder(x_L)                                   [T, B, V]   torch.nn.Linear

the equations of charrnn/nn/model.py. Without the optional blocks (model.residual, ffn_mult) an
rnn / gru / lstm stack is one torch.nn.RNN / GRU / LSTM(num_layers=L, dropout=p) followed by
torch.nn.Dropout(p), so its state_dict names are the checkpoint's. With the blocks, or for
minGRU / minLSTM (no torch.nn module), each layer is its own module and `checkpoint_params`
maps `layers.{k}.weight_ih_l0` to the checkpoint's `rnn.weight_ih_l{k}`.

Sequences are time-major (batch_first=False), as charrnn's inside. The state is a tuple of
[L, B, H] tensors, one per name in the cell's STATE: (h,) or (h, c), as h_n / (h_n, c_n).

Imported only by the torch engine: nothing else in charrnn imports torch.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

STACKED = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}       # torch.nn's own modules


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t for t = 1..T, from h0 [B, H]; a, b [T, B, H] -> h [T, B, H].

    A Hillis-Steele scan: log2(T) rounds, each one element-wise pass over [T, B, H], so on a GPU
    the T steps do not run one after another. It composes the affine maps h -> a h + b, with
    products of the a's (in [0, 1] for these cells) and sums only: no division and no logs, so
    it is as stable as the sequential loop (charrnn/nn/cells/scan.py), up to rounding order.
    """
    b = torch.cat([(a[0] * h0 + b[0]).unsqueeze(0), b[1:]])
    shift, T = 1, a.shape[0]
    while shift < T:
        b = torch.cat([b[:shift], a[shift:] * b[:-shift] + b[shift:]])
        a = torch.cat([a[:shift], a[shift:] * a[:-shift]])
        shift *= 2
    return b


class MinCell(nn.Module):
    """One minGRU or minLSTM layer (charrnn/nn/cells/mingru.py, minlstm.py; Feng et al. 2024).

    weight_ih_l0 [G*H, D], bias_ih_l0 [G*H] (G = 2: z, n; G = 3: f, i, n), named as
    torch.nn.GRU's input side. forward(x [T, B, D], (h0 [1, B, H],)) -> (out [T, B, H], (h_T,)).
    """

    def __init__(self, cell: str, d_in: int, hidden: int):
        super().__init__()
        self.cell, gates = cell, {"mingru": 2, "minlstm": 3}[cell]
        self.weight_ih_l0 = nn.Parameter(torch.empty(gates * hidden, d_in))
        self.bias_ih_l0 = nn.Parameter(torch.empty(gates * hidden))

    def coefficients(self, gates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) of h' = a h + b from the input projection [T, B, G*H]."""
        if self.cell == "mingru":
            z, n = gates.chunk(2, dim=-1)
            a = torch.sigmoid(-z)                    # 1 - z
        else:   # f' = f / (f + i) = sigmoid(log f - log i), finite where f and i underflow
            f, i, n = gates.chunk(3, dim=-1)
            a = torch.sigmoid(F.softplus(-i) - F.softplus(-f))
        return a, (1 - a) * n

    def forward(self, x, state):
        a, b = self.coefficients(F.linear(x, self.weight_ih_l0, self.bias_ih_l0))
        out = linear_scan(a, b, state[0][0])
        return out, (out[-1:],)


class TorchCharRNN(nn.Module):
    """charrnn's CharRNN (charrnn/nn/model.py) in torch.nn: spec is a config.ModelConfig,
    vocab_size V. Weights are left as torch initialises them: the engine copies charrnn's in."""

    def __init__(self, vocab_size: int, spec):
        super().__init__()
        L, E, H, p = spec.layers, spec.embed_size, spec.hidden_size, float(spec.dropout)
        self.cell, self.residual, self.p = spec.cell, bool(spec.residual), p
        extra = {"nonlinearity": spec.nonlinearity} if spec.cell == "rnn" else {}
        self.embedding = nn.Embedding(vocab_size, E)
        self.stacked = spec.cell in STACKED and not spec.residual and not spec.ffn_mult
        if self.stacked:
            self.rnn = STACKED[spec.cell](E, H, L, dropout=p if L > 1 else 0.0, **extra)
        else:
            self.layers = nn.ModuleList(
                STACKED[spec.cell](E if k == 0 else H, H, 1, **extra) if spec.cell in STACKED
                else MinCell(spec.cell, E if k == 0 else H, H) for k in range(L))
        if spec.ffn_mult:                  # named ffn.{k}.0.weight, as the checkpoint's
            M = spec.ffn_mult * H
            self.ffn = nn.ModuleList(nn.Sequential(nn.Linear(H, M), nn.ReLU(), nn.Linear(M, H))
                                     for _ in range(L))
        self.drop = nn.Dropout(p)
        self.decoder = nn.Linear(H, vocab_size)

    def forward(self, ids: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        """ids [T, B], state: one [L, B, H] tensor per state name -> (logits [T, B, V], state)."""
        x = self.embedding(ids)
        if self.stacked:
            out, final = self.rnn(x, state if self.cell == "lstm" else state[0])
            final = final if self.cell == "lstm" else (final,)
            return self.decoder(self.drop(out)), tuple(final)
        finals = []
        for k, layer in enumerate(self.layers):
            part = tuple(s[k:k + 1] for s in state)
            out, final = layer(x, part if self.cell in ("lstm", "mingru", "minlstm") else part[0])
            finals.append(final if isinstance(final, tuple) else (final,))
            y = self.drop(out)
            if self.residual and k >= 1:
                y = y + x
            x = y + self.ffn[k](y) if hasattr(self, "ffn") else y
        return self.decoder(x), tuple(torch.cat(parts) for parts in zip(*finals))

    def checkpoint_params(self) -> dict[str, nn.Parameter]:
        """{checkpoint name: parameter}: state_dict names, with a per-layer module's
        layers.{k}.X_l0 as rnn.X_l{k}."""
        out = {}
        for name, param in self.named_parameters():
            m = re.fullmatch(r"layers\.(\d+)\.(\w+)_l0", name)
            out[f"rnn.{m[2]}_l{m[1]}" if m else name] = param
        return out
