"""The cell registry's contract: every registered cell is tested here by being registered.

For each cell (and each of its nonlinearities): the module has everything the registry promises,
parameter names and shapes follow PyTorch's nn.RNN / nn.GRU / nn.LSTM scheme, one layer's
sequence kernels equal the cell's textbook step run in a loop, the backward passes a float64
finite-difference check, the batch-1 step equals the sequence forward, and a model of the cell
trains, saves and samples through the command line; each brings its JavaScript step (<cell>.js).
"""

import os
import re
import types

import numpy as np
import pytest

from charrnn.config import CHOICES
from charrnn.nn import cells
from charrnn.nn.cells import contract, lstm
from charrnn.nn.model import parameter_shapes
from charrnn.nn.stepper import Stepper
from charrnn.tools import gradcheck
from tests.conftest import CELL_CASES, tiny_model

ids_of = pytest.mark.parametrize("cell,nonlinearity", CELL_CASES,
                                 ids=["-".join(case) for case in CELL_CASES])


@pytest.mark.parametrize("name", list(cells.CELLS))
def test_a_cell_module_has_what_the_registry_promises(name):
    module = cells.get(name)
    assert isinstance(module, contract.Cell) and isinstance(module, contract.BatchOneStep)
    assert module.STATE[0] == "h" and len(set(module.STATE)) == len(module.STATE)
    assert len(module.GATES) >= 1 and len(set(module.GATES)) == len(module.GATES)
    assert name in CHOICES["model.cell"]          # the config (and so the CLI) offers it


@pytest.mark.parametrize("name", list(cells.CELLS))
def test_a_cell_brings_its_javascript_step_for_the_exported_page(name):
    """<cell>.js beside the module registers the cell's step under its name, with its STATE
    (the browser tests, tests/test_export_browser.py, check its numbers)."""
    module = cells.get(name)
    path = cells.script_path(module)
    assert os.path.isfile(path), f"{name} lacks its JavaScript step {path} (docs/adding-a-cell.md)"
    with open(path, encoding="utf-8") as f:
        script = f.read()
    assert re.search(rf"^CELL_STEPS\.{name} = {{$", script, re.M), f"{path} does not register {name}"
    state = re.search(r"^  state: \[(.*)\],$", script, re.M)
    assert state and [s.strip(' "') for s in state.group(1).split(",")] == list(module.STATE)


def test_the_contract_names_what_a_cell_module_lacks():
    """A module missing part of the core or of the fast path is refused as it is registered."""
    lstm = cells.get("lstm")
    partial = types.ModuleType("halfcell")
    partial.__dict__.update({k: v for k, v in vars(lstm).items()
                             if k not in ("backward", "step_body", "STATE")})
    with pytest.raises(contract.CellContractError,
                       match="^the cell module halfcell lacks STATE, backward, step_body "):
        contract.check("halfcell", partial)
    assert contract.check("lstm", lstm) is lstm
    assert set(contract.members(contract.Cell)) >= {"GATES", "STATE", "forward", "backward"}


def test_an_unknown_cell_is_one_clear_error():
    known = ", ".join(cells.NAMES)
    with pytest.raises(ValueError, match=f"^unknown cell 'nosuchcell'; expected one of {known}$"):
        cells.get("nosuchcell")


