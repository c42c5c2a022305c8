"""`charrnn diagnose`: gradient norms through time, checked on a case computable by hand."""

import json
import math
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.nn.model import CharRNN
from charrnn.tools.diagnose import (
    decay_per_step,
    gradient_decay,
    steps_to_threshold,
    table_distances,
)
from tests.conftest import TINY_TEXT as TEXT
from tests.conftest import tiny_model


def linear_relu_rnn(a, V=5, E=3, H=4, seed=0):
    """A relu RNN with w_hh = a I whose pre-activations are all positive, so relu is the identity.

    Then dL/dh_{t-1} = W_hh^T dL/dh_t = a dL/dh_t: the norm shrinks by exactly a per step.
    """
    model = tiny_model("rnn", "relu", 1, hidden=H, embed=E, vocab=V, seed=seed, init="identity",
                       identity_scale=a)
    rng = np.random.default_rng(seed)
    p = model.params
    p["embedding.weight"][...] = rng.uniform(0.1, 1.0, (V, E))
    p["rnn.weight_ih_l0"][...] = rng.uniform(0.1, 1.0, (H, E))
    p["rnn.bias_ih_l0"][...] = rng.uniform(0.1, 1.0, H)
    p["rnn.bias_hh_l0"][...] = rng.uniform(0.1, 1.0, H)
    np.testing.assert_array_equal(p["rnn.weight_hh_l0"], a * np.eye(H))
    return model


@pytest.mark.parametrize("a", [0.5, 0.8, 0.9])
def test_norms_decay_by_exactly_a_per_step_in_a_linear_rnn(a):
    model = linear_relu_rnn(a)
    ids = np.random.default_rng(1).integers(0, 5, 100)
    result = gradient_decay(model, ids, target=3)
    (layer,) = result["layers"]
    norms = np.array(layer["norms"])
    assert len(norms) == 100 and norms[0] > 0
    expected = a ** np.arange(100) * norms[0]
    np.testing.assert_allclose(norms, expected, rtol=1e-10, atol=0)
    assert layer["decay_per_step"] == pytest.approx(a, rel=1e-12)
    # first d with a^d < 1e-3; log(1e-3)/log(a) is not an integer for these a, so this is its ceil
    assert layer["steps_to_threshold"] == math.ceil(math.log(1e-3) / math.log(a))
    assert norms[layer["steps_to_threshold"]] < 1e-3 * norms[0] <= norms[layer["steps_to_threshold"] - 1]


def test_last_step_norm_is_the_decoders_gradient():
    """At distance 0 of the top layer, dL/dh = decoder.weight^T (softmax - onehot)."""
    model = linear_relu_rnn(0.7)
    ids = np.array([0, 1, 2, 3, 4, 0, 1])
    result = gradient_decay(model, ids, target=2)
    logits, _, _ = model.forward(ids[None])
    z = logits[0, -1]
    probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert result["loss"] == pytest.approx(-math.log(probs[2]), rel=1e-12)
    probs[2] -= 1
    expected = np.linalg.norm(model.params["decoder.weight"].T @ probs)
    assert result["layers"][0]["norms"][0] == pytest.approx(expected, rel=1e-12)


def test_identity_recurrence_keeps_the_gradient():
    (layer,) = gradient_decay(linear_relu_rnn(1.0), np.zeros(40, int), 1)["layers"]
    assert layer["decay_per_step"] == pytest.approx(1.0, rel=1e-12)
    assert layer["steps_to_threshold"] is None


def test_summary_statistics():
    assert decay_per_step([8.0, 4.0, 2.0, 1.0]) == pytest.approx(0.5)
    assert decay_per_step([3.0, 0.0, 0.0]) == 0.0
    assert decay_per_step([0.0, 0.0]) is None
    assert steps_to_threshold([1.0, 0.5, 1e-3, 9e-4]) == 3       # strictly below
    assert steps_to_threshold([1.0, 0.5, 0.2]) is None
    assert table_distances(100) == [0, 1, 2, 5, 10, 20, 50, 99]
    assert table_distances(11) == [0, 1, 2, 5, 10]
    assert table_distances(2) == [0, 1]


def test_float32_models_are_diagnosed_in_float64():
    m32 = tiny_model("lstm", layers=2, hidden=8, embed=4, vocab=5, dtype=np.float32, seed=3)
    m64 = tiny_model("lstm", layers=2, hidden=8, embed=4, vocab=5, dtype=np.float64, seed=3)
    m64.params.copy_from(m32.params.views)
    ids = np.random.default_rng(0).integers(0, 5, 30)
    r32, r64 = gradient_decay(m32, ids, 1), gradient_decay(m64, ids, 1)
    assert r32 == r64
    assert all(len(layer["norms"]) == 30 and layer["norms"][5] > 0 for layer in r64["layers"])


