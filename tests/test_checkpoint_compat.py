"""Checkpoints written by an earlier charrnn (format charrnn/1) load and give the same results.

tests/data/<cell>-v1.safetensors were written by `charrnn train` before the package was
reorganised (2-layer, H=8, E=4, 12 Adam steps, with optimizer state and carried state);
golden-v1.json holds what `charrnn sample` and `charrnn eval` printed for them then.
"""

import json
import os

import pytest
from click.testing import CliRunner

from charrnn.cli import cli

DATA = os.path.join(os.path.dirname(__file__), "data")
GOLDEN = json.load(open(os.path.join(DATA, "golden-v1.json"), encoding="utf-8"))


@pytest.mark.parametrize("cell", sorted(GOLDEN))
def test_an_old_checkpoint_samples_the_same_text(cell):
    ckpt = os.path.join(DATA, f"{cell}-v1.safetensors")
    result = CliRunner().invoke(cli, ["sample", ckpt, "--seed", "7", "-n", "200", "-t", "0.8",
                                      "--prime", "The "])
    assert result.exit_code == 0, result.output
    assert result.output == GOLDEN[cell]["sample"]


@pytest.mark.parametrize("cell", sorted(GOLDEN))
def test_an_old_checkpoint_evaluates_to_the_same_loss(cell):
    ckpt = os.path.join(DATA, f"{cell}-v1.safetensors")
    result = CliRunner().invoke(cli, ["eval", ckpt, os.path.join(DATA, "golden-text.txt"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    got, want = json.loads(result.output), GOLDEN[cell]["eval"]
    assert got["chars_scored"] == want["chars_scored"]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-12)


@pytest.mark.parametrize("cell", sorted(GOLDEN))
def test_an_old_checkpoint_resumes(cell, tmp_path):
    """Its optimizer and training state are read back: a resumed run takes two more steps."""
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(os.path.join(DATA, f"{cell}-v1.safetensors"), run / "last.safetensors")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(open(os.path.join(DATA, "golden-text.txt"), encoding="utf-8").read() * 6,
                      encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "-q",
                                      "--set", f"data.path={corpus}",
                                      "--set", "train.max_steps=14"])
    assert result.exit_code == 0, result.output
    from charrnn.store.checkpoint import load_checkpoint
    assert load_checkpoint(str(run / "last.safetensors")).train_state["progress"]["step"] == 14