@pytest.mark.parametrize("name", list(cells.CELLS))
def test_parameter_names_and_shapes_are_pytorchs(name):
    """torch.nn.RNN / GRU / LSTM name their weights weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k},
    bias_hh_l{k} with G*H rows; the model wraps them as `rnn.` between embedding and decoder."""
    spec = tiny_model(name).spec
    spec.layers, spec.hidden_size, spec.embed_size = 3, 7, 5
    shapes = parameter_shapes(11, spec)
    G, weights = len(cells.get(name).GATES), cells.weights_of(cells.get(name))
    assert weights[0] == "weight_ih" and set(weights) <= set(cells.LAYER_WEIGHTS)
    expected = {"embedding.weight": (11, 5), "decoder.weight": (11, 7), "decoder.bias": (11,)}
    for k in range(3):
        layer = {f"rnn.weight_ih_l{k}": (G * 7, 5 if k == 0 else 7),
                 f"rnn.weight_hh_l{k}": (G * 7, 7),
                 f"rnn.bias_ih_l{k}": (G * 7,), f"rnn.bias_hh_l{k}": (G * 7,)}
        expected.update({n: shape for n, shape in layer.items() if n.split("_l")[0][4:] in weights})
    assert shapes == expected
    assert all(re.fullmatch(r"embedding\.weight|decoder\.(weight|bias)|"
                            r"rnn\.(weight|bias)_(ih|hh)_l\d+", n) for n in shapes)


def layer_problem(cell, seed=0, T=7, B=3, D=4, H=5):
    rng = np.random.default_rng(seed)
    G, weights = len(cells.get(cell).GATES), cells.weights_of(cells.get(cell))
    w = [rng.uniform(-0.6, 0.6, shape) if name in weights else None     # None: not the cell's
         for name, shape in zip(cells.LAYER_WEIGHTS, ((G * H, D), (G * H, H), (G * H,), (G * H,)))]
    x = rng.standard_normal((T, B, D))
    state0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in cells.get(cell).STATE)
    dout = rng.standard_normal((T, B, H))
    dstate = tuple(rng.standard_normal((B, H)) for _ in state0)
    return x, state0, w, dout, dstate


@ids_of
@pytest.mark.parametrize("T,B", [(7, 3), (3, 1)])     # (3, 1): a short batch-1 segment
def test_one_layer_equals_its_textbook_step_in_a_loop(cell, nonlinearity, T, B):
    """forward and backward of one layer against reference_step / reference_step_backward."""
    module = cells.get(cell)
    x, state0, (w_ih, w_hh, b_ih, b_hh), dout, dstate = layer_problem(cell, T=T, B=B)
    out, final, cache = module.forward(x, state0, w_ih, w_hh, b_ih, b_hh,
                                       nonlinearity=nonlinearity)
    state, saved = state0, []
    for t in range(x.shape[0]):
        new, step = module.reference_step(x[t], state, w_ih, w_hh, b_ih, b_hh,
                                          nonlinearity=nonlinearity)
        saved.append((state, step))
        state = new
        np.testing.assert_allclose(out[t], state[0], rtol=0, atol=1e-12)
    for mine, theirs in zip(final, state):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-12)

    dx, dstate0, grads = module.backward(dout, dstate, cache)
    ref = {k: np.zeros_like(v) for k, v in zip(cells.LAYER_WEIGHTS, (w_ih, w_hh, b_ih, b_hh))
           if v is not None}
    ds, ref_dx = dstate, np.zeros_like(x)
    for t in range(x.shape[0] - 1, -1, -1):
        (h_prev, *_), step = saved[t]
        dgi, dgh, direct = module.reference_step_backward((ds[0] + dout[t],) + ds[1:], step)
        ref["weight_ih"] += dgi.T @ x[t]
        ref["bias_ih"] += dgi.sum(0)
        ref_dx[t] = dgi @ w_ih
        if w_hh is None:                          # no recurrent product: dh is all direct
            ds = tuple(direct)
            continue
        ref["weight_hh"] += dgh.T @ h_prev
        ref["bias_hh"] += dgh.sum(0)
        ds = (dgh @ w_hh + direct[0],) + tuple(direct[1:])
    np.testing.assert_allclose(dx, ref_dx, rtol=0, atol=1e-10)
    for mine, theirs in zip(dstate0, ds):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-10)
    assert set(grads) == set(ref)
    for name in ref:
        np.testing.assert_allclose(grads[name], ref[name], rtol=0, atol=1e-10, err_msg=name)


