"""Sampling text from a CharRNN: one character at a time, batch 1, as fast as NumPy allows.

Shape key: V vocabulary, E embedding, H hidden, L layers, G gates (1 rnn, 3 gru, 4 lstm).

Generation cannot use the model's sequence forward (every input is the previous output), so
`Stepper` is a dedicated single-step inference path that gives the same logits as
`CharRNN.forward` (tested to 1e-10 in float64) with as few NumPy calls per character as it can:

- the hidden states live in one preallocated vector  z = [h_0, 1, h_1, 1, ..., h_{L-1}, 1]; layer
  k >= 1 reads the contiguous slice [h_{k-1}, 1, h_k, 1] and multiplies it by one stacked matrix
  [W_ih^T; b_ih; W_hh^T; b_hh], so its input product, recurrent product and both biases are a
  single np.dot(..., out=); the decoder reads [h_{L-1}, 1] against [W_dec^T; b_dec] / temperature;
- layer 0's input product is a row lookup in a precomputed table  emb W_ih0^T + b_ih0  [V, G*H];
- sigmoid(a) = 0.5 tanh(a / 2) + 0.5 with the sigmoid gates' columns pre-scaled by 1/2, so one
  tanh covers all LSTM gates; their columns are reordered to o, i, f, g and the cell state c is
  kept right after them, so the sigmoid gates are one slice and [i * g, f * c] is one multiply
  of the slice [i, f] by the slice [g, c];
- every intermediate is written into a buffer allocated once, through views bound once;
- sampling is the Gumbel-max trick, argmax(logits / T + g) with g = -log(-log(u)), which draws
  exactly from softmax(logits / T); the noise is drawn in blocks of NOISE_BLOCK steps, so a step
  costs one add and one argmax, needs no exp, no normalisation and cannot overflow.

Public API:
  generate(model, vocab, length=500, *, prime="", temperature=1.0, greedy=False, top_k=None,
           top_p=None, seed=None, rng=None, stop=None) -> Iterator[str]
  Sampler(model, vocab, *, temperature=1.0, greedy=False, top_k=None, top_p=None)
      .prime(text)                       feed a prime (or the default start character)
      .sample(length, rng, stop=None)    one sample from the primed state, as an iterator of chars
  Stepper(model, inv_temperature=1.0)    the single-step path: .step(id) -> logits, .advance(id),
                                         .reset(state=None), .get_state()
  write_samples(model, vocab, out, *, prime, unknown, num_samples, separator, echo, as_json,
                warn, ...)                 what `charrnn sample` does: stream samples to `out`
  unescape(text)                         \\n, \\t, \\r and \\\\ in --stop / --separator values
  SampleError                            a bad sampling setting (the CLI exits with status 2)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator

import numpy as np

from charrnn.infer.evaluate import encode_text
from charrnn.vocab import Vocab

NOISE_BLOCK = 1024  # sampling steps per block of Gumbel noise


class SampleError(ValueError):
    """A sampling setting that cannot be used; one sentence naming the option and the fix."""


def check_settings(length: int = 0, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None) -> None:
    """SampleError unless the settings are usable (length >= 0, 0 < T < inf, k >= 1, 0 < p <= 1)."""
    if length < 0:
        raise SampleError(f"--length must be >= 0; got {length}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise SampleError(f"--temperature must be a number > 0; got {temperature} "
                          f"(use --greedy for always the most likely character)")
    if top_k is not None and top_k < 1:
        raise SampleError(f"--top-k must be >= 1; got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise SampleError(f"--top-p must be in (0, 1]; got {top_p}")


# ---------------------------------------------------------------------------------------------
# The single-step inference path
# ---------------------------------------------------------------------------------------------

def _lstm_order(H: int) -> np.ndarray:
    """Row order o, i, f, g (from PyTorch's i, f, g, o): the sigmoid gates become [:3H] and
    [i, f] lines up with [g, c] when c is kept right after the gates (see _lstm_layer)."""
    return np.r_[3 * H:4 * H, 0:2 * H, 2 * H:3 * H]


class Stepper:
    """One time step of a CharRNN for one sequence, with the same logits as CharRNN.forward.

    step(id) advances the state by one input character and returns the logits for the next one
    (a [V] buffer overwritten by the next call; multiplied by `inv_temperature`). advance(id) does
    the same without the decoder. The state is h (and c for the LSTM); reset(state) takes the
    model's (h,) or (h, c) tuple of [L, 1, H] or [L, H] arrays, get_state() returns copies of
    [L, 1, H].
    """

    def __init__(self, model, inv_temperature: float = 1.0):
        p = {name: np.asarray(v, np.float64) for name, v in model.params.items()}
        self.cell, self.L, self.H = model.cell, model.layers, model.hidden_size
        self.V, self.dtype = model.vocab_size, model.dtype
        self.nonlinearity = model.spec.nonlinearity
        L, H, dt = self.L, self.H, self.dtype
        W = H + 1                                       # one slot of z: h_k then a constant 1
        self.z = np.zeros(L * W, dt)
        self.z[H::W] = 1.0
        self.h = [self.z[k * W:k * W + H] for k in range(L)]
        self.inputs = [self.z[0:W]] + [self.z[(k - 1) * W:(k + 1) * W] for k in range(1, L)]
        # per layer: the gate pre-activations (rnn: H; gru: 4H as n_x, r, z, n_h; lstm: 4H as
        # o, i, f, g, followed by the layer's cell state c, so buffer [L, 5H])
        GH = {"rnn": H, "gru": 4 * H, "lstm": 5 * H}[self.cell]
        self.buf = np.zeros((L, GH), dt)
        self.c = self.buf[:, 4 * H:] if self.cell == "lstm" else None
        self.weights = [self._stacked(p, k).astype(dt) for k in range(L)]
        self.table = self._layer0_table(p).astype(dt)
        dec = np.vstack([p["decoder.weight"].T, p["decoder.bias"][None]])
        with np.errstate(over="ignore", invalid="ignore"):
            self.dec = (dec * inv_temperature).astype(dt)
        self.dec_in = self.z[(L - 1) * W:L * W]
        self.logits = np.zeros(self.V, dt)
        self.tmp = np.zeros(2 * H, dt)
        make = {"rnn": self._rnn_layer, "gru": self._gru_layer, "lstm": self._lstm_layer}[self.cell]
        self._layers = [make(k) for k in range(L)]

    # -- weights ---------------------------------------------------------------------------------

    def _columns(self, w_t: np.ndarray, part: str) -> np.ndarray:
        """Reorder / select / pre-scale the G*H columns of a transposed weight or bias.

        part 'x' (input side) or 'h' (hidden side). rnn: as is. lstm: o, i, f, g with the first
        3H halved. gru, whose n gate keeps its input and hidden products apart:
        x side -> [n_x, r, z, 0], h side -> [0, r, z, n_h] (r, z halved); so the sum of both
        sides is the 4H row [n_x, r, z, n_h].
        """
        H = self.H
        if self.cell == "rnn":
            return w_t
        if self.cell == "lstm":
            out = w_t[..., _lstm_order(H)].copy()
            out[..., :3 * H] *= 0.5
            return out
        r, z, n = w_t[..., :H] * 0.5, w_t[..., H:2 * H] * 0.5, w_t[..., 2 * H:]
        zero = np.zeros_like(n)
        return np.concatenate([n, r, z, zero] if part == "x" else [zero, r, z, n], axis=-1)

    def _stacked(self, p, k: int) -> np.ndarray:
        """Layer k's matrix for its input slice of z: [W_hh^T; b_hh] (k = 0, whose input side is
        the table; for the gru its n_x columns are 0) or [W_ih^T; b_ih; W_hh^T; b_hh] (k >= 1)."""
        hh = np.vstack([p[f"rnn.weight_hh_l{k}"].T, p[f"rnn.bias_hh_l{k}"][None]])
        hh = self._columns(hh, "h")
        if k == 0:
            return np.ascontiguousarray(hh)
        ih = np.vstack([p[f"rnn.weight_ih_l{k}"].T, p[f"rnn.bias_ih_l{k}"][None]])
        return np.ascontiguousarray(np.vstack([self._columns(ih, "x"), hh]))

    def _layer0_table(self, p) -> np.ndarray:
        """emb W_ih0^T + b_ih0 for every character: [V, G*H] (gru: [V, 3H] as n_x, r, z)."""
        table = p["embedding.weight"] @ p["rnn.weight_ih_l0"].T + p["rnn.bias_ih_l0"]
        table = self._columns(table, "x")
        return np.ascontiguousarray(table[:, :3 * self.H] if self.cell == "gru" else table)

    # -- the step: one closure per layer over preallocated buffers and pre-bound views ----------

    def _input(self, k):
        """(dot target, table target) of layer k: its product with z, and for layer 0 the
        columns its table row is added to (gru: n_x, r, z)."""
        H, g = self.H, self.buf[k]
        gates = g[:4 * H] if self.cell == "lstm" else g
        return gates, (g[:3 * H] if self.cell == "gru" else gates)

    def _wrap(self, k, body):
        """Layer k's step: the product with z (plus the table row for k = 0), then `body`."""
        v, w, dot, add, table = self.inputs[k], self.weights[k], np.dot, np.add, self.table
        gates, row_target = self._input(k)
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

    def _rnn_layer(self, k):
        g, h = self.buf[k], self.h[k]
        relu = self.nonlinearity == "relu"
        tanh, maximum = np.tanh, np.maximum

        def body():
            if relu:
                maximum(g, 0.0, out=h)
            else:
                tanh(g, out=h)
        return self._wrap(k, body)

    def _lstm_layer(self, k):
        H, b, h, tmp = self.H, self.buf[k], self.h[k], self.tmp
        gates, sig, o = b[:4 * H], b[:3 * H], b[:H]
        i_f, g_c, c = b[H:3 * H], b[3 * H:], b[4 * H:]        # [i, f] lines up with [g, c]
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
        return self._wrap(k, body)

    def _gru_layer(self, k):
        H, g, h, tmp = self.H, self.buf[k], self.h[k], self.tmp[:self.H]
        n, rz, r, zg, hn = g[:H], g[H:3 * H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
        tanh, mul, add, sub = np.tanh, np.multiply, np.add, np.subtract

        def body():
            tanh(rz, out=rz)
            mul(rz, 0.5, out=rz)
            add(rz, 0.5, out=rz)
            mul(r, hn, out=tmp)
            add(n, tmp, out=n)              # n = tanh(n_x + r * n_h)
            tanh(n, out=n)
            sub(h, n, out=tmp)              # h' = n + z * (h - n)
            mul(tmp, zg, out=tmp)
            add(n, tmp, out=h)
        return self._wrap(k, body)

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
        """Zero state, or the given (h,) / (h, c) tuple of [L, 1, H] or [L, H] arrays."""
        for k in range(self.L):
            self.h[k][...] = 0.0 if state is None else np.asarray(state[0]).reshape(self.L, -1)[k]
        self.buf[...] = 0.0
        if self.c is not None:
            self.c[...] = 0.0 if state is None else np.asarray(state[1]).reshape(self.L, -1)
        self.logits[...] = 0.0

    def get_state(self) -> tuple[np.ndarray, ...]:
        """Copies of the state in the model's layout: (h,) or (h, c), each [L, 1, H]."""
        h = np.stack(self.h)[:, None, :].copy()
        return (h,) if self.c is None else (h, self.c[:, None, :].copy())


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

def _gumbel_fill(rng: np.random.Generator, u: np.ndarray, out: np.ndarray) -> None:
    """out = -log(-log(u)), u ~ U[0, 1): Gumbel(0, 1) noise, in place, no allocation."""
    rng.random(out=u)
    with np.errstate(divide="ignore"):
        np.log(u, out=u)
        np.negative(u, out=u)
        np.log(u, out=u)
    np.negative(u, out=out)


def _filtered_choice(logits: np.ndarray, noise: np.ndarray, top_k: int | None,
                     top_p: float | None) -> int:
    """A Gumbel-max draw restricted to the top-k and then the top-p (nucleus) candidates.

    top-k keeps exactly the k largest logits (ties broken by argpartition); top-p keeps the
    smallest set of most likely candidates whose probability (softmax of the tempered logits)
    reaches p. The arrays allocated here have at most V entries.
    """
    V = logits.shape[0]
    if top_k is not None and top_k < V:
        cand = np.argpartition(logits, V - top_k)[V - top_k:]
    else:
        cand = np.arange(V)
    vals = logits[cand]
    if top_p is not None and top_p < 1:
        order = np.argsort(-vals, kind="stable")
        cand, vals = cand[order], vals[order]
        prob = np.exp(vals.astype(np.float64) - float(vals[0]))
        cum = np.cumsum(prob / prob.sum())
        n = min(int(np.searchsorted(cum, top_p, side="left")) + 1, len(cand))
        cand, vals = cand[:n], vals[:n]
    return int(cand[np.argmax(vals + noise[:len(vals)])])


def _encode_prime(vocab: Vocab, prime) -> list[int]:
    if isinstance(prime, str):
        return [int(i) for i in encode_text(vocab, prime, "error", "the prime")[0]]
    return [int(i) for i in prime]


class Sampler:
    """Samples from one model with fixed settings; prime once, then draw any number of samples.

    temperature divides the logits (folded into the decoder weights); greedy takes the argmax;
    top_k / top_p restrict the candidates before the draw (top-k first, as Hugging Face does).
    """

    def __init__(self, model, vocab: Vocab, *, temperature: float = 1.0, greedy: bool = False,
                 top_k: int | None = None, top_p: float | None = None):
        check_settings(0, temperature, top_k, top_p)
        if len(vocab) != model.vocab_size:
            raise SampleError(f"the vocabulary has {len(vocab)} symbols but the model "
                              f"{model.vocab_size}")
        self.vocab, self.symbols = vocab, list(vocab.symbols)
        # |logit_v| <= sum_i |W_dec[v, i]| + |b_dec[v]| while |h| <= 1 (tanh, gru, lstm): a
        # temperature so small that logits / T could overflow is sampled as its limit, greedy
        w, b = (np.asarray(model.params[n], np.float64) for n in ("decoder.weight", "decoder.bias"))
        bound = float((np.abs(w).sum(axis=1) + np.abs(b)).max())
        self.greedy = greedy or bound / temperature > float(np.finfo(model.dtype).max) / 16
        self.stepper = Stepper(model, 1.0 if self.greedy else 1.0 / temperature)
        self.top_k = top_k if top_k is not None and top_k < len(vocab) else None
        self.top_p = top_p if top_p is not None and top_p < 1 else None
        self._step = self.stepper.make_step()
        self._primed = None

    def prime(self, prime="", rng: np.random.Generator | None = None) -> None:
        """Feed the prime (text or ids) from a zero state; keep the state and the next logits.

        No prime: start from the newline character when the vocabulary has it, else from a
        character drawn by `rng` (which therefore must be given).
        """
        ids = _encode_prime(self.vocab, prime)
        if not ids:
            if "\n" in self.vocab:
                ids = [self.vocab.index("\n")]
            else:
                ids = [int((rng or np.random.default_rng()).integers(len(self.vocab)))]
        st = self.stepper
        st.reset()
        for t in ids[:-1]:
            st.advance(t)
        self._step(ids[-1])
        self._primed = (st.z.copy(), None if st.c is None else st.c.copy(), st.logits.copy())

    def _restore(self) -> None:
        if self._primed is None:
            raise RuntimeError("call prime() before sample()")
        st = self.stepper
        z, c, logits = self._primed
        st.z[...] = z
        if c is not None:
            st.c[...] = c
        st.logits[...] = logits

    def sample(self, length: int, rng: np.random.Generator, stop: str | None = None) -> Iterator[str]:
        """Up to `length` characters after the prime, one at a time.

        With `stop`, the sample ends right after the first occurrence of that string in the
        generated text (the stop string is the last thing yielded).
        """
        check_settings(length)
        self._restore()
        logits, step, symbols, V = self.stepper.logits, self._step, self.symbols, len(self.symbols)
        filtered = self.top_k is not None or self.top_p is not None
        block = min(NOISE_BLOCK, max(length, 1))
        u = np.empty((block, V), np.float64)
        noise = u if logits.dtype == np.float64 else np.empty((block, V), logits.dtype)
        scratch = np.empty(V, logits.dtype)
        add, greedy, top_k, top_p = np.add, self.greedy, self.top_k, self.top_p
        stop = stop or None
        tail, keep = "", len(stop) if stop else 0
        j = block
        for n in range(length):
            if n:
                step(idx)
            if greedy:
                idx = int(logits.argmax())
            else:
                if j == block:
                    _gumbel_fill(rng, u, noise)
                    j = 0
                if filtered:
                    idx = _filtered_choice(logits, noise[j], top_k, top_p)
                else:
                    add(logits, noise[j], out=scratch)
                    idx = int(scratch.argmax())
                j += 1
            ch = symbols[idx]
            yield ch
            if stop is not None:
                tail = (tail + ch)[-keep:]
                if tail == stop:
                    return


def generate(model, vocab: Vocab, length: int = 500, *, prime="", temperature: float = 1.0,
             greedy: bool = False, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, rng: np.random.Generator | None = None,
             stop: str | None = None) -> Iterator[str]:
    """Yield up to `length` generated characters (the prime is fed, not yielded).

    prime: text (every character must be in the vocabulary, else UnknownTextError) or a
    sequence of ids; empty: start from "\\n" (or a random character without one). The random
    draws come from `rng`, else from default_rng(seed): the same seed gives the same text.
    Settings are checked before the first character (SampleError).
    """
    check_settings(length, temperature, top_k, top_p)
    rng = rng if rng is not None else np.random.default_rng(seed)
    sampler = Sampler(model, vocab, temperature=temperature, greedy=greedy, top_k=top_k,
                      top_p=top_p)
    sampler.prime(prime, rng)
    return sampler.sample(length, rng, stop)


# ---------------------------------------------------------------------------------------------
# Streaming samples to a file (the `charrnn sample` command)
# ---------------------------------------------------------------------------------------------

FLUSH_CHARS = 64  # flush at every newline, and at least every this many characters

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str | None) -> str | None:
    """Turn the escapes \\n, \\t, \\r and \\\\ of a command-line value into their characters."""
    if text is None:
        return None
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], text)


