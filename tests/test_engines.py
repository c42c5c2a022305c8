"""The engine boundary: engines come from a registry, and a second engine trains the same model.

The reference engine computes each step with the textbook model (charrnn/nn/reference.py); a
whole run on it and on the numpy engine differs only by the rounding of the forward and backward
passes (float64: about 1e-16 relative per operation, grown over a few steps of the optimizer),
so their final weights agree to 1e-9 relative, for every registered cell and every optimizer.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from charrnn import engines
from charrnn.engines import base
from charrnn.config import CHOICES, Config, ConfigError, load_config
from charrnn.errors import UsageError
from charrnn.optim import OPTIMIZERS
from charrnn.train.loop import train
from charrnn.train.run import prepare
from tests.conftest import CELL_CASES

STEPS = 4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_run(tmp_path, engine, cell, nonlinearity, optimizer, **train_sets):
    (tmp_path / "text.txt").write_text("abcab cabba acbac bbaca " * 8)
    cfg = Config()
    cfg.data.path, cfg.data.reset_prob = str(tmp_path / "text.txt"), 0.5
    cfg.model.cell, cfg.model.nonlinearity = cell, nonlinearity
    cfg.model.hidden_size, cfg.model.embed_size, cfg.model.layers = 3, 2, 2
    t = cfg.train
    t.batch_size, t.seq_len, t.max_steps, t.eval_every, t.eval_chars = 2, 4, STEPS, 2, 20
    t.dtype, t.threads, t.engine, t.optimizer, t.lr = "float64", 1, engine, optimizer, 0.05
    t.momentum, t.weight_decay, t.clip_value, t.warmup_steps = 0.5, 0.01, 0.5, 1
    for key, value in train_sets.items():
        setattr(t, key, value)
    t.out_dir = str(tmp_path / engine)
    return prepare(cfg)


def trained_weights(run):
    try:
        train(run, quiet=True, log=lambda line: None)
        return {k: v.copy() for k, v in run.engine.state().params.items()}
    finally:
        run.close()


def test_the_config_reads_its_engines_from_the_registry():
    assert CHOICES["train.engine"] == engines.NAMES and "numpy" in engines.NAMES
    assert Config().train.engine == "numpy"
    with pytest.raises(ConfigError, match=f"train.engine must be one of {', '.join(engines.NAMES)}"):
        load_config(None, ["train.engine=jax"])
    with pytest.raises(ValueError, match="unknown engine 'jax'"):
        engines.get("jax")
    with pytest.raises(ConfigError, match="train.device must be auto, cpu, cuda, cuda:N or mps"):
        load_config(None, ["train.device=gpu"])
    assert load_config(None, ["train.device=cuda:1"]).train.device == "cuda:1"


def test_the_registry_checks_each_engine_against_the_interface():
    for name in engines.NAMES:
        assert base.missing_members(engines.get(name)) == []

    class Half:
        def gradient(self, ids, targets, reset, rng, clip): ...

    assert base.missing_members(Half) == ["update", "inference_model", "state", "restore", "agree",
                                          "close"]


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
def test_the_reference_engine_trains_the_same_weights(tmp_path, cell, nonlinearity, optimizer):
    clip = ["norm", "value", "none"][len(optimizer) % 3]        # each rule among the runs
    ends = [trained_weights(tiny_run(tmp_path, engine, cell, nonlinearity, optimizer, clip=clip))
            for engine in ("numpy", "reference")]
    (tmp_path / "start").mkdir()
    start = tiny_run(tmp_path / "start", "numpy", cell, nonlinearity, optimizer)
    initial = dict(start.engine.state().params)
    start.close()
    for name, a in ends[0].items():
        b = ends[1][name]
        assert np.linalg.norm(a - b) <= 1e-9 * np.linalg.norm(a), name
    assert any(not np.array_equal(ends[0][k], initial[k]) for k in initial)     # it trained


def test_the_reference_engine_refuses_what_the_textbook_model_lacks(tmp_path):
    with pytest.raises(UsageError, match="float64"):
        tiny_run(tmp_path, "reference", "gru", "tanh", "adam", dtype="float32")
    assert not (tmp_path / "reference").exists()             # refused before the folder


def python(code: str, *args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, **kw)


def test_neither_the_cli_nor_a_numpy_run_imports_torch(tmp_path):
    """The torch engine is optional and heavy: `charrnn --help` and the numpy engine never load it."""
    done = python(
        "import pathlib, sys; import charrnn.cli; assert 'torch' not in sys.modules, 'cli'; "
        "from tests.test_engines import tiny_run, trained_weights; "
        f"trained_weights(tiny_run(pathlib.Path({str(tmp_path)!r}), 'numpy', 'lstm', 'tanh', "
        "'adam')); assert 'torch' not in sys.modules, 'a numpy run'")
    assert done.returncode == 0, done.stderr


def test_without_torch_the_torch_engine_is_one_line_and_exit_2(tmp_path):
    """PyTorch missing (simulated: its import fails) -> one line naming the extra, nothing written."""
    (tmp_path / "text.txt").write_text("abcab cabba acbac bbaca " * 8)
    out = tmp_path / "run"
    done = python("import sys; sys.modules['torch'] = None; from charrnn.cli import main; main()",
                  "train", "--data", tmp_path / "text.txt", "--set", "train.engine=torch",
                  "--set", "train.batch_size=2", "--set", "train.seq_len=4",
                  "--set", "train.max_steps=1", "--set", f"train.out_dir={out}")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "charrnn: error: train.engine torch needs PyTorch, which is not installed here; pip "
        "install 'charrnn[torch]', or use train.engine numpy"]
    assert not out.exists()


def test_an_engine_of_one_process_refuses_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="train.engine numpy runs in one process; under torchrun"):
        tiny_run(tmp_path, "numpy", "gru", "tanh", "adam")
    assert not (tmp_path / "numpy").exists()