@ids_of
def test_one_layer_backward_matches_finite_differences(cell, nonlinearity):
    """The textbook step is itself checked: <dout, out> + <dstate, final> differentiated
    numerically, with respect to every weight and the initial state."""
    module = cells.get(cell)
    x, state0, weights, dout, dstate = layer_problem(cell, seed=1, T=5)

    def objective():
        out, final, cache = module.forward(x, state0, *weights, nonlinearity=nonlinearity)
        value = float((dout * out).sum()) + sum(float((d * s).sum()) for d, s in zip(dstate, final))
        return value, module.kinks(cache)

    _, _, cache = module.forward(x, state0, *weights, nonlinearity=nonlinearity)
    dx, dstate0, grads = module.backward(dout, dstate, cache)
    present = [(w, grads[n]) for w, n in zip(weights, cells.LAYER_WEIGHTS) if w is not None]
    for array, grad in [*present, (x, dx), *zip(state0, dstate0)]:
        numeric = gradcheck.numeric_gradient(objective, array)
        assert gradcheck.relative_error(grad, numeric) < 1e-6


@ids_of
@pytest.mark.parametrize("layers", [1, 2])
def test_the_model_of_each_cell_passes_the_gradient_check(cell, nonlinearity, layers):
    results = gradcheck.check_model(tiny_model(cell, nonlinearity, layers, dropout=0.2),
                                    batch=2, steps=6, seed=layers)
    assert {r.name for r in results} >= {f"state.{s}" for s in cells.get(cell).STATE}
    worst = max(results, key=lambda r: r.max_rel_error)
    assert worst.max_rel_error < 1e-6, f"{worst.name}: {worst.max_rel_error:.2e}"


@ids_of
def test_the_batch_1_step_equals_the_sequence_forward(cell, nonlinearity):
    model = tiny_model(cell, nonlinearity, 3, hidden=6, vocab=7, seed=2)
    ids = np.random.default_rng(3).integers(0, 7, 20)
    logits, final, _ = model.forward(ids[None])
    stepper = Stepper(model)
    for t, token in enumerate(ids):
        np.testing.assert_allclose(stepper.step(int(token)), logits[0, t], rtol=0, atol=1e-10)
    for mine, theirs in zip(stepper.get_state(), final):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-10)
    stepper.reset(final)                                   # and a given state is taken back
    for mine, theirs in zip(stepper.get_state(), final):
        np.testing.assert_array_equal(mine, theirs)


@ids_of
def test_each_cell_trains_saves_and_samples_from_the_command_line(cell, nonlinearity, corpus,
                                                                   tmp_path):
    from click.testing import CliRunner

    from charrnn.cli import cli
    settings = {"model.cell": cell, "model.nonlinearity": nonlinearity,
                "model.hidden_size": 8, "model.embed_size": 4, "train.batch_size": 4,
                "train.seq_len": 8, "train.max_steps": 4, "train.eval_every": 2,
                "train.out_dir": tmp_path / "run", "train.threads": 1}
    args = [a for key, value in settings.items() for a in ("--set", f"{key}={value}")]
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--data", str(corpus), "-q", *args])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["sample", str(tmp_path / "run"), "-n", "30", "--seed", "1"])
    assert result.exit_code == 0, result.output
    sample = result.stdout
    assert len(sample) >= 30 and set(sample) <= set(corpus.read_text(encoding="utf-8"))


@pytest.mark.parametrize("T,B", [(3, 1), (7, 3)])
def test_lstm_halves_weights_or_activations_with_the_same_bits(monkeypatch, T, B):
    """The sigmoid gates' halving (exact in binary floating point) on the weights or on each
    step's activations: the same output, bit for bit."""
    x, state0, w, _, _ = layer_problem("lstm", T=T, B=B)
    runs = []
    for on_activations in (True, False):
        monkeypatch.setattr(lstm, "scales_activations", lambda *_, a=on_activations: a)
        out, final, _ = lstm.forward(x, state0, *w)
        runs.append((out, *final))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
