"""model.residual and model.ffn_mult: the residual connection between layers and the feed-forward
block after each layer (docs/min-cells.md), in every place that walks the layer stack."""

import numpy as np
import pytest

from charrnn.config import Config, ConfigError, ModelConfig, validate_config
from charrnn.infer.evaluate import can_fork, evaluate_ids
from charrnn.nn.model import CharRNN
from charrnn.nn.stepper import Stepper
from charrnn.tools import gradcheck
from tests.conftest import CELL_CASES, tiny_model
from tests.test_model import assert_fast_equals_slow_reference

BLOCKS = dict(residual=True, ffn_mult=2)


# the blocks' code is the same for every cell: the min cells they are for, and the relu rnn
# (its kinks beside the block's); the reference test below covers every cell
@pytest.mark.parametrize("cell,nonlinearity", [("mingru", "tanh"), ("minlstm", "tanh"),
                                               ("rnn", "relu")])
def test_gradients_match_central_differences(cell, nonlinearity):
    """Residual and feed-forward with dropout; ffn_mult 1 keeps the check small."""
    model = tiny_model(cell, nonlinearity, 2, dropout=0.3, residual=True, ffn_mult=1)
    results = gradcheck.check_model(model, batch=2, steps=5, seed=4)
    assert {f"ffn.1.{i}.{n}" for i in (0, 2) for n in ("weight", "bias")} <= {r.name for r in results}
    worst = max(results, key=lambda r: r.max_rel_error)
    assert worst.max_rel_error < 1e-6, f"{worst.name}: {worst.max_rel_error:.2e}"


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
@pytest.mark.parametrize("spec", [dict(residual=True), dict(ffn_mult=2), BLOCKS],
                         ids=["residual", "ffn", "both"])
def test_fast_equals_slow_reference(cell, nonlinearity, spec):
    assert_fast_equals_slow_reference(cell, nonlinearity, 3, 0.25, 20, **spec)


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
@pytest.mark.parametrize("layers", [1, 3])
def test_the_sampling_step_equals_the_sequence_forward(cell, nonlinearity, layers):
    model = tiny_model(cell, nonlinearity, layers, vocab=7, seed=2, scale=2.0, **BLOCKS)
    rng = np.random.default_rng(layers)
    ids = rng.integers(0, 7, 30)
    state0 = tuple(0.5 * rng.standard_normal(s.shape) for s in model.initial_state(1))
    logits, final, _ = model.forward(ids[None], state0)
    st = Stepper(model)
    st.reset(state0)
    step = st.make_step()
    got = np.stack([step(int(t)).copy() for t in ids])
    np.testing.assert_allclose(got, logits[0], rtol=0, atol=1e-10)
    for a, b in zip(st.get_state(), final):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.skipif(not can_fork(), reason="the pipelined pass needs fork (Linux)")
@pytest.mark.parametrize("cell", ["mingru", "lstm"])
def test_evaluation_equals_the_training_forwards_loss(cell):
    """The exact pass, pipelined over two processes and in one, gives the loss of one forward
    over the whole text."""
    model = tiny_model(cell, layers=3, vocab=9, dtype=np.float64, **BLOCKS)
    ids = np.random.default_rng(0).integers(0, 9, 400)
    loss = model.loss(ids[None, :-1], ids[None, 1:])[0]
    piped, n = evaluate_ids(model, ids, chunk_len=16)
    assert n == 399 and piped / n == pytest.approx(loss, rel=1e-12)
    assert evaluate_ids(model, ids, chunk_len=16, pipeline=False)[0] == pytest.approx(piped,
                                                                                      rel=1e-12)


def test_checkpoints_round_trip(tmp_path):
    from charrnn.store.checkpoint import load_checkpoint, save_checkpoint
    from charrnn.store.vocab import Vocab

    vocab = Vocab(list("abcdef"))
    model = tiny_model("mingru", vocab=vocab, dtype=np.float32, seed=5, **BLOCKS)
    cfg = Config()
    cfg.model = model.spec
    save_checkpoint(str(tmp_path / "m.safetensors"), model, vocab, cfg)
    ckpt = load_checkpoint(str(tmp_path / "m.safetensors"))
    assert (ckpt.config.model.residual, ckpt.config.model.ffn_mult) == (True, 2)
    assert set(ckpt.params) == set(model.params.names())
    for name in model.params.names():
        np.testing.assert_array_equal(ckpt.params[name], model.params[name])


