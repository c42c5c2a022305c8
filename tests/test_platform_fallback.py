"""The paths macOS and Windows run, where there is no fork (and no prctl), forced on Linux with
CHARRNN_NO_FORK=1: the data-parallel step in threads and the exact evaluation in one process.
They give the same bits as the forked paths (the same operations in the same order), so the
code a macOS user runs is code this suite runs and compares.
"""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from charrnn.fast import parallel, pipeline
from charrnn.infer.evaluate import evaluate_ids
from tests.conftest import run_cli, tiny_model


def force_the_fallback(monkeypatch):
    """CHARRNN_NO_FORK=1; a test that forks anyway fails."""
    monkeypatch.setenv("CHARRNN_NO_FORK", "1")

    def refuse(*args, **kwargs):
        pytest.fail("a worker was forked under CHARRNN_NO_FORK=1")
    monkeypatch.setattr(parallel, "fork_worker", refuse)
    monkeypatch.setattr(pipeline, "fork_worker", refuse)


def test_the_variable_turns_forking_off(monkeypatch):
    monkeypatch.setenv("CHARRNN_NO_FORK", "0")
    assert parallel.can_fork() == parallel.sys.platform.startswith("linux")
    monkeypatch.setenv("CHARRNN_NO_FORK", "1")
    assert parallel.can_fork() is False


def test_the_one_process_evaluation_gives_the_pipelines_bits(monkeypatch):
    model = tiny_model("lstm", layers=3, vocab=9, dtype=np.float32)
    ids = np.random.default_rng(0).integers(0, 9, 400)
    piped = evaluate_ids(model, ids, chunk_len=16)             # forked where the platform can
    force_the_fallback(monkeypatch)
    assert evaluate_ids(model, ids, chunk_len=16) == piped     # same operations, same machine


def train_run(tmp_path, corpus, name):
    """A 2-worker run of 6 steps: its train losses by step and its last checkpoint's tensors."""
    out = tmp_path / name
    r = run_cli("train", "-q", "--set", f"data.path={corpus}", "--set", f"train.out_dir={out}",
                "--set", "train.threads=2", "--set", "train.max_steps=6",
                "--set", "train.batch_size=16", "--set", "train.seq_len=16",
                "--set", "model.hidden_size=16", "--set", "model.embed_size=8",
                "--set", "model.dropout=0.1", "--set", "train.eval_every=3",
                "--set", "train.log_every=1")
    assert r.exit_code == 0, r.output
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    losses = {m["step"]: m["train_loss"] for m in metrics if "train_loss" in m}
    return losses, load_file(str(out / "last.safetensors"))


def test_training_in_threads_gives_the_worker_processes_bits(tmp_path, corpus, monkeypatch):
    forked_losses, forked = train_run(tmp_path, corpus, "forked")
    force_the_fallback(monkeypatch)
    losses, tensors = train_run(tmp_path, corpus, "threads")
    assert losses == forked_losses and len(losses) == 6
    assert tensors.keys() == forked.keys()
    for name in tensors:                      # same shards, same sums, same order: same bits
        np.testing.assert_array_equal(tensors[name], forked[name], err_msg=name)
