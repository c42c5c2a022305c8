"""The torch engine trains the same model as the numpy engine, and a run moves between them.

float64 on the CPU: the two engines differ only by the rounding order of the forward, backward
and optimizer arithmetic (about 1e-16 relative per operation), grown over 20 steps of an
optimizer on a tiny model; weights and every metrics.jsonl figure agree to 1e-9 relative.
Skipped, with the reason, where PyTorch is not installed.
"""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install "
                                            "'charrnn[torch]'); the torch engine is not tested")

from charrnn.errors import UsageError  # noqa: E402
from charrnn.optim import OPTIMIZERS  # noqa: E402
from charrnn.train.loop import train  # noqa: E402
from charrnn.train.run import open_run  # noqa: E402
from tests.conftest import CELL_CASES  # noqa: E402
from tests.test_engines import tiny_run, trained_weights  # noqa: E402

pytestmark = pytest.mark.torch

STEPS, RTOL = 20, 1e-9
TIMING = {"time", "chars_per_s"}          # the only metrics.jsonl fields that may differ


def run_on(tmp_path, engine, cell="lstm", nonlinearity="tanh", optimizer="adam", **sets):
    """tests/test_engines.py's tiny run, 20 steps at a constant rate (so a run stopped early
    and resumed with a larger max_steps keeps the schedule of one run)."""
    sets = {"max_steps": STEPS, "eval_every": 5, "checkpoint_every": 5, "lr_schedule": "constant",
            **sets}
    tmp_path.mkdir(parents=True, exist_ok=True)
    return tiny_run(tmp_path, engine, cell, nonlinearity, optimizer, **sets)


def metrics(run_dir) -> list[dict]:
    lines = (json.loads(line) for line in open(run_dir / "metrics.jsonl", encoding="utf-8"))
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert np.linalg.norm(a[name] - b[name]) <= RTOL * np.linalg.norm(a[name]), name


def assert_same_metrics(a: list, b: list):
    assert len(a) == len(b) and a
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key] == pytest.approx(y[key], rel=RTOL, abs=1e-300), (key, x, y)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
def test_both_engines_train_the_same_weights_and_figures(tmp_path, cell, nonlinearity, optimizer):
    clip = ["norm", "value"][len(optimizer) % 2]         # each rule among the runs
    ends = {engine: trained_weights(run_on(tmp_path, engine, cell, nonlinearity, optimizer,
                                           clip=clip))
            for engine in ("numpy", "torch")}
    assert_same_weights(ends["numpy"], ends["torch"])
    assert_same_metrics(metrics(tmp_path / "numpy"), metrics(tmp_path / "torch"))


@pytest.mark.parametrize("cell", ["gru", "minlstm"])
def test_the_blocks_train_the_same_weights(tmp_path, cell):
    ends = {engine: trained_weights(run_on(tmp_path, engine, cell, residual=True, ffn_mult=2))
            for engine in ("numpy", "torch")}
    assert_same_weights(ends["numpy"], ends["torch"])


def test_documents_mode_scores_the_same_characters(tmp_path):
    (tmp_path / "names.txt").write_text("anna\nbob\ncarla\nab\nbaccab\n" * 12)
    ends = {}
    for engine in ("numpy", "torch"):
        run = run_on(tmp_path, engine, "gru")
        run.close()
        cfg = run.config
        cfg.data.path, cfg.data.documents = str(tmp_path / "names.txt"), "lines"
        from charrnn.train.run import prepare
        ends[engine] = trained_weights(prepare(cfg, resume=None))
    assert_same_weights(ends["numpy"], ends["torch"])


def finish(run):
    try:
        train(run, quiet=True, log=lambda line: None)
        return {k: v.copy() for k, v in run.engine.state().params.items()}
    finally:
        run.close()


@pytest.mark.parametrize("first,then,cell,optimizer",
                         [("numpy", "torch", "lstm", "adam"), ("torch", "numpy", "gru", "sgd"),
                          ("numpy", "torch", "mingru", "rmsprop")])
