"""Sampling: the single-step path against CharRNN.forward, and the sampler's behaviour."""

import io

import numpy as np
import pytest

from charrnn.infer import sample as gen
from charrnn.infer.evaluate import UnknownTextError
from charrnn.infer.sample import SampleError, Sampler, Stepper, generate, unescape, write_samples
from charrnn.store.vocab import Vocab
from tests.conftest import CELL_CASES, tiny_model

VOCAB = Vocab(list("\nabcdefghij .,"))


def make_model(cell="lstm", nonlinearity="tanh", layers=2, hidden=6, dtype=np.float64, seed=0,
               vocab=VOCAB, scale=1.0):
    """Embedding 4; scale > 1: peakier distributions, more varied behaviour."""
    return tiny_model(cell, nonlinearity, layers, hidden=hidden, embed=4, vocab=vocab, dtype=dtype,
                      seed=seed, scale=scale)


def forward_logits(model, ids):
    """Logits [T, V] of CharRNN.forward for one sequence from a zero state."""
    return model.forward(np.asarray(ids)[None, :])[0][0]


# -- the single-step path ---------------------------------------------------------------------

@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_stepper_gives_the_logits_and_state_of_forward(cell, nonlinearity, layers):
    model = make_model(cell, nonlinearity, layers, scale=2.0)
    rng = np.random.default_rng(layers)
    ids = rng.integers(0, len(VOCAB), 40)
    state0 = tuple(rng.standard_normal(s.shape) * 0.5 for s in model.initial_state(1))
    logits, final, _ = model.forward(ids[None, :], state0)
    st = Stepper(model)
    st.reset(state0)
    got = np.stack([st.step(int(t)).copy() for t in ids])
    np.testing.assert_allclose(got, logits[0], rtol=0, atol=1e-10)
    for a, b in zip(st.get_state(), final):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
def test_stepper_in_float32_and_its_fast_closure(cell, nonlinearity):
    model = make_model(cell, nonlinearity, dtype=np.float32)
    ids = np.random.default_rng(1).integers(0, len(VOCAB), 30)
    st = Stepper(model)
    step = st.make_step()
    got = np.stack([step(int(t)).copy() for t in ids])
    assert got.dtype == np.float32
    # float32 matrix-vector steps against the sequence's matrix products (another kernel,
    # another order): ~H-term sums' rounding carried over 30 steps, tens of eps32 at |z| ~ 1
    np.testing.assert_allclose(got, forward_logits(model, ids), atol=1e-5)


def test_stepper_folds_the_temperature_into_the_logits():
    model = make_model()
    ids = [1, 2, 3, 4]
    hot = Stepper(model, inv_temperature=1 / 0.3)
    got = np.stack([hot.step(t).copy() for t in ids])
    np.testing.assert_allclose(got, forward_logits(model, ids) / 0.3, atol=1e-10)


def test_stepper_reset_to_zero_restarts():
    model = make_model("gru")
    st = Stepper(model)
    first = st.step(3).copy()
    st.step(5)
    st.reset()
    np.testing.assert_array_equal(st.step(3), first)


# -- the draw ---------------------------------------------------------------------------------

def test_gumbel_noise_draws_from_the_softmax():
    rng = np.random.default_rng(0)
    logits = np.array([1.0, 0.0, -1.0, 2.5, 0.5])
    u = np.empty((40000, 5))
    gen._gumbel_fill(rng, u, u)
    freq = np.bincount(np.argmax(logits + u, axis=1), minlength=5) / len(u)
    p = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(freq, p, atol=0.01)


def test_sampler_follows_the_model_distribution_at_a_temperature():
    model = make_model(scale=3.0)
    T = 0.7
    sampler = Sampler(model, VOCAB, temperature=T)
    prime = VOCAB.encode("abc")
    sampler.prime(prime)
    rng = np.random.default_rng(1)
    n = 12000
    counts = np.zeros(len(VOCAB))
    for _ in range(n):
        counts[VOCAB.index(next(sampler.sample(1, rng)))] += 1
    z = forward_logits(model, prime)[-1] / T
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(counts / n, p, atol=0.02)


def test_filtered_choice_respects_top_k_and_top_p():
    logits = np.array([0.1, 3.0, 2.9, -1.0, 2.0, 0.0])
    rng = np.random.default_rng(0)
    u = np.empty((2000, 6))
    gen._gumbel_fill(rng, u, u)
    picks_k = {gen._filtered_choice(logits, row, 2, None) for row in u}
    assert picks_k == {1, 2}
    p = np.exp(logits) / np.exp(logits).sum()        # sorted: 1 (.43), 2 (.39), 4 (.14), ...
    picks_p = {gen._filtered_choice(logits, row, None, 0.5) for row in u}
    assert picks_p == {1, 2} and p[1] < 0.5 <= p[1] + p[2]
    assert {gen._filtered_choice(logits, row, None, 0.3) for row in u[:200]} == {1}
    assert {gen._filtered_choice(logits, row, 1, None) for row in u[:200]} == {1}


