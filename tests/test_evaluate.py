"""Evaluation: the fast chunked pass against a slow per-character reference loop."""

import math
import multiprocessing

import numpy as np
import pytest

from charrnn.fast import blas
from charrnn.fast.parallel import can_fork
from charrnn.infer import evaluate as evaluate_mod
from charrnn.infer.evaluate import (
    EvalError,
    EvalResult,
    UnknownTextError,
    evaluate_ids,
    evaluate_text,
    format_result,
)
from charrnn.nn.reference import reference_loss_and_grads
from charrnn.store.vocab import UnknownCharactersError, Vocab
from tests.conftest import CELL_CASES, tiny_model, wait_until

VOCAB = Vocab(list("\nabcdefgh ."))


def make_model(cell="lstm", nonlinearity="tanh", layers=2, dtype=np.float64, seed=0):
    """Hidden 5, embedding 3, VOCAB's 11 symbols, weights doubled."""
    return tiny_model(cell, nonlinearity, layers, hidden=5, embed=3, vocab=VOCAB, dtype=dtype,
                      seed=seed, scale=2.0)


def slow_mean_nll(model, ids):
    """The protocol written out: logits from the slow per-gate reference model over the whole
    text from a zero state, then -log softmax of each next character, one at a time."""
    params = {name: np.asarray(v, np.float64) for name, v in model.params.items()}
    state0 = tuple(np.zeros((model.layers, 1, model.hidden_size)) for _ in model.initial_state(1))
    x, y = np.asarray(ids[:-1])[None, :], np.asarray(ids[1:])[None, :]
    _, logits, _, _, _ = reference_loss_and_grads(params, model.spec, x, y, state0)
    losses = []
    for t in range(len(ids) - 1):
        row = logits[0, t]
        losses.append(-(row[ids[t + 1]] - row.max() - math.log(np.exp(row - row.max()).sum())))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
def test_eval_equals_the_mean_of_per_character_losses_of_a_slow_loop(cell, nonlinearity):
    model = make_model(cell, nonlinearity)
    ids = np.random.default_rng(0).integers(0, len(VOCAB), 120).astype(np.uint8)
    expected = slow_mean_nll(model, ids)
    for chunk_len in (1, 7, 64, 1000):
        total, n = evaluate_ids(model, ids, chunk_len=chunk_len)
        assert n == len(ids) - 1
        assert total / n == pytest.approx(expected, abs=1e-10)


def test_float32_eval_is_close_to_the_float64_reference():
    model = make_model(dtype=np.float32)
    ids = np.random.default_rng(1).integers(0, len(VOCAB), 300)
    total, n = evaluate_ids(model, ids, chunk_len=50)
    # float32 logits (|z| ~ 1, sums of ~H terms) against float64: each nll is off by some
    # tens of eps32, their mean no more, on any BLAS kernel
    assert total / n == pytest.approx(slow_mean_nll(model, ids), abs=1e-5)


def test_max_chars_caps_the_text():
    model = make_model("gru")
    ids = np.random.default_rng(2).integers(0, len(VOCAB), 200)
    total, n = evaluate_ids(model, ids, max_chars=50)
    assert n == 49
    assert (total, n) == evaluate_ids(model, ids[:50])
    assert evaluate_ids(model, ids, max_chars=10_000) == evaluate_ids(model, ids)


def test_the_first_character_is_not_scored_and_the_second_is():
    model = make_model()
    ids = np.array([1, 4])
    total, n = evaluate_ids(model, ids)
    logits = model.forward(ids[None, :1])[0][0, 0]
    assert n == 1
    assert total == pytest.approx(-(logits[4] - np.log(np.exp(logits).sum())), abs=1e-12)


@pytest.mark.parametrize("ids", [[], [3]])
def test_fewer_than_two_ids_is_an_error(ids):
    with pytest.raises(EvalError, match="at least 2"):
        evaluate_ids(make_model(), np.array(ids, dtype=np.uint8))


