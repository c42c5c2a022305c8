"""The model's numbers: gradients vs finite differences, fast kernels vs the slow reference."""

import numpy as np
import pytest

from charrnn.nn import cells, ops
from charrnn.nn.reference import reference_loss_and_grads
from charrnn.tools import gradcheck
from tests.conftest import CELL_CASES, tiny_model


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_gradients_match_central_differences(cell, nonlinearity, layers, dropout):
    model = tiny_model(cell, nonlinearity, layers, dropout=dropout)
    results = gradcheck.check_model(model, batch=3, steps=10, seed=layers)
    names = {r.name for r in results}
    assert names == set(model.params.names()) | {f"state.{s}" for s in cells.get(cell).STATE}
    worst = max(results, key=lambda r: r.max_rel_error)
    assert worst.max_rel_error < 1e-6, f"{worst.name}: {worst.max_rel_error:.2e}"


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
@pytest.mark.parametrize("vocab", [12, 40])
def test_gradients_with_larger_vocabularies(cell, nonlinearity, vocab):
    """T*B = 30, E = 3. V = 12: a cells.TokenInput whose backward goes through the embedded rows
    (V > 2E); V = 40 >= T*B: layer 0 reads the embedded rows (the other tests: V = 5, one-hot)."""
    model = tiny_model(cell, nonlinearity, 2, vocab=vocab)
    worst = max(gradcheck.check_model(model, batch=3, steps=10, seed=5), key=lambda r: r.max_rel_error)
    assert worst.max_rel_error < 1e-6, f"{worst.name}: {worst.max_rel_error:.2e}"


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    """The checker is only worth something if a corrupted backward fails it."""
    real = cells.lstm.backward

    def corrupted(dout, dstate, cache, grads=None, dh_trace=None):
        dx, d0, g = real(dout, dstate, cache, grads, dh_trace)
        g["weight_hh"][0, 0] *= 1.001
        return dx, d0, g

    monkeypatch.setattr(cells.lstm, "backward", corrupted)
    results = gradcheck.check_model(tiny_model("lstm", "tanh", 1), batch=2, steps=4)
    bad = {r.name for r in results if r.max_rel_error > 1e-6}
    assert bad == {"rnn.weight_hh_l0"}


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
@pytest.mark.parametrize("layers,dropout", [(1, 0.0), (2, 0.0), (3, 0.25)])
# layer 0's input (E = 3, T*B = 48): vocab 5 a cells.TokenInput with the one-hot backward
# (V <= 2E), 20 a TokenInput with the per-row backward, 60 the embedded rows themselves
@pytest.mark.parametrize("vocab", [5, 20, 60])
def test_fast_equals_slow_reference(cell, nonlinearity, layers, dropout, vocab):
    assert_fast_equals_slow_reference(cell, nonlinearity, layers, dropout, vocab)


def assert_fast_equals_slow_reference(cell, nonlinearity, layers, dropout, vocab, **spec):
    """Loss, logits, final state and every gradient of the model equal charrnn/nn/reference.py's.
    spec: further ModelConfig fields (residual, ffn_mult)."""
    model = tiny_model(cell, nonlinearity, layers, dropout=dropout, seed=3, vocab=vocab, **spec)
    ids, targets, state0, dstate = gradcheck.make_problem(model, batch=4, steps=12, seed=7)
    rng = np.random.default_rng(11)
    loss, final, cache = model.loss(ids, targets, state0, train=True, rng=rng)
    logits, _, _ = model.forward(ids, state0, train=True, rng=np.random.default_rng(11))
    _, _, dstate0 = model.loss_and_grad(ids, targets, state0, train=True,
                                        rng=np.random.default_rng(11), dstate=dstate)
    ref = reference_loss_and_grads(model.params.to_dict(), model.spec, ids, targets, state0,
                                   masks=cache["masks"], dstate=dstate)
    ref_loss, ref_logits, ref_final, ref_grads, ref_dstate0 = ref
    total = loss + sum(float((d * s).sum()) for d, s in zip(dstate, final))
    assert abs(total - ref_loss) < 1e-10
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=1e-10)
    for mine, theirs in zip(final, ref_final):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-10)
    for name in model.params.names():
        np.testing.assert_allclose(model.grads[name], ref_grads[name], rtol=0, atol=1e-10,
                                   err_msg=name)
    for mine, theirs in zip(dstate0, ref_dstate0):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
def test_state_carries_across_calls(cell, nonlinearity):
    """Two halves with the state carried give exactly the logits of one whole pass."""
    model = tiny_model(cell, nonlinearity, 2, seed=1)
    ids = np.random.default_rng(0).integers(0, 5, (3, 16))
    whole, final_whole, _ = model.forward(ids)
    first, mid, _ = model.forward(ids[:, :9])
    second, final_split, _ = model.forward(ids[:, 9:], mid)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-12)
    for a, b in zip(final_whole, final_split):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_dropout_is_off_in_eval_and_scaled_in_training():
    model = tiny_model("lstm", "tanh", 2, dropout=0.5)
    ids = np.random.default_rng(0).integers(0, 5, (2, 6))
    a, _, _ = model.forward(ids)
    b, _, _ = model.forward(ids)
    np.testing.assert_array_equal(a, b)
    _, _, cache = model.forward(ids, train=True, rng=np.random.default_rng(0))
    mask = cache["masks"][0]
    assert set(np.unique(mask)) == {0.0, 2.0}