# -- generate ---------------------------------------------------------------------------------

def text_of(model, **kw):
    return "".join(generate(model, VOCAB, **kw))


def test_same_seed_same_text_and_different_without_a_seed():
    model = make_model(scale=2.0)
    a = text_of(model, length=200, prime="ab", seed=7)
    assert len(a) == 200 and set(a) <= set(VOCAB.symbols)
    assert text_of(model, length=200, prime="ab", seed=7) == a
    assert text_of(model, length=200, prime="ab", seed=8) != a
    assert text_of(model, length=200, prime="ab") != text_of(model, length=200, prime="ab")


def test_a_given_rng_is_used_and_advanced():
    model = make_model()
    rng = np.random.default_rng(3)
    first = text_of(model, length=50, rng=rng)
    assert text_of(model, length=50, rng=rng) != first
    assert text_of(model, length=50, rng=np.random.default_rng(3)) == first


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_temperature_towards_zero_approaches_greedy(dtype):
    model = make_model(scale=2.0, dtype=dtype)
    greedy = text_of(model, length=150, prime="a c", greedy=True)
    assert text_of(model, length=150, prime="a c", temperature=1e-7, seed=1) == greedy
    # greedy is the argmax of the model's own logits at every step (teacher-forced check)
    ids = VOCAB.encode("a c" + greedy)
    logits = forward_logits(model, ids[:-1])
    np.testing.assert_array_equal(np.argmax(logits[2:], axis=1), ids[3:])
    # and lower temperatures agree with it more often
    agree = [np.mean([a == b for a, b in zip(text_of(model, length=150, prime="a c",
                                                      temperature=t, seed=s), greedy)])
             for t in (2.0, 0.05) for s in range(3)]
    assert np.mean(agree[3:]) > np.mean(agree[:3])


def test_an_extreme_temperature_is_greedy_without_warnings():
    model = make_model(dtype=np.float32)
    with np.errstate(all="raise"):
        assert text_of(model, length=40, temperature=1e-300, seed=0) == \
            text_of(model, length=40, greedy=True)


def ranks_of_emitted(model, prime, text, T=1.0):
    """For each generated character, its rank (0 = most likely) and probability under the model."""
    ids = VOCAB.encode(prime + text)
    logits = forward_logits(model, ids[:-1])[len(prime) - 1:] / T
    order = np.argsort(-logits, axis=1)
    ranks = [int(np.flatnonzero(order[t] == ids[len(prime) + t])[0]) for t in range(len(text))]
    return ranks, logits


def test_top_k_never_emits_a_character_outside_the_k_most_likely():
    model = make_model(scale=1.5)
    text = text_of(model, length=300, prime="ab", top_k=3, temperature=3.0, seed=2)
    ranks, _ = ranks_of_emitted(model, "ab", text)
    assert max(ranks) <= 2 and len(set(ranks)) == 3
    assert text_of(model, length=100, prime="ab", top_k=1, seed=5) == \
        text_of(model, length=100, prime="ab", greedy=True)


def test_top_p_emits_only_from_the_nucleus():
    model = make_model(scale=2.0)
    T, top_p = 1.5, 0.6
    text = text_of(model, length=300, prime="ab", top_p=top_p, temperature=T, seed=4)
    ranks, logits = ranks_of_emitted(model, "ab", text, T)
    for t, r in enumerate(ranks):
        p = np.sort(np.exp(logits[t]) / np.exp(logits[t]).sum())[::-1]
        nucleus = int(np.searchsorted(np.cumsum(p), top_p)) + 1
        assert r < nucleus
    assert max(ranks) > 0
    # p = 1 keeps everything: the same draws as no top-p at all
    assert text_of(model, length=80, top_p=1.0, seed=3) == text_of(model, length=80, seed=3)


def test_stop_ends_the_sample_right_after_the_stop_string():
    model = make_model(scale=1.5)
    full = text_of(model, length=400, prime="a", seed=11)
    for stop in (full[30], full[50:53]):
        cut = full[:full.index(stop) + len(stop)]
        assert text_of(model, length=400, prime="a", seed=11, stop=stop) == cut
    assert text_of(model, length=400, prime="a", seed=11, stop="not produced") == full


def test_no_prime_starts_from_the_newline_character():
    model = make_model()
    assert text_of(model, length=60, seed=1) == text_of(model, length=60, prime="\n", seed=1)