def _stream(chars: Iterator[str], out) -> str:
    """Write characters to `out` as they come, flushing at newlines and every FLUSH_CHARS;
    returns the last two characters written."""
    buf, tail = [], ""
    for ch in chars:
        buf.append(ch)
        if ch == "\n" or len(buf) >= FLUSH_CHARS:
            piece = "".join(buf)
            out.write(piece)
            out.flush()
            tail = (tail + piece)[-2:]
            buf.clear()
    piece = "".join(buf)
    out.write(piece)
    out.flush()
    return (tail + piece)[-2:]


def write_samples(model, vocab: Vocab, out, *, prime: str = "", unknown: str = "error",
                  length: int = 500, temperature: float = 1.0, greedy: bool = False,
                  top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                  num_samples: int = 1, separator: str | None = None, stop: str | None = None,
                  as_json: bool = False, echo: bool = True,
                  warn: Callable[[str], None] = lambda message: None) -> None:
    """Generate `num_samples` samples and stream them to the text file `out`.

    Text mode: each sample is the prime (unless echo is False) then the generated characters,
    written as they are generated; samples are separated by exactly one blank line, or by
    `separator` written as given; the output ends with a newline. JSON mode: one object per
    line and sample, {"sample", "prime", "text", "length", "stopped"}, where text is the
    generated part only. A prime with characters outside the vocabulary raises UnknownTextError,
    or with unknown='skip' drops them and calls `warn`. The same seed gives the same output.
    """
    check_settings(length, temperature, top_k, top_p)
    if num_samples < 1:
        raise SampleError(f"--num-samples must be >= 1; got {num_samples}")
    ids, skipped, chars = encode_text(vocab, prime, unknown, "the prime")
    if skipped:
        shown = ", ".join(repr(c) for c in sorted(chars)[:10])
        warn(f"skipped {skipped} character(s) of the prime that are not in the model's "
             f"vocabulary ({shown})")
    prime_text = vocab.decode(ids)
    rng = np.random.default_rng(seed)
    sampler = Sampler(model, vocab, temperature=temperature, greedy=greedy, top_k=top_k,
                      top_p=top_p)
    sampler.prime(ids, rng)
    last = ""
    for i in range(num_samples):
        chars = sampler.sample(length, rng, stop)
        if as_json:
            text = "".join(chars)
            record = {"sample": i, "prime": prime_text, "text": text, "length": len(text),
                      "stopped": bool(stop) and text.endswith(stop)}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            continue
        if i:
            gap = separator if separator is not None else ("\n" if last.endswith("\n") else "\n\n")
            out.write(gap)
            last += gap
        if echo and prime_text:
            out.write(prime_text)
            last += prime_text
        last = (last + _stream(chars, out))[-2:]
    if not as_json and not last.endswith("\n"):
        out.write("\n")
        out.flush()