# -- the command ----------------------------------------------------------------------------------

def run(*args, **kw):
    return CliRunner().invoke(cli, ["diagnose", *args], **kw)


def test_table_output(gru_checkpoint, text_file):
    result = run(gru_checkpoint, str(text_file), "--window", "60")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "gru, 2 layer(s) x 8" in out and "window: 60 characters from offset 0" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line[:5].strip() in ("0", "1")}
    assert set(rows) == {"0", "1"}
    header = next(line for line in out.splitlines() if line.startswith("distance"))
    assert header.split()[1:] == ["0", "1", "2", "5", "10", "20", "50", "59"]
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("layer ")
            and line.split()[1].isdigit()] == [["layer", "0"], ["layer", "1"]]


def test_json_output_has_every_norm_and_reads_stdin(gru_checkpoint):
    result = run(gru_checkpoint, "-", "--window", "30", "--offset", "7", "--json", input=TEXT)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["window"] == 30 and data["offset"] == 7 and data["predicted"] == TEXT[37]
    assert [layer["layer"] for layer in data["layers"]] == [0, 1]
    for layer in data["layers"]:
        assert len(layer["norms"]) == 30
        assert set(layer) == {"layer", "norms", "decay_per_step", "steps_to_threshold"}


@pytest.mark.parametrize("args,stdin,message", [
    (["--window", "400"], TEXT, "needs 401"),
    (["--offset", "250", "--window", "20"], TEXT, "needs 271"),
    ([], "the cat sat on a zoo " * 10, "not in the model's vocabulary ('z')"),
])
def test_bad_text_is_one_clear_error(gru_checkpoint, args, stdin, message):
    result = run(gru_checkpoint, "-", *args, input=stdin)
    assert result.exit_code == 1
    assert result.stderr.startswith("charrnn: error: ") and message in result.stderr
    assert "Traceback" not in result.output


def test_missing_checkpoint_and_bad_window(tmp_path):
    result = run(str(tmp_path / "nope.safetensors"), "-", input=TEXT)
    assert result.exit_code == 1 and "no checkpoint at" in result.stderr
    assert run(str(tmp_path / "x"), "-", "--window", "1").exit_code == 2


def test_plot_writes_a_png(gru_checkpoint, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "decay.png"
    result = run(gru_checkpoint, "-", "--window", "50", "--plot", str(out), input=TEXT)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_plot_without_matplotlib_says_how_to_install(gru_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # `import matplotlib` now fails
    out = tmp_path / "decay.png"
    result = run(gru_checkpoint, "-", "--window", "50", "--plot", str(out), input=TEXT)
    assert result.exit_code == 1
    assert "pip install 'charrnn[plot]'" in result.stderr
    assert not out.exists()


def test_plot_with_an_unsupported_suffix_is_one_line(gru_checkpoint, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "x.txt"
    result = run(gru_checkpoint, "-", "--window", "50", "--plot", str(out), input=TEXT)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("charrnn: error: cannot draw a picture as '.txt'")
    assert result.stderr.count("\n") == 1 and "use .png, .pdf or .svg" in result.stderr
    assert not out.exists() and result.stdout == ""


def test_plot_without_a_suffix_names_the_png_written(gru_checkpoint, tmp_path):
    pytest.importorskip("matplotlib")
    result = run(gru_checkpoint, "-", "--window", "20", "--plot", str(tmp_path / "decay"),
                 input=TEXT)
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'decay.png'}" in result.stderr
    assert (tmp_path / "decay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_irnn_config_builds_an_identity_relu_rnn():
    from pathlib import Path

    from charrnn.config import load_config

    cfg = load_config(str(Path(__file__).resolve().parents[1] / "configs" / "irnn.yaml"),
                      ["model.hidden_size=6", "model.embed_size=3"])
    assert (cfg.model.cell, cfg.model.nonlinearity, cfg.model.init) == ("rnn", "relu", "identity")
    assert cfg.train.clip == "norm" and cfg.train.clip_value <= 1.0 and cfg.train.lr <= 5e-4
    scale = cfg.model.identity_scale      # below 1: an exact identity bursts (configs/irnn.yaml)
    assert 0.5 <= scale < 1.0, scale
    model = CharRNN(5, cfg.model, dtype=np.float64)
    for k in range(cfg.model.layers):
        np.testing.assert_array_equal(model.params[f"rnn.weight_hh_l{k}"], scale * np.eye(6))