def test_no_prime_and_no_newline_in_the_vocabulary_starts_from_a_random_character():
    vocab = Vocab(list("xyz"))
    model = make_model(vocab=vocab)
    texts = {"".join(generate(model, vocab, 30, seed=s)) for s in range(6)}
    assert len(texts) > 1
    assert "".join(generate(model, vocab, 30, seed=2)) == "".join(generate(model, vocab, 30, seed=2))


def test_prime_as_ids_and_length_zero():
    model = make_model()
    assert text_of(model, length=20, prime=list(VOCAB.encode("ab")), seed=0) == \
        text_of(model, length=20, prime="ab", seed=0)
    assert text_of(model, length=0, prime="ab") == ""


def test_prime_with_unknown_characters_is_an_error_listing_them():
    with pytest.raises(UnknownTextError) as e:
        generate(make_model(), VOCAB, 10, prime="abXYX")
    assert "the prime has 3 character(s)" in str(e.value) and "'X', 'Y'" in str(e.value)
    assert "--unknown skip" in str(e.value)


@pytest.mark.parametrize("kw,words", [
    ({"temperature": 0}, "--temperature"), ({"temperature": -1}, "--temperature"),
    ({"temperature": float("nan")}, "--temperature"), ({"temperature": float("inf")}, "--temperature"),
    ({"top_k": 0}, "--top-k"), ({"top_p": 0.0}, "--top-p"), ({"top_p": 1.5}, "--top-p"),
    ({"length": -1}, "--length"),
])
def test_bad_settings_are_sample_errors(kw, words):
    args = {"length": 5, **kw}
    with pytest.raises(SampleError, match=words):
        generate(make_model(), VOCAB, **args)


# -- writing samples --------------------------------------------------------------------------

def test_write_samples_separates_echoes_and_is_reproducible():
    model = make_model(scale=1.5)
    out = io.StringIO()
    write_samples(model, VOCAB, out, prime="ab", length=30, seed=5, num_samples=3,
                  separator="\n---\n")
    parts = out.getvalue().split("\n---\n")
    assert len(parts) == 3 and all(p.startswith("ab") for p in parts)
    assert out.getvalue().endswith("\n")
    assert len({p.rstrip("\n") for p in parts}) == 3
    again = io.StringIO()
    write_samples(model, VOCAB, again, prime="ab", length=30, seed=5, num_samples=3,
                  separator="\n---\n")
    assert again.getvalue() == out.getvalue()
    # the first sample is what generate() gives with that seed
    assert parts[0] == "ab" + text_of(model, length=30, prime="ab", seed=5)


def test_default_separator_is_exactly_one_blank_line():
    vocab = Vocab(list("xyz"))                      # no newline: samples end without one
    model = make_model(vocab=vocab)
    out = io.StringIO()
    write_samples(model, vocab, out, length=8, seed=1, num_samples=3)
    parts = out.getvalue().split("\n\n")
    assert len(parts) == 3 and all(len(p) == 8 for p in parts[:2]) and parts[2] == parts[2][:8] + "\n"
    # samples that end with a newline get one more, not two
    model = make_model(scale=1.5)
    out = io.StringIO()
    write_samples(model, VOCAB, out, prime="a", length=400, seed=1, num_samples=3, stop="\n")
    parts = out.getvalue().split("\n\n")
    assert len(parts) == 3 and all(p.startswith("a") and "\n" not in p for p in parts[:2])
    assert parts[2].endswith("\n") and parts[2].count("\n") == 1


def test_write_samples_skips_unknown_prime_characters_with_a_warning():
    warnings = []
    out = io.StringIO()
    write_samples(make_model(), VOCAB, out, prime="aXb", unknown="skip", length=5, seed=0,
                  warn=warnings.append)
    assert out.getvalue().startswith("ab")
    assert len(warnings) == 1 and "skipped 1 character(s) of the prime" in warnings[0]
    assert "'X'" in warnings[0]


class FlushLog(io.StringIO):
    def __init__(self):
        super().__init__()
        self.flushed = []

    def flush(self):
        self.flushed.append(self.getvalue())


def test_output_is_flushed_at_every_newline():
    model = make_model(scale=1.5)
    out = FlushLog()
    write_samples(model, VOCAB, out, length=300, seed=2, echo=False)
    text = out.getvalue()
    assert text.count("\n") >= 3
    for i, ch in enumerate(text[:-1]):
        if ch == "\n":
            assert text[:i + 1] in out.flushed
    assert all(len(b) - len(a) <= gen.FLUSH_CHARS for a, b in zip([""] + out.flushed, out.flushed))


def test_unescape():
    assert unescape(r"a\nb\tc\\n") == "a\nb\tc\\n"
    assert unescape(None) is None