def test_evaluate_text_reports_loss_bits_and_perplexity():
    model = make_model()
    text = "abc defg.\nhead bag.\n" * 5
    r = evaluate_text(model, VOCAB, text)
    total, n = evaluate_ids(model, VOCAB.encode(text))
    assert r.chars_scored == n == len(text) - 1 and r.chars_skipped == 0
    assert r.loss == pytest.approx(total / n, rel=1e-15)
    assert r.bits_per_char == pytest.approx(r.loss / math.log(2))
    assert r.perplexity == pytest.approx(math.exp(r.loss))
    assert set(r.to_dict()) == {"loss", "bits_per_char", "perplexity", "chars_scored", "chars_skipped",
                                "streams", "warmup"}
    lines = format_result(r).splitlines()
    assert lines[0].startswith("loss:") and "nats/char" in lines[0] and len(lines) == 4


def test_unknown_characters_are_an_error_with_how_many_and_which():
    with pytest.raises(UnknownTextError) as e:
        evaluate_text(make_model(), VOCAB, "abcXYZZ")
    assert isinstance(e.value, UnknownCharactersError) and e.value.count == 4
    msg = str(e.value)
    assert "the text has 4 character(s)" in msg and "'X', 'Y', 'Z'" in msg and "--unknown skip" in msg


def test_skipping_unknown_characters_scores_the_rest():
    model = make_model()
    r = evaluate_text(model, VOCAB, "abXc dYe", unknown="skip")
    assert r.chars_skipped == 2
    assert r == EvalResult(**{**evaluate_text(model, VOCAB, "abc de").to_dict(), "chars_skipped": 2})
    assert "chars skipped: 2" in format_result(r)


@pytest.mark.parametrize("text,words", [("", "empty"), ("a", "one character"),
                                        ("XYa", "only 1 character")])
def test_too_short_texts_are_errors(text, words):
    with pytest.raises(EvalError, match=words):
        evaluate_text(make_model(), VOCAB, text, unknown="skip")


# -- parallel streams (approximate, opt-in) ----------------------------------------------------

def segment_nll(model, ids, lo, hi, warmup):
    """Exact nll of targets x_lo .. x_{hi-1} read from `warmup` characters before x_{lo-1}
    (or from x_0), zero state: a sequential pass over the window minus that over its warm-up."""
    start = max(0, lo - 1 - warmup)
    window = ids[start:hi]
    total, _ = evaluate_ids(model, window)
    if lo - 1 - start > 0:
        total -= evaluate_ids(model, window[:lo - start])[0]
    return total


