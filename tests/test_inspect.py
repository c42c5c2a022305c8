"""`charrnn inspect`: surprisal against eval, states against the forward, the cells' trace
against the textbook step, the interpretable-unit finder on a hand-set model, and the CLI."""

import json
import math
import re

import numpy as np
import pytest

from charrnn.infer.evaluate import evaluate_ids, evaluate_text
from charrnn.nn.cells import CELLS
from charrnn.tools.inspect import inspect_text, surprising_spans
from charrnn.tools.units import correlations, rank_units, text_features
from charrnn.store.checkpoint import load_model, save_checkpoint
from charrnn.store.vocab import Vocab
from tests.conftest import TINY_TEXT, TINY_VOCAB, run_cli, tiny_model, tiny_run

run = run_cli


def one_line_error(result, code, *words):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# -- the cells' trace ---------------------------------------------------------------------------

def test_trace_gives_the_reference_steps_states_and_gates(cell_case):
    """Every array trace returns equals the textbook step's: a state by STATE name, a gate by
    the name reference_step saves it under."""
    cell, nonlinearity = cell_case
    model = tiny_model(cell, nonlinearity, layers=1, hidden=5, embed=3, seed=4)
    module, p = CELLS[cell], model.params
    x = np.random.default_rng(0).standard_normal((7, 2, 3))
    state0 = tuple(np.random.default_rng(1).standard_normal((2, 5)) * 0.5 for _ in module.STATE)
    _, _, cache = model.layer_forward(0, x, state0)
    traced = module.trace(cache)
    assert set(module.STATE) <= set(traced)
    assert set(traced) <= set(module.STATE) | set(module.GATES)
    weights = [p[f"rnn.{n}_l0"] if f"rnn.{n}_l0" in p else None      # min cells: no weight_hh
               for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    state = state0
    for t in range(7):
        state, saved = module.reference_step(x[t], state, *weights, nonlinearity=nonlinearity)
        for name, values in traced.items():
            want = state[module.STATE.index(name)] if name in module.STATE else saved[name]
            np.testing.assert_allclose(values[t], want, rtol=1e-12, atol=1e-12, err_msg=name)


# -- surprisal and states -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lstm():
    """A small random float32 LSTM on TINY_VOCAB, weights scaled up (peaky predictions)."""
    return tiny_run(TINY_VOCAB, "lstm", layers=2, hidden=12, embed=5, seed=1, scale=2.5)[0]


def test_surprisal_is_evals_loss_of_each_character(lstm):
    """surprisal[t] ln 2 = eval's total loss of x_0..x_t minus that of x_0..x_{t-1}."""
    text = TINY_TEXT[:60]
    ids = TINY_VOCAB.encode(text)
    ins = inspect_text(lstm, TINY_VOCAB, text, chunk_len=7)
    totals = [0.0] + [evaluate_ids(lstm, ids[:t + 1])[0] for t in range(1, len(ids))]
    assert math.isnan(ins.surprisal[0])
    np.testing.assert_allclose(ins.surprisal[1:] * math.log(2), np.diff(totals),
                               rtol=1e-5, atol=1e-6)
    assert ins.surprisal[1:].min() > 0 and ins.surprisal[1:].std() > 0.5   # not a constant


def test_mean_surprisal_is_evals_loss_across_chunks_and_the_pipeline(lstm):
    """A text of over four chunks: eval takes its two-process pipeline, inspect its own chunks."""
    text = TINY_TEXT * 30                                       # 5400 characters
    want = evaluate_text(lstm, TINY_VOCAB, text)
    ins = inspect_text(lstm, TINY_VOCAB, text, chunk_len=333)
    assert ins.loss == pytest.approx(want.loss, rel=1e-6)
    assert ins.bits_per_char == pytest.approx(want.bits_per_char, rel=1e-6)


def test_states_are_the_forwards_states_step_by_step(cell_case):
    """Each layer's state after character t equals the final state of the model's forward over
    x_0..x_t run one character at a time (another path than the trace's)."""
    cell, nonlinearity = cell_case
    model = tiny_model(cell, nonlinearity, layers=2, hidden=6, embed=4, vocab=TINY_VOCAB, seed=2)
    text = TINY_TEXT[:40]
    ins = inspect_text(model, TINY_VOCAB, text, chunk_len=9, gates=True)
    names = list(CELLS[cell].STATE)
    assert ins.state_names[:len(names)] == names
    state = None
    for t, i in enumerate(TINY_VOCAB.encode(text)):
        _, state, _ = model.forward(np.array([[i]]), state)
        for j, name in enumerate(names):
            for layer in range(2):
                np.testing.assert_allclose(ins.states[(layer, name)][t], state[j][layer, 0],
                                           rtol=1e-12, atol=1e-12)


def test_top_k_is_the_softmax_sorted(lstm):
    text = TINY_TEXT[:30]
    ins = inspect_text(lstm, TINY_VOCAB, text, top_k=4)
    logits, _, _ = lstm.forward(TINY_VOCAB.encode(text)[None, :].astype(np.int64))
    z = logits[0].astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    for t in range(len(text)):
        order = np.argsort(-p[t], kind="stable")[:4]
        np.testing.assert_array_equal(ins.top_ids[t], order)
        np.testing.assert_allclose(ins.top_probs[t], p[t][order], rtol=1e-6)
    # the probability of the character that came is 2^-surprisal, and it is in the top-k or below
    for t in range(1, len(text)):
        actual = TINY_VOCAB.index(text[t])
        assert p[t - 1][actual] == pytest.approx(2.0 ** -ins.surprisal[t], rel=1e-5)


def test_top_k_larger_than_the_vocabulary_is_the_whole_vocabulary(lstm):
    ins = inspect_text(lstm, TINY_VOCAB, "the cat", top_k=100)
    assert ins.top_ids.shape == (7, len(TINY_VOCAB))
    np.testing.assert_allclose(ins.top_probs.sum(axis=1), 1.0, rtol=1e-9)


def test_surprising_spans_are_the_largest_windows_not_overlapping():
    bits = np.array([np.nan, 1, 1, 9, 9, 1, 1, 1, 5, 5, 1, 0, 0, 7])
    assert surprising_spans(bits, width=2, count=3) == [(3, 18.0), (8, 10.0), (12, 7.0)]
    assert surprising_spans(bits, width=50, count=2) == [(0, float(np.nansum(bits)))]


# -- the features and the finder ------------------------------------------------------------------

def test_text_features_by_hand():
    text = 'a "b" (c(d)) don\'t th\' \'e\'\nXy'
    f = text_features(text, after=" ")
    expect_dq = [0, 0, 1, 1, 0] + [0] * (len(text) - 5)
    np.testing.assert_array_equal(f["double_quote"], expect_dq)
    # (c(d)) : depth after each of ( c ( d ) )
    i = text.index("(")
    np.testing.assert_array_equal(f["bracket_depth"][i:i + 6], [1, 1, 2, 2, 1, 0])
    np.testing.assert_array_equal(f["in_brackets"][i:i + 6], [1, 1, 1, 1, 1, 0])
    # the apostrophe of don't is not a quote; 'e' is quoted
    j = text.index("'e'")
    assert f["single_quote"][:j].max() == 0                    # don't, th' are apostrophes
    np.testing.assert_array_equal(f["single_quote"][j:j + 4], [1, 1, 0, 0])
    assert f["in_word"][text.index("n't") + 1] == 1 and f["in_word"][text.index(" ")] == 0
    nl = text.index("\n")
    assert f["line_position"][nl] == 0 and f["line_position"][nl + 2] == 2
    assert f["line_position"][3] == 4
    np.testing.assert_array_equal(np.flatnonzero(f["line_start"]), [0, nl + 1])
    np.testing.assert_array_equal(np.flatnonzero(f["upper_case"]), [nl + 1])
    np.testing.assert_array_equal(f["after: "], [c == " " for c in text])


def test_constant_features_are_left_out():
    f = text_features("abc abc\n", after="z")
    assert "double_quote" not in f and "in_brackets" not in f and "after:z" not in f
    assert "bracket_depth" not in text_features("(a) (b)")      # never nested: in_brackets
    assert text_features("") == {}


def test_correlations_equal_numpys_corrcoef():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 5)).astype(np.float32)
    a[:, 4] = 0.25                                               # a constant unit: r = 0
    features = {"x": rng.standard_normal(300), "y": (rng.random(300) > 0.5).astype(float)}
    a[:, 1] += 2 * features["y"].astype(np.float32)
    r = correlations(features, {(0, "h"): a})[(0, "h")]
    for i, f in enumerate(features.values()):
        for u in range(4):
            assert r[i, u] == pytest.approx(np.corrcoef(f, a[:, u])[0, 1], abs=1e-9)
    assert np.all(r[:, 4] == 0)


