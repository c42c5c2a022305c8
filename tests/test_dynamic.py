"""Dynamic evaluation (charrnn/infer/dynamic.py; Krause et al. 2017): the same numbers as the
static pass when nothing moves, the model's own gradient, the paper's update, and no character
scored by weights that saw it. CLI: `eval --dynamic`, `inspect --dynamic`, bad settings.

Tolerances: equalities that run the same operations are exact (==); comparisons of different
operations on the same numbers use a bound from the dtype's epsilon (see each test).
"""

import json
import math

import numpy as np
import pytest

from charrnn.infer.dynamic import (
    SEGMENT,
    Rule,
    dynamic_ids,
    dynamic_pass,
    segment_grad,
    segment_step,
)
from charrnn.infer.dynamic_fit import adam_ms, fit_settings, gradient_ms
from charrnn.infer.evaluate import char_nll, evaluate_ids
from tests.conftest import TINY_TEXT, TINY_VOCAB, run_cli, save_tiny_checkpoint, tiny_model


def _ids(n, vocab=5, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, n)


def _ms(model, seed=1):
    """A positive MS vector of the model's size, spread over two orders of magnitude."""
    return 10.0 ** np.random.default_rng(seed).uniform(-3, -1, model.params.size)


# -- eta = 0 is the static pass -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["rms", "sgd"])
def test_eta_zero_equals_static_eval(dtype, kind):
    model = tiny_model(layers=2, hidden=8, embed=4, vocab=7, dtype=dtype, scale=2.0)
    ids = _ids(203, vocab=7)
    theta = model.params.flat.copy()
    rule = Rule(kind, 0.0, 0.3, _ms(model) if kind == "rms" else None).bind(model)
    total, n = dynamic_ids(model, ids, rule, segment=5)
    # the weights never moved: the decay term is lambda * (theta0 - theta) = 0 exactly
    assert np.array_equal(model.params.flat, theta)
    # the static pass read in chunks of the segment runs the same operations: the same bits
    same, n_static = evaluate_ids(model, ids, chunk_len=5, pipeline=False)
    assert n == n_static == len(ids) - 1
    assert total == same
    # eval's default chunks (1024) block the products differently: the per-step sums of
    # D <= 8 products round differently, a few eps of each logit, so the mean loss agrees to
    # within a small multiple of eps (64: headroom for the carried state's propagation)
    static, _ = evaluate_ids(model, ids, pipeline=False)
    eps = np.finfo(dtype).eps
    assert abs(total - static) / n <= 64 * eps * max(1.0, static / n)


# -- the segment gradient is the model's ----------------------------------------------------------

def test_segment_gradient_is_the_training_gradient():
    model = tiny_model(layers=2, hidden=5, embed=3, vocab=6, dtype=np.float64, scale=1.5)
    ids = _ids(6, vocab=6, seed=3)
    state = tuple(np.random.default_rng(4).standard_normal((2, 1, 5)) for _ in range(2))
    logits, nll, _, cache = segment_step(model, ids, state)
    g = segment_grad(model, logits, cache, ids[1:]).flat.copy()
    # the training step's own call on the same segment and state, dropout off: the same bits
    loss, _, _ = model.loss_and_grad(ids[None, :-1], ids[None, 1:], state, train=False)
    assert np.array_equal(g, model.grads.flat)
    assert nll.mean() == pytest.approx(loss, rel=4 * np.finfo(np.float64).eps)
    # and float64 central differences of the mean nll along random directions: truncation
    # O(h^2) ~ 1e-10 and rounding eps / h ~ 1e-11 relative, so 1e-6 is loose
    h, theta = 1e-5, model.params.flat.copy()
    for seed in range(3):
        u = np.random.default_rng(10 + seed).standard_normal(theta.size)
        f = []
        for sign in (1, -1):
            model.params.flat[...] = theta + sign * h * u
            lg, _, _ = model.forward(ids[None, :-1], state)
            f.append(char_nll(lg[0], ids[1:]).mean())
        model.params.flat[...] = theta
        assert (f[0] - f[1]) / (2 * h) == pytest.approx(g @ u, rel=1e-6)


