"""minGRU and minLSTM beyond the registry's tests: the linear recurrence's two forms against a
float64 loop, the cells at T = 10,000 in float32 against their float64 textbook step, and the
minLSTM's gate normalisation where f and i both underflow."""

import numpy as np
import pytest

from charrnn.nn import cells
from charrnn.nn.cells.scan import linear_scan, linear_scan_reverse

MIN_CELLS = [name for name in cells.NAMES if not cells.has_recurrent_weights(cells.get(name))]


def loop64(a, b, h0):
    """h_t = a_t h_{t-1} + b_t in float64, one step at a time."""
    h, out = np.asarray(h0, np.float64), []
    for t in range(len(b)):
        h = a[t].astype(np.float64) * h + b[t]
        out.append(h)
    return np.array(out).reshape(b.shape)


@pytest.mark.parametrize("form", ["loop", "blocked"])
@pytest.mark.parametrize("T", [1, 2, 5, 17, 100, 101])
def test_both_forms_of_the_scan_equal_a_float64_loop(form, T):
    rng = np.random.default_rng(T)
    a, b, h0 = rng.uniform(0, 1, (T, 3, 4)), rng.standard_normal((T, 3, 4)), rng.standard_normal((3, 4))
    expected = loop64(a, b, h0)
    np.testing.assert_allclose(linear_scan(a, b, h0, form=form), expected, rtol=1e-12, atol=1e-12)
    in_place = b.copy()
    linear_scan(a, in_place, h0, out=in_place, form=form)
    np.testing.assert_allclose(in_place, expected, rtol=1e-12, atol=1e-12)
    # the reverse: G_t = g_t + a_{t+1} G_{t+1}, G_{T-1} = g_{T-1} + dh
    g, dh = rng.standard_normal((T, 3, 4)), rng.standard_normal((3, 4))
    shifted = np.concatenate([a[1:], np.ones((1, 3, 4))])[::-1]
    expected = loop64(shifted, g[::-1], dh)[::-1]
    np.testing.assert_allclose(linear_scan_reverse(a, g, dh, form=form), expected,
                               rtol=1e-12, atol=1e-12)


def long_problem(cell, T=10_000, H=8, D=3, seed=0):
    """A batch-1 float64 problem of T steps whose gates keep a memory of ~100 steps."""
    rng = np.random.default_rng(seed)
    G = len(cells.get(cell).GATES)
    w_ih = rng.uniform(-0.5, 0.5, (G * H, D))
    b_ih = rng.uniform(-0.5, 0.5, G * H)
    b_ih[:H] += -4.0 if cell == "mingru" else 4.0     # minGRU: z small; minLSTM: f large
    x = rng.standard_normal((T, 1, D))
    return x, (rng.standard_normal((1, H)),), w_ih, b_ih, rng.standard_normal((T, 1, H))


def reference_run(module, x, state0, w_ih, b_ih, dout):
    """Forward and backward by the textbook step in float64, one step at a time."""
    state, saved, outs = state0, [], []
    for t in range(len(x)):
        new, step = module.reference_step(x[t], state, w_ih, None, b_ih, None)
        saved.append(step)
        state = new
        outs.append(state[0])
    ds, dw, db = (np.zeros_like(state0[0]),), np.zeros_like(w_ih), np.zeros_like(b_ih)
    for t in range(len(x) - 1, -1, -1):
        dgi, _, ds = module.reference_step_backward((ds[0] + dout[t],), saved[t])
        dw += dgi.T @ x[t]
        db += dgi.sum(0)
    return np.array(outs), dw, db, ds[0]


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_ten_thousand_steps_in_float32_stay_with_the_float64_loop(cell):
    """The fast kernels at batch 1 (the blocked scan, as in exact evaluation), in float32,
    against the textbook step in float64: forward outputs and every gradient."""
    module = cells.get(cell)
    x, state0, w_ih, b_ih, dout = long_problem(cell)
    out64, dw64, db64, dh64 = reference_run(module, x, state0, w_ih, b_ih, dout)
    f32 = [np.asarray(v, np.float32) for v in (x, state0[0], w_ih, b_ih, dout)]
    out, _, cache = module.forward(f32[0], (f32[1],), f32[2], None, f32[3], None)
    # float32 over 10,000 steps: each step's rounding (eps32) is damped by the next steps'
    # forget factors (< 1), so the error stays at some hundred eps32 of the largest output
    np.testing.assert_allclose(out, out64, rtol=0, atol=2e-5 * np.abs(out64).max())
    dx, (dh0,), grads = module.backward(f32[4], (np.zeros_like(f32[1]),), cache)
    for mine, theirs in [(grads["weight_ih"], dw64), (grads["bias_ih"], db64), (dh0, dh64)]:
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=2e-5 * np.abs(theirs).max())
    assert set(grads) == {"weight_ih", "bias_ih"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_minlstm_normalises_gates_that_both_underflow(dtype):
    """f = sigmoid(-200), i = sigmoid(-201): f / (f + i) is 0 / 0 in floating point, but its
    limit is sigmoid(1); the fast form gives that limit."""
    module, H = cells.get("minlstm"), 2
    w_ih = np.zeros((3 * H, 1), dtype)
    b_ih = np.array([-200, -200, -201, -201, 1.0, 2.0], dtype)
    x, h0 = np.ones((3, 1, 1), dtype), np.array([[4.0, -1.0]], dtype)
    out, _, _ = module.forward(x, (h0,), w_ih, None, b_ih, None)
    fp = 1 / (1 + np.exp(-1.0))
    h, expected = h0[0].astype(np.float64), []
    for _ in range(3):
        h = fp * h + (1 - fp) * np.array([1.0, 2.0])
        expected.append(h)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_diagnose_sees_the_gradient_carried_back_by_the_gates(cell):
    """charrnn diagnose's dL/dh_t of a 1-layer model: with only the last step's loss, each step
    back multiplies it by the forget-side gate, dL/dh_{t-1} = a_t * dL/dh_t (the textbook
    step's direct gradient)."""
    from charrnn.nn.reference import reference_forward
    from charrnn.tools.diagnose import gradient_decay
    from tests.conftest import tiny_model

    model = tiny_model(cell, layers=1, hidden=6, vocab=7, seed=4)
    ids = np.random.default_rng(5).integers(0, 7, 30)
    result = gradient_decay(model, ids, target=3)
    norms = result["layers"][0]["norms"]
    traces = [np.zeros((30, 1, 6))]
    logits, _, cache = model.forward(ids[None])
    dlogits = np.zeros_like(logits)
    dlogits[0, -1] = np.exp(logits[0, -1]) / np.exp(logits[0, -1]).sum()
    dlogits[0, -1, 3] -= 1
    model.backward(dlogits, cache, dh_traces=traces)
    _, _, (_, saved, _, _) = reference_forward(model.params.to_dict(), model.spec, ids[None],
                                            model.initial_state(1))
    trace = traces[0][:, 0]
    for t in range(29, 0, -1):
        _, _, direct = cells.get(cell).reference_step_backward((trace[t][None],), saved[0][t][1])
        np.testing.assert_allclose(trace[t - 1], direct[0][0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(norms, np.linalg.norm(trace[::-1], axis=1), rtol=1e-12)
    assert 0 < norms[-1] < norms[0]