QUOTE_VOCAB = Vocab(list('" abAB'))
QUOTE_UNIT = 2


def quote_model(dtype="float64"):
    """A 1-layer GRU of 4 units whose unit 2 is, by hand-set weights, +1 inside double quotes
    and -1 outside (the rest random): r = 1; z = sigmoid(K - 2K q) keeps h except on a quote
    (q = 1), where h' = n = tanh(K/2 - K h) flips it (from 0, to +1)."""
    model, cfg = tiny_run(QUOTE_VOCAB, "gru", layers=1, hidden=4, embed=2, dtype=dtype, seed=5)
    p, H, u, K = model.params, 4, QUOTE_UNIT, 20.0
    emb = p["embedding.weight"]
    emb[:, 0] = [c == '"' for c in QUOTE_VOCAB.to_list()]          # dimension 0: "is a quote"
    w_ih, w_hh, b_ih, b_hh = (p[f"rnn.{n}_l0"] for n in ("weight_ih", "weight_hh", "bias_ih",
                                                          "bias_hh"))
    for gate in range(3):
        row = gate * H + u
        w_ih[row], w_hh[row], b_ih[row], b_hh[row] = 0, 0, 0, 0
    b_ih[u] = K                                                   # r = 1
    w_ih[H + u, 0], b_ih[H + u] = -2 * K, K                       # z
    w_hh[2 * H + u, u], b_ih[2 * H + u] = -K, K / 2               # n
    return model, cfg