def test_update_is_the_papers_rule():
    model = tiny_model(layers=1, hidden=4, embed=3, vocab=5, dtype=np.float64)
    ms, eta, lam, epsilon = _ms(model), 0.01, 0.2, 0.05
    rule = Rule("rms", eta, lam, ms, epsilon).bind(model)
    theta0 = model.params.flat.copy()
    model.params.flat[...] += np.random.default_rng(2).standard_normal(theta0.size) * 0.1
    theta = model.params.flat.copy()
    g = np.random.default_rng(3).standard_normal(theta0.size)
    model.grads.flat[...] = g
    rule.update(model)
    mean = ms.mean()
    decay = np.minimum(ms / mean, 1 / lam)
    step, pull = eta * g / (ms + epsilon * mean), lam * decay * (theta0 - theta)
    _close(model.params.flat, theta, step, pull)
    # no weight is pulled past theta0: lambda * decay <= 1 everywhere
    assert (rule.pull <= 1).all() and (rule.pull == lam * decay).all()
    sgd = Rule("sgd", eta, lam).bind(model)
    model.params.flat[...] = theta
    model.grads.flat[...] = g
    sgd.update(model)
    _close(model.params.flat, theta, eta * g, lam * (sgd.theta0 - theta))


def _close(got, theta, step, pull):
    """got == theta - step + pull to float64 rounding: a few operations, each off by at most
    eps of its operands' magnitude (the result itself may be small: cancellation)."""
    bound = 8 * np.finfo(np.float64).eps * (np.abs(theta) + np.abs(step) + np.abs(pull))
    assert (np.abs(got - (theta - step + pull)) <= bound).all()


# -- no character is scored by weights that saw it ------------------------------------------------

def _predictions(model, ids, rule, segment):
    """[N - 1, V] log-probabilities of every target, as the dynamic pass scored it."""
    theta = model.params.flat.copy()
    rows = [lg - np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1, keepdims=True))
            - lg.max(1, keepdims=True) for _, lg, _ in dynamic_pass(model, ids, rule, segment)]
    model.params.flat[...] = theta
    return np.concatenate(rows)


def _leaky_predictions(model, ids, rule, segment):
    """The wrong order (update on a segment, then score it): what the test must catch."""
    theta, rows, state = model.params.flat.copy(), [], None
    for start in range(0, len(ids) - 1, segment):
        piece = ids[start:start + segment + 1]
        logits, _, _, cache = segment_step(model, piece, state)
        segment_grad(model, logits, cache, piece[1:])
        rule.update(model)
        logits, _, state, _ = segment_step(model, piece, state)
        rows.append(logits - np.log(np.exp(logits).sum(1, keepdims=True)))
    model.params.flat[...] = theta
    return np.concatenate(rows)


@pytest.mark.parametrize("predict", [_predictions, _leaky_predictions])
def test_a_segment_is_scored_before_its_update(predict):
    """Change only the last target of segment k (ids[b], b = (k + 1) n): every prediction up to
    and including that of ids[b] must be bit-identical, and the next one must change (the
    update after segment k saw ids[b]). The leaky order fails the first check."""
    n, k = 5, 3
    model = tiny_model(layers=2, hidden=6, embed=3, vocab=5, dtype=np.float64, scale=2.0)
    rule = Rule("sgd", 0.5, 0.0).bind(model)
    a = _ids(60, vocab=5, seed=7)
    b = a.copy()
    pos = (k + 1) * n
    b[pos] = (a[pos] + 1) % 5
    pa, pb = predict(model, a, rule, n), predict(model, b, rule, n)
    row = pos - 1                                  # row t predicts ids[t + 1]
    if predict is _leaky_predictions:
        assert not np.array_equal(pa[:row + 1], pb[:row + 1])
        return
    assert np.array_equal(pa[:row + 1], pb[:row + 1])
    assert not np.array_equal(pa[row + 1], pb[row + 1])


