"""The linear recurrence of minGRU and minLSTM, forward and backward, without a matrix product.

    h_t = a_t * h_{t-1} + b_t          (element-wise; t = 0 .. T-1, h_{-1} = h0)

Shape key: T time steps, then any shape S of one step ([B, H] in the cells). a_t is a gate
in [0, 1], so every form here only ever multiplies by such gates and adds: no division, no
logarithm, nothing that overflows or underflows in a way the plain loop does not (the paper's
log-space form, Feng et al. 2024, App. B, needs a positive h~; this one does not).

Two forms, with the same result up to rounding (tests/test_min_cells.py checks both against a
float64 loop at T = 10,000):

- `loop`: two NumPy calls per step. Best when a step holds many elements (training batches),
  where each call's fixed cost is small beside its work.
- `blocked`: the T steps cut into blocks of C; the loop runs over the position j inside a block
  for all blocks at once (a[j::C], local states starting from 0, and the running product
  P = a_{start} ... a_t), then one pass per block adds P * (the state entering the block).
  3C + 2T/C calls instead of 2T, for about 2.5x the element work: best when a step is small
  (batch-1 evaluation, where each call's fixed cost dominates).
"""

from __future__ import annotations

import math

import numpy as np

# below this many elements per step the blocked form is faster (docs/min-cells.md)
BLOCKED_BELOW = 1024


def linear_scan(a, b, h0, out=None, form=None):
    """h_t = a_t * h_{t-1} + b_t for t = 0 .. T-1, h_{-1} = h0.

    a, b [T, *S] (any strides); h0 [*S]; out [T, *S] receives h (it may be b itself; a new
    array when None). form: "loop", "blocked", or None to choose by the size of a step.
    Returns out.
    """
    if out is None:
        out = np.empty(b.shape, b.dtype)
    T = b.shape[0]
    if T == 0:
        return out
    if form is None:
        form = "blocked" if b[0].size < BLOCKED_BELOW and T > 16 else "loop"
    if form == "loop":
        _loop(a, b, h0, out)
    else:
        _blocked(a, b, h0, out)
    return out


def linear_scan_reverse(a, g, dh_last, out=None, form=None):
    """The backward of linear_scan: the gradient reaching each h_t.

        G_{T-1} = g_{T-1} + dh_last,      G_t = g_t + a_{t+1} * G_{t+1}

    a [T, *S] the forward's gates, g [T, *S] the gradient arriving at each h_t from outside
    the recurrence, dh_last [*S] the gradient of the final state. Returns G [T, *S] (in out,
    which may be g itself). The gradient of h0 is then a_0 * G_0.
    """
    if out is None:
        out = np.empty(g.shape, g.dtype)
    T = g.shape[0]
    if T == 0:
        return out
    np.add(g[T - 1], dh_last, out=out[T - 1])
    # the same recurrence run backwards in time: reversed views, no copies
    linear_scan(a[:0:-1], g[-2::-1], out[T - 1], out=out[-2::-1], form=form)
    return out


def _loop(a, b, h0, out):
    """Two calls per step: out_t = b_t + a_t * out_{t-1}."""
    tmp = np.empty(b.shape[1:], b.dtype)
    prev = h0
    for t in range(b.shape[0]):
        np.multiply(a[t], prev, out=tmp)
        np.add(b[t], tmp, out=out[t])
        prev = out[t]


def _blocked(a, b, h0, out):
    """Blocks of C ~ sqrt(2T/3) steps: all blocks advance together, then each block adds the
    state that enters it times its running product of gates."""
    T = b.shape[0]
    C = max(1, int(math.sqrt(2 * T / 3)))
    nb = -(-T // C)
    P = np.empty(b.shape, np.result_type(a, b))
    tmp = np.empty((nb,) + b.shape[1:], b.dtype)
    np.copyto(P[0::C], a[0::C])
    if out is not b:
        np.copyto(out[0::C], b[0::C])
    for j in range(1, min(C, T)):
        n = len(range(j, T, C))
        aj, prev, t = a[j::C], out[j - 1::C][:n], tmp[:n]
        np.multiply(aj, prev, out=t)
        np.add(b[j::C], t, out=out[j::C])
        np.multiply(P[j - 1::C][:n], aj, out=P[j::C])
    carry = h0
    for m in range(nb):
        block = slice(m * C, min((m + 1) * C, T))
        p = P[block]
        np.multiply(p, carry, out=p)
        out[block] += p
        carry = out[block.stop - 1]