def quote_text(n=600, seed=0):
    """Random words, a quote opening or closing now and then; starts with an opening quote."""
    rng = np.random.default_rng(seed)
    words = rng.choice(["ab", "ba", "A", "bAb", "aa", "B"], size=n // 3)
    return '"' + "".join(w + ('"' if rng.random() < 0.25 else " ") for w in words)


def test_the_finder_ranks_the_hand_set_quote_unit_first():
    model, _ = quote_model()
    text = quote_text()
    ins = inspect_text(model, QUOTE_VOCAB, text)
    inside = text_features(text)["double_quote"]
    np.testing.assert_allclose(ins.states[(0, "h")][:, QUOTE_UNIT], 2 * inside - 1, atol=1e-6)
    ranked = {f["feature"]: f["units"] for f in rank_units(text_features(text), ins.states, 3)}
    best = ranked["double_quote"][0]
    assert (best["layer"], best["state"], best["unit"]) == (0, "h", QUOTE_UNIT)
    assert best["r"] > 0.9999 and abs(ranked["double_quote"][1]["r"]) < 0.9
    assert ranked["upper_case"][0]["unit"] != QUOTE_UNIT or abs(ranked["upper_case"][0]["r"]) < 0.5


# -- the command line --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quote_checkpoint(tmp_path_factory):
    model, cfg = quote_model("float32")
    path = str(tmp_path_factory.mktemp("quote") / "q.safetensors")
    save_checkpoint(path, model, QUOTE_VOCAB, cfg)
    return path


@pytest.fixture(scope="module")
def quote_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "q.txt"
    path.write_text(quote_text(), encoding="utf-8")
    return path


def test_cli_json_has_every_figure_and_finds_the_quote_unit(quote_checkpoint, quote_file):
    r = run("inspect", quote_checkpoint, quote_file, "--json", "--gates", "--top-k", 3)
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    text = quote_file.read_text()
    n = len(text)
    assert out["format"] == "charrnn-inspect/1" and out["text"] == text and out["chars"] == n
    assert out["surprisal"][0] is None and len(out["surprisal"]) == n
    model, vocab, _ = load_model(quote_checkpoint)
    want = evaluate_text(model, vocab, text)
    assert np.mean(out["surprisal"][1:]) == pytest.approx(want.bits_per_char, rel=1e-5)
    assert out["loss"] == pytest.approx(want.loss, rel=1e-6)
    assert len(out["top_chars"]) == n and all(len(row) == 3 for row in out["top_chars"])
    assert sorted(out["states"]) == ["h", "n", "r", "z"]
    h = np.array(out["states"]["h"])
    assert h.shape == (1, n, 4)
    ins = inspect_text(model, vocab, text, gates=True)
    np.testing.assert_allclose(h[0], ins.states[(0, "h")], rtol=1e-6, atol=1e-7)
    best = next(f for f in out["units"] if f["feature"] == "double_quote")["units"][0]
    assert (best["layer"], best["state"], best["unit"]) == (0, "h", QUOTE_UNIT)
    assert out["spans"][0]["text"] == text[out["spans"][0]["start"]:out["spans"][0]["end"]]


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_cli_plain_output_is_the_text_then_the_summary(quote_checkpoint, quote_file):
    text = quote_file.read_text()
    r = run("inspect", quote_checkpoint, quote_file)
    assert r.exit_code == 0 and "\x1b" not in r.stdout
    assert r.stdout.startswith(text + "\n\n")
    summary = r.stdout[len(text) + 2:]
    assert re.search(r"\d+ characters, \d+ scored: [0-9.]+ bits/char", summary)
    assert 'inside double quotes "..."' in summary and "L0 h2" in summary
    assert "most surprising spans" in summary


def test_cli_color_shades_the_text_and_nothing_else(quote_checkpoint, quote_file):
    text = quote_file.read_text()
    r = run("inspect", quote_checkpoint, quote_file, "--color")
    assert r.exit_code == 0
    assert "\x1b[38;5;16;48;5;" in r.stdout
    assert ANSI.sub("", r.stdout).startswith(text + "\n\n")


def test_cli_units_zero_skips_the_search(quote_checkpoint, quote_file):
    r = run("inspect", quote_checkpoint, quote_file, "--units", 0, "--no-color")
    assert r.exit_code == 0 and "interpretable units" not in r.stdout


def test_cli_html_is_one_self_contained_file(quote_checkpoint, quote_file, tmp_path):
    page = tmp_path / "page.html"
    r = run("inspect", quote_checkpoint, quote_file, "--html", page)
    assert r.exit_code == 0 and f"wrote {page}" in r.stderr
    assert not r.stdout.startswith(quote_file.read_text()[:20])    # the summary only
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert not re.search(r"""(src|href)\s*=|@import|url\(|https?:""", html)   # no request
    data = json.loads(re.search(r'id="data">(.*?)</script>', html, re.S).group(1))
    assert data["text"] == quote_file.read_text() and data["page_chars"] == data["chars"]


def test_cli_errors_are_one_line(quote_checkpoint, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    one_line_error(run("inspect", quote_checkpoint, empty), 1, "at least 2")
    unknown = tmp_path / "u.txt"
    unknown.write_text("ab zz ab")
    one_line_error(run("inspect", quote_checkpoint, unknown), 1, "--unknown skip")
    r = run("inspect", quote_checkpoint, unknown, "--unknown", "skip", "--no-color")
    assert r.exit_code == 0 and "skipped 2 character(s)" in r.stderr
    assert r.stdout.startswith("ab  ab\n")
    one_line_error(run("inspect", quote_checkpoint, unknown, "--html",
                       tmp_path / "no" / "such" / "p.html"), 1, "cannot write", "does not exist")


def test_the_page_cuts_characters_and_unit_values_beyond_its_limits(monkeypatch):
    """Beyond PAGE_MAX_CHARS the text is cut; unit values stop at UNIT_BYTES / units; each
    stored byte decodes to its value within half a step."""
    from charrnn.tools import inspect_html

    model, _ = quote_model()
    text = quote_text(300)
    ins = inspect_text(model, QUOTE_VOCAB, text)
    monkeypatch.setattr(inspect_html, "PAGE_MAX_CHARS", 250)
    monkeypatch.setattr(inspect_html, "UNIT_BYTES", 4 * 100)          # 4 units: 100 characters
    data = inspect_html.page_data(ins, [], "q")
    assert (data["chars"], data["page_chars"], data["unit_chars"]) == (len(text), 250, 100)
    assert data["text"] == text[:250]
    q = np.frombuffer(__import__("base64").b64decode(data["units"]["0/h"]), np.uint8)
    q = q.reshape(4, 100).astype(float)
    lo, hi = np.array(data["lows"]["0/h"]), np.array(data["scales"]["0/h"])
    values = ins.states[(0, "h")][:100].astype(np.float64)
    np.testing.assert_array_equal(lo, np.minimum(0, values.min(axis=0)))    # what it spans
    np.testing.assert_array_equal(hi, np.maximum(0, values.max(axis=0)))
    decoded = (q - 128) / 127 * np.where(q < 128, -lo[:, None], hi[:, None])
    np.testing.assert_allclose(decoded.T, values, atol=0.5 / 127 * max(hi.max(), -lo.min()))


def test_colour_shows_control_characters_as_pictures():
    """A text cannot drive the terminal: its escape character is shown as the picture ␛."""
    from charrnn.tools.inspect_term import format_text

    vocab = Vocab(list("ab\x1b"))
    model = tiny_model("rnn", layers=1, vocab=vocab, seed=3, scale=3.0)
    ins = inspect_text(model, vocab, "ab\x1bab")
    shown = ANSI.sub("", format_text(ins, color=True))
    assert shown == "ab\u241bab" and format_text(ins, color=False) == "ab\x1bab"