@pytest.mark.parametrize("streams,warmup", [(2, 0), (3, 5), (4, 17), (7, 1), (5, 40)])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_streams_score_every_segment_from_its_warmup(cell, streams, warmup):
    model = make_model(cell)
    ids = np.random.default_rng(5).integers(0, len(VOCAB), 101).astype(np.uint8)
    n = len(ids) - 1
    seg = -(-n // streams)
    expected = sum(segment_nll(model, ids, 1 + k * seg, min(1 + (k + 1) * seg, n + 1), warmup)
                   for k in range(-(-n // seg)))
    for chunk_len in (3, 1000):
        total, scored = evaluate_ids(model, ids, chunk_len, streams=streams, warmup=warmup)
        assert scored == n
        assert total == pytest.approx(expected, abs=1e-10)


def test_streams_with_a_warmup_reaching_the_start_are_the_exact_pass():
    model = make_model("rnn", "relu")
    ids = np.random.default_rng(6).integers(0, len(VOCAB), 90)
    exact, _ = evaluate_ids(model, ids)
    total, _ = evaluate_ids(model, ids, chunk_len=8, streams=6, warmup=len(ids))
    assert total == pytest.approx(exact, abs=1e-10)
    approx, _ = evaluate_ids(model, ids, chunk_len=8, streams=6, warmup=0)
    assert abs(approx - exact) > 1e-6      # without warm-up the segments do lose context


def test_more_streams_than_characters_still_scores_each_once():
    model = make_model()
    ids = np.array([1, 4, 2])
    exact, n = evaluate_ids(model, ids)
    assert evaluate_ids(model, ids, streams=50, warmup=5) == pytest.approx((exact, n), abs=1e-12)


def test_stream_results_name_their_protocol():
    text = "abc defg.\nhab cag\n" * 5
    r = evaluate_text(make_model(), VOCAB, text, streams=4, warmup=3)
    assert (r.streams, r.warmup) == (4, 3) and r.to_dict()["streams"] == 4
    assert "4 parallel streams, 3 characters of warm-up" in format_result(r)
    exact = evaluate_text(make_model(), VOCAB, text)
    assert (exact.streams, exact.warmup) == (1, 0) and "protocol" not in format_result(exact)


needs_fork = pytest.mark.skipif(not can_fork(), reason="the pipelined pass needs fork (Linux)")


@needs_fork
@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
@pytest.mark.parametrize("layers", [2, 3])
def test_the_pipelined_pass_gives_the_bits_of_the_sequential_one(cell, nonlinearity, layers,
                                                                 monkeypatch):
    model = make_model(cell, nonlinearity, layers, dtype=np.float32)
    ids = np.random.default_rng(3).integers(0, len(VOCAB), 500).astype(np.uint8)
    spawned = []
    real_start = multiprocessing.process.BaseProcess.start
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start",
                        lambda self: spawned.append(self.name) or real_start(self))
    piped = evaluate_ids(model, ids, chunk_len=16)          # 32 chunks: pipelined
    assert spawned == ["charrnn-eval-layer0"]
    assert evaluate_ids(model, ids, chunk_len=16, pipeline=False) == piped   # one process
    monkeypatch.setattr(evaluate_mod, "can_fork", lambda: False)
    assert evaluate_ids(model, ids, chunk_len=16) == piped   # no fork here: the same loop
    assert spawned == ["charrnn-eval-layer0"]                # neither of the two forked
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("pipeline", [True, False])
def test_the_exact_pass_multiplies_on_one_blas_thread(monkeypatch, pipeline):
    """A product split over BLAS threads may round differently, so the exact pass runs one
    thread in each process (pipelined or not): the same bits on any core count. The count in
    effect before is restored."""
    before = blas.get_threads()
    if before is None:
        pytest.skip("this BLAS's thread count cannot be read")
    model = make_model("lstm", "tanh", 2, dtype=np.float32)
    ids = np.random.default_rng(3).integers(0, len(VOCAB), 500).astype(np.uint8)
    seen, real = [], model.block_forward
    monkeypatch.setattr(model, "block_forward",
                        lambda *a, **k: seen.append(blas.get_threads()) or real(*a, **k))
    blas.set_threads(2)
    try:
        evaluate_ids(model, ids, chunk_len=16, pipeline=pipeline)
        assert seen and set(seen) == {1}
        assert blas.get_threads() == 2
    finally:
        blas.set_threads(before)


def layer0_process_alive() -> bool:
    return any(p.name == "charrnn-eval-layer0" for p in multiprocessing.active_children())


def break_layer0_on_chunk_2(model, wait_for_the_child: bool = False) -> None:
    """Make model's layer 0 raise ValueError('layer 0 broke') on its third call (chunk 2, in
    the child, which runs layer 0). wait_for_the_child: the upper layers of chunk 1 (here)
    first wait until the child has failed and ended."""
    real = model.layer_forward
    calls = {"layer0": 0, "upper": 0}

    def failing(k, x, state):
        if k == 0:
            calls["layer0"] += 1                  # counted in the child, which runs layer 0
            if calls["layer0"] == 3:
                raise ValueError("layer 0 broke")
        elif wait_for_the_child:
            calls["upper"] += 1
            if calls["upper"] == model.layers:    # chunk 1's first upper layer
                wait_until(lambda: not layer0_process_alive(), timeout=30,
                           what="the layer-0 process to fail and end")
        return real(k, x, state)

    model.layer_forward = failing


@needs_fork
def test_an_error_in_the_layer0_process_is_raised_here():
    model = make_model()
    ids = np.random.default_rng(4).integers(0, len(VOCAB), 300)
    break_layer0_on_chunk_2(model)
    with pytest.raises(ValueError, match="layer 0 broke"):
        evaluate_ids(model, ids, chunk_len=16)
    assert not multiprocessing.active_children()


@needs_fork
def test_an_error_from_a_layer0_process_that_has_already_ended_is_raised_here():
    """The child fails on chunk 2 (which it starts once told, after chunk 0 here, that slot 0
    is free) and exits while this process is still on chunk 1 (it waits for that): telling
    the child that slot 1 is free then finds a closed pipe, and the child's error, waiting in
    the pipe, is what is raised."""
    model = make_model()
    ids = np.random.default_rng(4).integers(0, len(VOCAB), 300)
    break_layer0_on_chunk_2(model, wait_for_the_child=True)
    with pytest.raises(ValueError, match="layer 0 broke"):
        evaluate_ids(model, ids, chunk_len=16)
    assert not multiprocessing.active_children()