def test_parameters_are_named_as_torch_nn_sequential_and_initialised_as_its_linears():
    plain = CharRNN(11, ModelConfig(cell="mingru", layers=2, hidden_size=16, embed_size=4), seed=3)
    model = CharRNN(11, ModelConfig(cell="mingru", layers=2, hidden_size=16, embed_size=4,
                                    **BLOCKS), seed=3)
    extra = set(model.params.names()) - set(plain.params.names())
    assert extra == {f"ffn.{k}.{i}.{n}" for k in (0, 1) for i in (0, 2) for n in ("weight", "bias")}
    assert model.params["ffn.1.0.weight"].shape == (32, 16)
    assert model.params["ffn.1.2.weight"].shape == (16, 32)
    for name in plain.params.names():          # the blocks draw after everything else
        np.testing.assert_array_equal(model.params[name], plain.params[name])
    for k in (0, 1):                           # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch.nn.Linear
        for i, fan_in in ((0, 16), (2, 32)):
            w = model.params[f"ffn.{k}.{i}.weight"]
            assert 0.8 / np.sqrt(fan_in) < np.abs(w).max() <= 1 / np.sqrt(fan_in)


def test_a_negative_ffn_mult_is_a_config_error():
    cfg = Config()
    cfg.model.ffn_mult = -1
    with pytest.raises(ConfigError, match="model.ffn_mult"):
        validate_config(cfg)


def test_the_commands_run_a_checkpoint_with_blocks(tmp_path, text_file):
    """eval gives the training forward's loss from the saved checkpoint; sample, diagnose and
    inspect walk the same stack."""
    import json

    from charrnn.store.checkpoint import save_checkpoint
    from tests.conftest import TINY_TEXT, TINY_VOCAB, run_cli

    model = tiny_model("mingru", layers=2, hidden=6, vocab=TINY_VOCAB, dtype=np.float32, seed=1,
                       scale=2.0, **BLOCKS)
    cfg = Config()
    cfg.model, cfg.train.dtype = model.spec, "float32"
    ckpt = str(tmp_path / "m.safetensors")
    save_checkpoint(ckpt, model, TINY_VOCAB, cfg)
    r = run_cli("eval", ckpt, text_file, "--json")
    assert r.exit_code == 0, r.output
    ids = np.array(TINY_VOCAB.encode(TINY_TEXT))
    want = model.loss(ids[None, :-1], ids[None, 1:])[0]
    assert json.loads(r.output)["loss"] == pytest.approx(want, rel=1e-5)
    r = run_cli("diagnose", ckpt, text_file, "--window", "40", "--json")
    assert r.exit_code == 0, r.output
    assert [layer["layer"] for layer in json.loads(r.stdout)["layers"]] == [0, 1]
    for args in (("sample", ckpt, "-n", "20", "--seed", "1"), ("inspect", ckpt, text_file)):
        r = run_cli(*args)
        assert r.exit_code == 0, r.output


def test_a_run_reports_the_blocks_and_their_parameters(tmp_path, corpus):
    from tests.conftest import run_cli
    from tests.test_train import SMALL, write_config

    r = run_cli("train", write_config(tmp_path, corpus), *SMALL, "--set", "model.cell=mingru",
                "--set", "model.residual=true", "--set", "model.ffn_mult=2", "--dry-run")
    assert r.exit_code == 0, r.output
    V = len(set(corpus.read_text()))
    # embedding, minGRU layers (2H gate rows), decoder, then two blocks of 16 -> 32 -> 16
    params = V * 8 + 32 * (8 + 1) + 32 * (16 + 1) + V * 16 + V + 2 * (32 * 17 + 16 * 33)
    assert f"(embedding 8, residual, feed-forward x2), {params:,} parameters" in r.stderr


def test_resuming_cannot_add_the_blocks(tmp_path, corpus):
    from tests.conftest import run_cli
    from tests.test_train import SMALL, write_config

    cfg = write_config(tmp_path, corpus)
    r = run_cli("train", cfg, *SMALL, "--set", "train.max_steps=2")
    assert r.exit_code == 0, r.output
    for key, value in (("model.residual", "true"), ("model.ffn_mult", "1")):
        r = run_cli("train", "--resume", tmp_path / "run", "--set", f"{key}={value}")
        assert r.exit_code == 2 and f"{key} cannot change when a run resumes" in r.output
