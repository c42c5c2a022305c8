"""Sampling text from a CharRNN: one character at a time, batch 1, as fast as NumPy allows.

Shape key: V vocabulary. Each character is one step of charrnn.nn.stepper.Stepper (the
batch-1 path with the same logits as the model's sequence forward), then a draw:

- sampling is the Gumbel-max trick, argmax(logits / T + g) with g = -log(-log(u)), which draws
  exactly from softmax(logits / T); the noise is drawn in blocks of NOISE_BLOCK steps, so a step
  costs one add and one argmax, needs no exp, no normalisation and cannot overflow.

Public API:
  generate(model, vocab, length=500, *, prime="", temperature=1.0, greedy=False, top_k=None,
           top_p=None, seed=None, rng=None, stop=None) -> Iterator[str]
  Sampler(model, vocab, *, temperature=1.0, greedy=False, top_k=None, top_p=None)
      .prime(text)                       feed a prime (or the default start character)
      .sample(length, rng, stop=None)    one sample from the primed state, as an iterator of chars
  write_samples(model, vocab, out, *, prime, unknown, num_samples, separator, echo, as_json,
                warn, temperature (one or a list), novelty, note, ...)
                                         what `charrnn sample` does: stream samples to `out`
  unescape(text)                         \\n, \\t, \\r and \\\\ in --stop / --separator values
  SampleError                            a bad sampling setting (the CLI exits with status 2)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator

import numpy as np

from charrnn.errors import UsageError
from charrnn.infer.evaluate import encode_text
from charrnn.nn.stepper import Stepper
from charrnn.store.vocab import Vocab

NOISE_BLOCK = 1024  # sampling steps per block of Gumbel noise


class SampleError(UsageError, ValueError):
    """A sampling setting that cannot be used; one sentence naming the option and the fix."""


def check_settings(length: int = 0, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None) -> None:
    """SampleError unless the settings are usable (length >= 0, 0 < T < inf, k >= 1, 0 < p <= 1)."""
    if length < 0:
        raise SampleError(f"--length must be >= 0; got {length}")
    if not math.isfinite(temperature):
        raise SampleError(f"--temperature must be a finite number > 0; got {temperature} (above "
                          f"about 10 the samples are already nearly uniform)")
    if not temperature > 0:
        raise SampleError(f"--temperature must be a number > 0; got {temperature} "
                          f"(use --greedy for always the most likely character)")
    if top_k is not None and top_k < 1:
        raise SampleError(f"--top-k must be >= 1; got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise SampleError(f"--top-p must be in (0, 1]; got {top_p}")


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
        self._primed = (st.z.copy(), st.buf.copy(), st.logits.copy())

    def _restore(self) -> None:
        if self._primed is None:
            raise RuntimeError("call prime() before sample()")
        st = self.stepper
        z, buf, logits = self._primed
        st.z[...] = z
        st.buf[...] = buf
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
                  length: int = 500, temperature=1.0, greedy: bool = False,
                  top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                  num_samples: int = 1, separator: str | None = None, stop: str | None = None,
                  as_json: bool = False, echo: bool = True,
                  warn: Callable[[str], None] = lambda message: None,
                  novelty: Callable[[str], str] | None = None,
                  note: Callable[[str], None] = lambda message: None) -> None:
    """Generate `num_samples` samples and stream them to the text file `out`.

    Text mode: each sample is the prime (unless echo is False) then the generated characters,
    written as they are generated; samples are separated by exactly one blank line, or by
    `separator` written as given; the output ends with a newline. JSON mode: one object per
    line and sample, {"sample", "prime", "text", "length", "stopped", "temperature"}, where text
    is the generated part only. A prime with characters outside the vocabulary raises
    UnknownTextError, or with unknown='skip' drops them and calls `warn`. The same seed gives
    the same output.

    temperature: a number, or a list of them: then the samples are drawn once per temperature,
    each time from the same prime and seed (a random one when seed is None), under a label line
    `--- temperature T ---` (JSON: the record's temperature). A vocabulary with an
    end-of-document symbol (documents mode): every sample is one document, read from that
    symbol then the prime, and ends before the symbol ("stopped": true). novelty(document) ->
    'train' | 'val' | 'new' marks each sample (JSON: "novelty"; text: a tab and the mark after
    it), and note(line) hears the share of new samples of each temperature.
    """
    temperatures = list(temperature) if isinstance(temperature, (list, tuple)) else [temperature]
    for t in temperatures:
        check_settings(length, t, top_k, top_p)
    if num_samples < 1:
        raise SampleError(f"--num-samples must be >= 1; got {num_samples}")
    ids, skipped, chars = encode_text(vocab, prime, unknown, "the prime")
    if skipped:
        shown = ", ".join(repr(c) for c in sorted(chars)[:10])
        warn(f"skipped {skipped} character(s) of the prime that are not in the model's "
             f"vocabulary ({shown})")
    prime_text = vocab.decode(ids)
    if vocab.eod_id is not None:                 # a document starts from its start symbol
        ids = np.concatenate([[vocab.eod_id], ids]).astype(np.int64)
    if len(temperatures) > 1 and seed is None:   # the same draws for every temperature
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    last = ""
    for n, t in enumerate(temperatures):
        if len(temperatures) > 1 and not as_json:
            label = ("\n" if last and not last.endswith("\n") else "") + \
                    ("\n" if n else "") + f"--- temperature {t:g} ---\n"
            out.write(label)
            last = label[-2:]
        sampler = Sampler(model, vocab, temperature=t, greedy=greedy, top_k=top_k, top_p=top_p)
        rng = np.random.default_rng(seed)
        sampler.prime(ids, rng)
        marks = _write_group(sampler, rng, out, last, prime_text=prime_text, length=length,
                             num_samples=num_samples, separator=separator, stop=stop,
                             as_json=as_json, echo=echo, novelty=novelty, temperature=t)
        last = marks.pop("", last)
        if novelty is not None:
            if not as_json and not last.endswith("\n"):     # the samples' last line, then the note
                out.write("\n")
                out.flush()
                last = "\n"
            note(novelty_line(marks, num_samples, t if len(temperatures) > 1 else None))
    if not as_json and not last.endswith("\n"):
        out.write("\n")
        out.flush()


def novelty_line(marks: dict, total: int, temperature: float | None = None) -> str:
    """'novelty: 17 of 20 samples new (85%); 2 in the training split, 1 in validation'."""
    new = marks.get("new", 0)
    at = f" at temperature {temperature:g}" if temperature is not None else ""
    return (f"novelty{at}: {new} of {total} samples new ({new / total:.0%}); "
            f"{marks.get('train', 0)} in the training split, {marks.get('val', 0)} in validation")


def _until(chars: Iterator[str], end: str, seen: list) -> Iterator[str]:
    """The characters before `end` (not yielded); seen[0] becomes True when it came."""
    for ch in chars:
        if ch == end:
            seen[0] = True
            return
        yield ch


def _write_group(sampler, rng, out, last, *, prime_text, length, num_samples, separator, stop,
                 as_json, echo, novelty, temperature) -> dict:
    """The samples of one temperature -> {mark: count, "": the last two characters written}."""
    eod = sampler.vocab.eod
    marks: dict = {}
    for i in range(num_samples):
        ended = [False]
        chars = sampler.sample(length, rng, stop)
        if eod is not None:
            chars = _until(chars, eod, ended)
        if as_json or novelty is not None:
            text = "".join(chars)
            chars = iter(text)
        if novelty is not None:
            mark = novelty(prime_text + text)
            marks[mark] = marks.get(mark, 0) + 1
        if as_json:
            record = {"sample": i, "prime": prime_text, "text": text, "length": len(text),
                      "stopped": ended[0] or (bool(stop) and text.endswith(stop)),
                      "temperature": temperature}
            if novelty is not None:
                record["novelty"] = mark
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
        if novelty is not None:
            out.write(f"\t{mark}")
            last = mark[-2:]
    marks[""] = last
    return marks