def test_float32_stays_float32():
    model = tiny_model("gru", "tanh", 2, dtype=np.float32)
    ids = np.random.default_rng(0).integers(0, 5, (2, 6))
    logits, state, _ = model.forward(ids)
    model.loss_and_grad(ids, ids, train=False)
    assert logits.dtype == np.float32 and state[0].dtype == np.float32
    assert model.grads.flat.dtype == np.float32
    assert np.isfinite(model.grads.flat).all() and np.abs(model.grads.flat).sum() > 0


def test_initialisation_options():
    H = 4
    lstm = tiny_model("lstm", "tanh", 2, forget_bias=1.0, seed=5)
    plain = tiny_model("lstm", "tanh", 2, forget_bias=0.0, seed=5)
    diff = lstm.params["rnn.bias_ih_l1"] - plain.params["rnn.bias_ih_l1"]
    np.testing.assert_allclose(diff, np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)], atol=1e-15)
    bound = 1 / np.sqrt(H)
    assert np.abs(plain.params["rnn.weight_hh_l0"]).max() <= bound

    irnn = tiny_model("rnn", "relu", 1, init="identity", identity_scale=0.5)
    np.testing.assert_array_equal(irnn.params["rnn.weight_hh_l0"], 0.5 * np.eye(H))
    assert not irnn.params["rnn.bias_ih_l0"].any() and not irnn.params["rnn.bias_hh_l0"].any()

    orth = tiny_model("gru", "tanh", 1, init="orthogonal")
    w = orth.params["rnn.weight_hh_l0"]
    for g in range(3):
        block = w[g * H:(g + 1) * H]
        np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-12)


def test_parameter_names_and_shapes_are_pytorchs():
    model = tiny_model("gru", layers=2, hidden=7, embed=3, vocab=11, dtype=np.float32)
    shapes = {name: v.shape for name, v in model.params.items()}
    assert shapes == {
        "embedding.weight": (11, 3),
        "rnn.weight_ih_l0": (21, 3), "rnn.weight_hh_l0": (21, 7),
        "rnn.bias_ih_l0": (21,), "rnn.bias_hh_l0": (21,),
        "rnn.weight_ih_l1": (21, 7), "rnn.weight_hh_l1": (21, 7),
        "rnn.bias_ih_l1": (21,), "rnn.bias_hh_l1": (21,),
        "decoder.weight": (11, 7), "decoder.bias": (11,),
    }


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
def test_hidden_gradient_trace_is_the_state_gradient(cell, nonlinearity):
    """dh_traces[k][t] is dL/dh_t of layer k.

    With the loss restricted to steps after t, dL/dh_t of the top layer equals the gradient
    w.r.t. the initial state of a run that starts from the state after step t.
    """
    model = tiny_model(cell, nonlinearity, 2, seed=2)
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 5, (2, 6)), rng.integers(0, 5, (2, 6))
    t = 3
    _, _, cache = model.loss(ids, targets)
    dlogits = ops.softmax_cross_entropy_backward(cache.pop("probs"), cache["targets"])
    dlogits.reshape(6, 2, -1)[:t + 1] = 0          # only steps t+1 .. 5 contribute
    traces = [np.zeros((6, 2, 4)) for _ in range(2)]
    model._backward_tm(dlogits, cache, None, traces)

    _, mid, _ = model.forward(ids[:, :t + 1])
    _, _, d0 = model.loss_and_grad(ids[:, t + 1:], targets[:, t + 1:], mid, train=False)
    weight = (6 - t - 1) / 6                         # tail mean is over fewer characters
    np.testing.assert_allclose(traces[1][t], d0[0][1] * weight, atol=1e-12)
    assert np.abs(traces[0][t]).sum() > 0           # the lower layer was traced too


def test_loss_backward_scale_scales_the_gradient_only():
    model = tiny_model("lstm", "tanh", 2, vocab=7)
    ids, targets, state0, _ = gradcheck.make_problem(model, batch=3, steps=6, seed=4)
    loss, final, d0 = model.loss_and_grad(ids, targets, state0, train=False)
    full = {name: model.grads[name].copy() for name in model.params.names()}
    loss_w, final_w, cache = model.loss(ids, targets, state0, train=False)
    d0_w = model.loss_backward(cache, scale=0.3)
    assert loss_w == loss                       # the loss reported is not weighted
    for a, b in zip(final, final_w):
        np.testing.assert_array_equal(a, b)
    for name in model.params.names():
        np.testing.assert_allclose(model.grads[name], 0.3 * full[name], rtol=1e-12, atol=1e-15)
    for a, b in zip(d0, d0_w):
        np.testing.assert_allclose(b, 0.3 * a, rtol=1e-12, atol=1e-15)
