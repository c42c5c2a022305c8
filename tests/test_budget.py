"""Issue 15: a schedule that ends with the run's budget (steps, epochs or minutes), early stopping,
the plateau schedule, the start-of-run report and --dry-run."""

import itertools
import json
import os
import signal

import pytest
import yaml

import charrnn.train.loop as loop_mod
from charrnn.config import Config
from charrnn.train import budget, lr as lr_mod
from charrnn.store.checkpoint import Progress, load_checkpoint
from charrnn.train.lr import LearningRate, lr_at
from tests.conftest import run_cli
from tests.test_train import SMALL, write_config


def metric_lines(run_dir):
    return [json.loads(line) for line in open(run_dir / "metrics.jsonl")]


def rates(run_dir):
    return {m["step"]: m["lr"] for m in metric_lines(run_dir) if "lr" in m}


def weights(run_dir, name="last.safetensors"):
    return load_checkpoint(str(run_dir / name)).params


# -- the horizon ----------------------------------------------------------------------------

def test_time_horizon_counts_steps_and_evaluations():
    # 60 s left, 0.25 s a step, 2.5 s an evaluation every 10 steps: 60 / (0.25 + 0.25) steps
    assert budget.time_horizon(100, 60.0, 0.25, 2.5, 10) == 100 + 120
    assert budget.time_horizon(7, 0.0, 1.0, 5.0, 10) == 8          # always at least one step
    cfg = Config().train
    cfg.max_steps, cfg.max_epochs = 500, 3
    assert lr_mod.step_horizon(cfg, 100) == 300
    cfg.max_epochs = None
    assert lr_mod.step_horizon(cfg, 100) == 500


def test_the_step_timer_skips_warmup_steps(monkeypatch):
    clock = itertools.count(0.0, 0.5)                          # every reading 0.5 s later
    monkeypatch.setattr(budget.time, "perf_counter", lambda: next(clock))
    timer = budget.StepTimer()
    for _ in range(budget.WARMUP_STEPS + budget.TIMED_STEPS):
        assert not timer.ready
        timer.start()
        timer.stop()
    assert timer.ready and timer.step_seconds == 0.5


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_an_epoch_budget_ends_the_schedule_at_its_floor(tmp_path, corpus, schedule):
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_epochs=1",
                "--set", f"train.lr_schedule={schedule}", "--set", "train.min_lr=0.0002")
    assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    progress = load_checkpoint(str(run / "last.safetensors")).train_state["progress"]
    horizon = progress["horizon"]
    assert progress["step"] == horizon and progress["epoch"] == 1
    lr = rates(run)
    cfg = Config().train
    cfg.lr, cfg.min_lr, cfg.lr_schedule, cfg.warmup_steps = 0.002, 0.0002, schedule, 0
    assert lr[horizon] == pytest.approx(lr_at(cfg, horizon - 1, 0.0, horizon))
    assert lr[horizon] - 0.0002 < (0.002 - 0.0002) * 2 / horizon    # one step from the floor
    assert lr_at(cfg, horizon, 0.0, horizon) == pytest.approx(0.0002)


@pytest.fixture
def fake_clock(monkeypatch):
    """Time that passes only in training steps, 0.1 s each: a max_minutes run is deterministic."""
    now = [0.0]
    monkeypatch.setattr("time.perf_counter", lambda: now[0])
    real = loop_mod.train_step

    def slow_step(run, **kw):
        now[0] += 0.1
        return real(run, **kw)

    monkeypatch.setattr(loop_mod, "train_step", slow_step)
    return now


def interrupt_at(monkeypatch, step):
    real = loop_mod.train_step

    def step_then_interrupt(run, **kw):
        out = real(run, **kw)
        if run.progress.step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(loop_mod, "train_step", step_then_interrupt)


def test_a_minutes_budget_fixes_its_horizon_and_a_resume_repeats_it(tmp_path, corpus, fake_clock,
                                                                       monkeypatch):
    args = [*SMALL, "--set", "train.max_minutes=0.2", "--set", "train.lr_schedule=cosine",
            "--set", "train.eval_every=1000", "--set", "train.checkpoint_every=1000",
            "--set", "train.threads=1"]
    r = run_cli("train", write_config(tmp_path, corpus, out="whole"), "-q", *args)
    assert r.exit_code == 0 and "reached the end of the schedule" in r.stderr, r.output
    whole = tmp_path / "whole"
    horizon = load_checkpoint(str(whole / "last.safetensors")).train_state["progress"]["horizon"]
    assert horizon in (119, 120)                  # 0.2 min of 0.1 s steps (evaluation: no time)
    assert max(rates(whole)) == horizon           # it stopped there, the rate at its floor
    interrupt_at(monkeypatch, 30)
    fake_clock[0] = 0.0                           # the same timings as the whole run's
    r = run_cli("train", write_config(tmp_path, corpus, out="split"), "-q", *args)
    assert r.exit_code == 130, r.output
    r = run_cli("train", "--resume", tmp_path / "split", "-q")
    assert r.exit_code == 0, r.output
    a, b = weights(whole), weights(tmp_path / "split")
    assert all((a[k] == b[k]).all() for k in a)               # bit for bit
    assert rates(whole) == rates(tmp_path / "split")