def test_a_repeated_text_gains_only_from_what_it_has_read():
    """R + R with R uniform random over V symbols. Before R has been read no predictor can
    beat ln V on it on average (Jensen: E[-log p(x)] >= ln V for a uniform x independent of
    the past), so the first half's dynamic loss stays at ln V or above; the static model scores
    both halves alike; the dynamic one gains on the second half only, by what it learnt
    reading the first (a leak would show as a gain on the first half)."""
    V, half = 20, 100
    model = tiny_model(layers=1, hidden=64, embed=16, vocab=V, dtype=np.float64, scale=2.0)
    r = _ids(half, vocab=V, seed=11)
    ids = np.concatenate([r, r])
    static, nll = (np.concatenate([x for _, _, x in dynamic_pass(model, ids, rule.bind(model))])
                   for rule in (Rule("sgd", 0, 0), Rule("sgd", 1.0, 0)))
    first, second = slice(0, half - 1), slice(half - 1, None)
    gain = static - nll
    se = 5 * gain.std() / math.sqrt(half)                      # 5 standard errors of a half's mean
    assert nll[first].mean() >= math.log(V) - 5 * nll[first].std() / math.sqrt(half)
    assert abs(static[second].mean() - static[first].mean()) < 0.01
    assert gain[first].mean() < se                             # nothing to gain before reading R
    assert gain[second].mean() > gain[first].mean() + 0.3      # it learnt R while reading it


# -- MS and the fit -------------------------------------------------------------------------------

def test_gradient_ms_is_the_rms_of_segment_gradients():
    model = tiny_model(layers=1, hidden=4, embed=3, vocab=5, dtype=np.float64)
    ids = _ids(31, vocab=5, seed=5)
    ms = gradient_ms(model, ids, segment=5, windows=1, window_chars=31)
    squares, state = [], None
    for s in range(0, 30, 5):
        logits, _, state, cache = segment_step(model, ids[s:s + 6], state)
        squares.append(segment_grad(model, logits, cache, ids[s + 1:s + 6]).flat ** 2)
    np.testing.assert_allclose(ms, np.sqrt(np.mean(squares, axis=0)), rtol=1e-12)


def test_adam_ms_reads_the_checkpoints_second_moment():
    model = tiny_model(layers=1, hidden=4, embed=3, vocab=5)
    v = {f"optim.exp_avg_sq.{name}": np.full(view.shape, 4.0)
         for name, view in model.params.items()}
    np.testing.assert_allclose(adam_ms(v, model, steps=1, beta2=0.75),
                               np.full(model.params.size, 4.0))
    assert adam_ms({}, model) is None


def test_fit_restores_the_weights_and_reports_every_trial():
    model = tiny_model(layers=1, hidden=8, embed=3, vocab=5, dtype=np.float64)
    theta = model.params.flat.copy()
    eta, lam, rows = fit_settings(model, np.tile(_ids(20, seed=2), 4), "sgd", 0.1, 0.01, None, 5,
                                  0.01)
    assert np.array_equal(model.params.flat, theta)
    assert len(rows) == 5 + 3 and {"eta", "lambda", "loss"} <= set(rows[0])
    assert min(rows, key=lambda r: r["loss"])["eta"] == eta


# -- the command line -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny LSTM checkpoint whose config's data.path is a training text the test wrote."""
    from charrnn.store.checkpoint import save_checkpoint
    from tests.conftest import tiny_run

    folder = tmp_path_factory.mktemp("dyn")
    (folder / "train.txt").write_text(TINY_TEXT, encoding="utf-8")
    (folder / "text.txt").write_text(TINY_TEXT, encoding="utf-8")
    net, cfg = tiny_run(TINY_VOCAB, layers=2, hidden=12, embed=5, seed=1, scale=2.5)
    cfg.data.path = str(folder / "train.txt")
    save_checkpoint(str(folder / "m.safetensors"), net, TINY_VOCAB, cfg)
    return folder