def test_a_run_resumed_on_the_other_engine_equals_one_run(tmp_path, first, then, cell,
                                                          optimizer):
    (tmp_path / "one").mkdir()
    whole = trained_weights(run_on(tmp_path / "one", first, cell, optimizer=optimizer))
    finish(run_on(tmp_path, first, cell, optimizer=optimizer, max_steps=STEPS // 2))
    notes = []
    resumed = open_run(None, resume_dir=str(tmp_path / first), warn=notes.append,
                       overrides=[f"train.engine={then}", f"train.max_steps={STEPS}"])
    assert type(resumed.engine).__module__.endswith(f"{then}_engine")
    assert any(f"train.engine changes from {first} to {then}" in n for n in notes), notes
    assert_same_weights(whole, finish(resumed))
    one = metrics(tmp_path / "one" / first)
    assert_same_metrics(one, metrics(tmp_path / first))


def test_a_torch_run_with_dropout_resumes_exactly(tmp_path):
    whole = trained_weights(_dropout_run(tmp_path / "one", 12))
    finish(_dropout_run(tmp_path, 6))
    resumed = open_run(None, resume_dir=str(tmp_path / "torch"),
                       overrides=["train.max_steps=12"])
    end = finish(resumed)
    for name in whole:
        np.testing.assert_array_equal(whole[name], end[name])


def _dropout_run(path, steps):
    run = run_on(path, "torch", max_steps=steps)
    run.close()
    cfg = run.config
    cfg.model.dropout = 0.3
    from charrnn.train.run import prepare
    return prepare(cfg)


def test_dropout_masks_come_from_the_run_and_act(tmp_path):
    a = trained_weights(_dropout_run(tmp_path / "a", 4))
    b = trained_weights(_dropout_run(tmp_path / "b", 4))
    c = trained_weights(run_on(tmp_path / "c", "torch", max_steps=4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.allclose(a[k], c[k]) for k in a)


def test_a_missing_cuda_device_is_refused_before_anything_is_written(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(UsageError, match="train.device cuda:0: PyTorch sees 0 CUDA device"):
        run_on(tmp_path, "torch", device="cuda:0")
    assert not (tmp_path / "torch").exists()


def test_a_cell_without_a_torch_module_is_refused(tmp_path, monkeypatch):
    from charrnn.engines import torch_engine

    monkeypatch.setattr(torch_engine, "CELLS", ("rnn", "gru", "lstm"))
    with pytest.raises(UsageError, match="train.engine torch has no module for model.cell mingru"):
        run_on(tmp_path, "torch", "mingru")
    assert not (tmp_path / "torch").exists()


def test_the_scan_equals_the_loop():
    from charrnn.engines.torch_model import linear_scan

    g = torch.Generator().manual_seed(0)
    for T in (1, 2, 5, 8, 13):
        a = torch.rand(T, 3, 4, generator=g, dtype=torch.float64)
        b = torch.randn(T, 3, 4, generator=g, dtype=torch.float64)
        h = h0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
        loop = []
        for t in range(T):
            h = a[t] * h + b[t]
            loop.append(h)
        torch.testing.assert_close(linear_scan(a, b, h0), torch.stack(loop), rtol=1e-13,
                                   atol=1e-14)


def test_a_checkpoint_of_the_torch_engine_samples_and_evaluates(tmp_path):
    from tests.conftest import run_cli

    finish(run_on(tmp_path, "torch", max_steps=4))
    out = run_cli("eval", tmp_path / "torch", tmp_path / "text.txt", "--json")
    assert out.exit_code == 0, out.output
    assert math.isfinite(json.loads(out.stdout)["loss"])
    out = run_cli("sample", tmp_path / "torch", "-n", "20", "--seed", "1")
    assert out.exit_code == 0 and len(out.stdout) >= 20


def test_bench_measures_the_torch_engine_with_the_same_json():
    from charrnn.tools.bench import run_bench

    numpy_keys = set(run_bench(hidden=8, emb=4, batch=4, seq=5, steps=1, sample=5, warmup=1))
    result = run_bench(hidden=8, emb=4, batch=4, seq=5, steps=1, sample=5, warmup=1,
                       engine="torch", device="cpu")
    assert result["engine"] == "torch" and result["device"] == "cpu"
    assert result["train_chars_per_s"] > 0 and math.isfinite(result["train_loss"])
    assert numpy_keys - set(result) <= {"worker_processes", "worker_added_rss_mb"}


def test_a_resume_that_turns_momentum_on_is_taken_alike_by_both_engines(tmp_path):
    import shutil

    finish(run_on(tmp_path, "numpy", optimizer="sgd", momentum=0.0, max_steps=STEPS // 2))
    ends = {}
    for engine in ("numpy", "torch"):              # the saved state has no momentum_buffer
        shutil.copytree(tmp_path / "numpy", tmp_path / f"on-{engine}")
        ends[engine] = finish(open_run(None, resume_dir=str(tmp_path / f"on-{engine}"), overrides=[
            f"train.engine={engine}", "train.momentum=0.5", f"train.max_steps={STEPS}"]))
    assert_same_weights(ends["numpy"], ends["torch"])