def test_the_quick_timing_changes_nothing_in_training(tmp_path, corpus):
    args = [*SMALL, "--set", "train.max_steps=12", "--set", "model.dropout=0.2"]
    assert run_cli("train", write_config(tmp_path, corpus, out="quiet"), "-q", *args).exit_code == 0
    r = run_cli("train", write_config(tmp_path, corpus, out="loud"), *args)
    assert r.exit_code == 0 and "ms per step" in r.stderr, r.output
    a, b = weights(tmp_path / "quiet"), weights(tmp_path / "loud")
    assert all((a[k] == b[k]).all() for k in a)


# -- early stopping and the plateau schedule ---------------------------------------------------

def scripted_validation(monkeypatch, losses_by_step):
    monkeypatch.setattr(loop_mod, "validation_loss", lambda run: losses_by_step[run.progress.step])


def test_patience_stops_at_the_right_evaluation(tmp_path, corpus, monkeypatch):
    # best at step 10; 15, 20 bring nothing new: patience 2 stops at step 20
    scripted_validation(monkeypatch, {5: 3.0, 10: 2.9, 15: 2.95, 20: 2.91, 25: 2.5})
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=40",
                "--set", "train.patience=2")
    assert r.exit_code == 0, r.output
    assert "stopped early: 2 evaluations without a new best (train.patience=2) at step 20" in r.stderr
    best = load_checkpoint(str(tmp_path / "run" / "best.safetensors")).train_state["progress"]
    assert best["step"] == 10 and best["best_val_loss"] == 2.9


def test_the_plateau_schedule_lowers_the_rate_when_and_only_when_it_should(tmp_path, corpus,
                                                                           monkeypatch):
    vals = {5: 3.0, 10: 2.9, 15: 2.95, 20: 2.96, 25: 2.8, 30: 2.85, 35: 2.86, 40: 2.7}
    scripted_validation(monkeypatch, vals)
    args = [*SMALL, "--set", "train.max_steps=40", "--set", "train.lr_schedule=plateau",
            "--set", "train.warmup_steps=0",                 # every rate from the plateau rule
            "--set", "train.plateau_patience=1", "--set", "train.plateau_factor=0.5"]
    r = run_cli("train", write_config(tmp_path, corpus, out="whole"), "-q", *args)
    assert r.exit_code == 0, r.output
    lr = rates(tmp_path / "whole")
    # evaluations at 15 and 20 bring no best: more than plateau_patience=1, so the cut at 20
    assert {lr[s] for s in range(1, 21)} == {0.002}
    assert {lr[s] for s in range(21, 36)} == {0.001}            # 25 improves, 30 and 35 do not
    assert {lr[s] for s in range(36, 41)} == {0.0005}
    interrupt_at(monkeypatch, 17)                                # between the two bad evaluations
    r = run_cli("train", write_config(tmp_path, corpus, out="split"), "-q", *args)
    assert r.exit_code == 130, r.output
    monkeypatch.undo()
    scripted_validation(monkeypatch, vals)
    assert run_cli("train", "--resume", tmp_path / "split", "-q").exit_code == 0
    assert rates(tmp_path / "split") == lr
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "split")
    assert all((a[k] == b[k]).all() for k in a)


def test_plateau_rule_never_goes_below_min_lr():
    cfg = Config().train
    cfg.lr, cfg.min_lr, cfg.lr_schedule, cfg.plateau_patience, cfg.plateau_factor = 1.0, 0.3, "plateau", 0, 0.5
    p = Progress()
    for _ in range(5):
        LearningRate(cfg, p, 1).after_evaluation(improved=False)
    assert p.lr_scale == 0.3


# -- the report and --dry-run ------------------------------------------------------------------

def test_a_dry_run_reports_and_writes_nothing(tmp_path, corpus):
    r = run_cli("train", write_config(tmp_path, corpus), *SMALL, "--set", "train.max_steps=50",
                "--set", "train.lr_schedule=auto", "--dry-run")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "run").exists()
    cfg = yaml.safe_load(r.stdout)
    assert cfg["train"]["max_steps"] == 50 and cfg["model"]["hidden_size"] == 16
    n_train = int(len(corpus.read_text()) * 0.9)
    # parameters of a 2-layer LSTM 16 with embedding 8 over the corpus's vocabulary
    V = len(set(corpus.read_text()))
    params = V * 8 + 4 * 16 * (8 + 16 + 2) + 4 * 16 * (16 + 16 + 2) + V * 16 + V
    assert f"corpus: {n_train:,} training + " in r.stderr
    assert f"{params:,} parameters = {params / n_train:.2g} per training character" in r.stderr
    assert "ms per step (batch 4 x 8)" in r.stderr and "per evaluation" in r.stderr
    assert "schedule: cosine from 0.002 to 0 at step 50" in r.stderr