def test_eval_dynamic_json(run):
    result = run_cli("eval", run / "m.safetensors", run / "text.txt", "--dynamic", "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    static = json.loads(run_cli("eval", run / "m.safetensors", run / "text.txt",
                                "--json").stdout)
    assert r["static_loss"] == pytest.approx(static["loss"], rel=1e-12)
    assert r["chars_scored"] == len(TINY_TEXT) - 1 and r["ms_source"] == "train"
    assert r["rule"] == "rms" and r["segment"] == SEGMENT
    assert r["gain"] == pytest.approx(r["static_loss"] - r["loss"])
    assert r["loss"] < r["static_loss"]          # a text that repeats four times
    zero = json.loads(run_cli("eval", run / "m.safetensors", run / "text.txt", "--dynamic",
                              "--eta", "0", "--json").stdout)
    assert zero["loss"] == pytest.approx(static["loss"], rel=64 * float(np.finfo(np.float32).eps))


def test_eval_dynamic_fit_scores_only_the_rest(run):
    result = run_cli("eval", run / "m.safetensors", run / "text.txt", "--dynamic", "--fit",
                     "--rule", "sgd", "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["fit"]["chars"] + r["chars_scored"] == len(TINY_TEXT) - 1
    assert {(row["eta"], row["lambda"]) for row in r["fit"]["rows"]} >= {(r["eta"], r["lambda"])}
    text = run_cli("eval", run / "m.safetensors", run / "text.txt", "--dynamic", "--ms", "adam",
                   "--rule", "sgd")
    assert text.exit_code == 0 and "dynamic loss:" in text.stdout and "gain:" in text.stdout


@pytest.mark.parametrize("args, words", [
    (["--eta", "-1"], "--eta"),
    (["--lambda", "2"], "--lambda"),
    (["--segment", "0"], "--segment"),
    (["--epsilon", "0"], "--epsilon"),
    (["--ms", "adam"], "Adam"),
    (["--fit-on", "{text}"], "--fit"),
])
def test_a_bad_setting_is_one_line_and_status_2(run, args, words):
    args = [a.format(text=run / "text.txt") for a in args]
    result = run_cli("eval", run / "m.safetensors", run / "text.txt", "--dynamic", *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("charrnn: error:")


def test_inspect_dynamic_terminal_json_and_page(run, tmp_path):
    json_out = run_cli("inspect", run / "m.safetensors", run / "text.txt", "--dynamic", "--json")
    assert json_out.exit_code == 0, json_out.output
    data = json.loads(json_out.stdout)
    assert len(data["dynamic_surprisal"]) == len(TINY_TEXT) and data["dynamic_surprisal"][0] is None
    r = json.loads(run_cli("eval", run / "m.safetensors", run / "text.txt", "--dynamic",
                           "--json").stdout)
    assert data["dynamic"]["bits_per_char"] == pytest.approx(r["bits_per_char"], rel=1e-6)
    assert data["bits_per_char"] == pytest.approx(r["static_loss"] / math.log(2), rel=1e-6)
    term = run_cli("inspect", run / "m.safetensors", run / "text.txt", "--dynamic", "--no-color")
    assert term.exit_code == 0 and "dynamic evaluation:" in term.stdout
    assert "| the cat sat on the mat." in term.stdout
    page = tmp_path / "p.html"
    out = run_cli("inspect", run / "m.safetensors", run / "text.txt", "--dynamic", "--html", page)
    assert out.exit_code == 0 and '"dynamic_surprisal"' in page.read_text(encoding="utf-8")


# -- documents mode -------------------------------------------------------------------------------

def test_documents_each_from_a_zero_state_and_reset_goes_back_to_theta0():
    from charrnn.infer.dynamic import dynamic_documents
    from charrnn.infer.evaluate import evaluate_documents

    model = tiny_model(layers=2, hidden=6, embed=3, vocab=6, dtype=np.float64, scale=2.0)
    eod = 5
    docs = [_ids(n, vocab=5, seed=n) for n in (7, 12, 3)]
    ids = np.concatenate([[eod]] + [np.r_[d, eod] for d in docs])
    static, counts = evaluate_documents(model, ids, eod)
    nll, got = dynamic_documents(model, ids, eod, Rule("sgd", 0.0, 0.0).bind(model), 5)
    assert np.array_equal(got, counts)
    np.testing.assert_allclose(nll, static, rtol=64 * np.finfo(np.float64).eps)
    # with reset, each document is scored as if it were the only one
    rule = Rule("sgd", 0.5, 0.0).bind(model)
    theta = model.params.flat.copy()
    reset, _ = dynamic_documents(model, ids, eod, rule, 5, reset=True)
    for i, d in enumerate(docs):
        model.params.flat[...] = theta
        alone = dynamic_ids(model, np.r_[eod, d, eod], rule, 5)[0]
        assert reset[i] == alone
    model.params.flat[...] = theta
    carried, _ = dynamic_documents(model, ids, eod, rule, 5, reset=False)
    assert carried[0] == reset[0] and carried[1] != reset[1]


def test_eval_dynamic_on_a_documents_model(tmp_path):
    from charrnn.store.checkpoint import save_checkpoint
    from charrnn.store.vocab import EOD, Vocab
    from tests.conftest import tiny_run

    names = "anna\nbob\ncarla\nanna\ndora\n"
    vocab = Vocab.from_text(names, eod=EOD)
    net, cfg = tiny_run(vocab, layers=1, hidden=8, embed=3, seed=2, scale=2.0)
    cfg.data.documents = "lines"
    save_checkpoint(str(tmp_path / "m.safetensors"), net, vocab, cfg)
    (tmp_path / "names.txt").write_text(names, encoding="utf-8")
    static = json.loads(run_cli("eval", tmp_path / "m.safetensors", tmp_path / "names.txt",
                                "--json").stdout)
    runs = {}
    for flag in ("", "--reset-weights", "--carry-weights"):
        out = run_cli("eval", tmp_path / "m.safetensors", tmp_path / "names.txt", "--dynamic",
                      "--rule", "sgd", "--json", *([flag] if flag else []))
        assert out.exit_code == 0, out.output
        runs[flag] = json.loads(out.stdout)
    for r in runs.values():
        assert r["static_loss"] == pytest.approx(static["loss"], rel=1e-12)
        assert r["chars_scored"] == static["chars_scored"] == len(names)
    assert runs[""] == {**runs["--carry-weights"], "chars_per_s": runs[""]["chars_per_s"],
                        "static_chars_per_s": runs[""]["static_chars_per_s"]}   # the default
    assert runs["--reset-weights"]["reset_weights_per_document"]
    assert not runs["--carry-weights"]["reset_weights_per_document"]
    assert runs["--reset-weights"]["loss"] != runs["--carry-weights"]["loss"]
    fit = run_cli("eval", tmp_path / "m.safetensors", tmp_path / "names.txt", "--dynamic", "--fit")
    assert fit.exit_code == 2 and "--fit" in fit.stderr


def test_ms_auto_prefers_adams_state_and_names_what_is_missing():
    from charrnn.infer.dynamic import DynamicError
    from charrnn.infer.dynamic_eval import pick_ms

    model = tiny_model(layers=1, hidden=4, embed=3, vocab=5)
    adam = {f"optim.exp_avg_sq.{name}": np.full(view.shape, 1.0)
            for name, view in model.params.items()}
    ids = _ids(40, vocab=5)
    assert pick_ms(model, "auto", ids, adam, 10, 5)[1] == "adam"
    assert pick_ms(model, "auto", ids, {}, 10, 5)[1] == "train"
    assert pick_ms(model, "train", ids, adam, 10, 5)[1] == "train"
    for source, train, optim, words in (("adam", ids, {}, "Adam's state"),
                                        ("train", None, adam, "training text"),
                                        ("auto", None, {}, "--rule sgd")):
        with pytest.raises(DynamicError, match=words):
            pick_ms(model, source, train, optim, 10, 5)
