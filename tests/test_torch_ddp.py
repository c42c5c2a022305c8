"""The torch engine under torchrun: 2 processes on the CPU (gloo) train what one process trains.

Each rank computes the gradient of its half of the B streams; DistributedDataParallel adds the
halves, so the gradient differs from one process's only by the order of a float sum (float64:
about 1e-16 relative), and the weights after 20 steps, with a resume in the middle, agree to
1e-9. Skipped, with the reason, where PyTorch is not installed.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'charrnn[torch]'); "
                                    "the torch engine is not tested")

from safetensors.numpy import load_file  # noqa: E402

from charrnn.config import save_config  # noqa: E402
from charrnn.errors import UsageError  # noqa: E402
from tests.test_engines import ROOT  # noqa: E402
from tests.test_torch_engine import (assert_same_metrics, assert_same_weights, finish,  # noqa: E402
                                     metrics, run_on)

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def torchrun(*args, **kw):
    """`torchrun --standalone --nproc-per-node 2 -m charrnn ARGS` (one thread a process)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "charrnn", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finished(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return err


def config_of(tmp_path, **sets):
    """A tiny torch run's config file (tests/test_engines.py's), batch 2: a stream a rank."""
    run = run_on(tmp_path / "config", "torch", **sets)
    run.close()
    path = tmp_path / "config.yaml"
    save_config(run.config, str(path))
    return path, run.config


def test_two_processes_with_a_resume_equal_one(tmp_path):
    path, _ = config_of(tmp_path)
    one = finish(run_on(tmp_path, "torch"))                 # one process, 20 steps
    out = tmp_path / "ddp"
    finished(torchrun("train", path, "--set", f"train.out_dir={out}", "--set",
                      "train.max_steps=10"))
    err = finished(torchrun("train", "--resume", out, "--set", "train.max_steps=20"))
    assert err.count("resuming the run") == 1              # rank 0 alone speaks
    two = load_file(str(out / "last.safetensors"))
    assert_same_weights(one, {k: v for k, v in two.items() if k in one})
    saved_one = load_file(str(tmp_path / "torch" / "last.safetensors"))
    assert_same_weights({"c": saved_one["carry.c"]}, {"c": two["carry.c"]})   # [L, B, H], gathered
    assert_same_metrics(metrics(tmp_path / "torch"), metrics(out))
    assert sorted(os.listdir(out)) == ["best.safetensors", "config.yaml", "last.safetensors",
                                       "metrics.jsonl"]


def test_ctrl_c_stops_every_rank_at_one_step_and_saves(tmp_path):
    path, cfg = config_of(tmp_path, max_steps=10 ** 6, checkpoint_every=10 ** 5,
                          eval_every=10 ** 5)
    out = tmp_path / "ddp"
    proc = torchrun("train", path, "--set", f"train.out_dir={out}", start_new_session=True)
    deadline = time.monotonic() + 90
    while not (out / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)                                           # some steps
    proc.send_signal(signal.SIGINT)                        # torchrun passes it to the ranks
    _, err = proc.communicate(timeout=90)
    lines = [line for line in err.splitlines() if "interrupted at step" in line]
    assert len(lines) == 2, err[-3000:]                    # both ranks, at the same step
    step = int(lines[0].split("interrupted at step ")[1].split(";")[0])
    assert all(f"interrupted at step {step};" in line for line in lines)
    with open(out / "metrics.jsonl", encoding="utf-8") as f:
        assert json.loads(f.readlines()[-1])["step"] <= step
    saved = load_file(str(out / "last.safetensors"))
    assert saved["carry.h"].shape[1] == cfg.train.batch_size


@pytest.mark.parametrize("sets,words", [
    ({"batch_size": 3}, "train.batch_size 3 does not split over 2 processes"),
    ({"max_minutes": 1.0}, "train.max_minutes would stop each process at its own step")])
def test_what_cannot_split_over_ranks_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                           sets, words):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UsageError, match=words):
        run_on(tmp_path, "torch", **sets)
    assert not (tmp_path / "torch").exists()
