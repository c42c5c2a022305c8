"""Issue 15: a schedule that ends with the run's budget (steps, epochs or minutes), early stopping,
the plateau schedule, the start-of-run report and --dry-run."""

import json
import math
import os
import signal

import numpy as np
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

def test_time_horizon_counts_steps_evaluations_and_checkpoints():
    # 60 s left, 0.25 s a step, 2.5 s an evaluation every 10 steps: 60 / (0.25 + 0.25) steps,
    # the last evaluation falling on the last step
    assert budget.time_horizon(100, 60.0, budget.Costs(0.25, 2.5, 0.0), 10, 1000) == 100 + 120
    # a 1 s checkpoint every 50 steps and the final one: 60 = 110 x 0.25 + 11 x 2.5 + 3 x 1 + 2
    # (step 210: evaluations at 110..210, checkpoints at 150, 200 and the final one)
    assert budget.time_horizon(100, 60.0, budget.Costs(0.25, 2.5, 1.0), 10, 50) == 100 + 110
    costs = budget.Costs(1.0, 5.0, 0.0)
    assert budget.time_horizon(7, 0.0, costs, 10, 10) == 8          # always at least one step
    # the final evaluation when the last step has none: 4 steps + 5 s fit in 9 s, 5 do not
    assert budget.seconds_needed(7, 2, costs, 10, 10) == 2 + 5
    assert budget.time_horizon(1, 9.0, costs, 10, 1000) == 5
    cfg = Config().train
    cfg.max_steps, cfg.max_epochs = 500, 3
    assert lr_mod.step_horizon(cfg, 100) == 300
    cfg.max_epochs = None
    assert lr_mod.step_horizon(cfg, 100) == 500


def test_the_budget_checks_and_the_run_clock(monkeypatch):
    assert [budget.checks_passed(f) for f in (0, 0.249, 0.25, 0.6, 0.89, 0.9, 1.2)] == \
        [0, 0, 1, 2, 3, 4, 4]
    now = [10.0]
    monkeypatch.setattr(budget.time, "perf_counter", lambda: now[0])
    clock = budget.RunClock(spent=30.0)                        # 30 s spent in earlier sessions
    now[0] = 12.5
    assert clock.now() == 32.5


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_a_moved_horizon_keeps_the_rate_and_ends_at_the_floor(kind):
    cfg = Config().train
    cfg.lr, cfg.min_lr, cfg.lr_schedule, cfg.warmup_steps, cfg.max_minutes = 0.004, 1e-4, kind, 10, 1
    p = Progress(step=0, horizon=200)
    lr = LearningRate(cfg, p, 1000)
    seen = []
    for step in range(400):
        p.step = step
        before = lr.at(step)
        if step in (60, 130, 150):                         # later, sooner, later again
            lr.move_horizon({60: 300, 130: 180, 150: 260}[step])
            assert lr.at(step) == before                   # bit for bit: no jump
            # recomputing the schedule from step 0 would jump by several of its steepest steps
            assert abs(lr_at(cfg, step, 0.0, p.horizon) - before) > 5 * (0.004 - 1e-4) * 1.6 / 190
        seen.append(lr.at(step))
    assert seen[260] == pytest.approx(1e-4) and seen[259] > 1e-4      # the floor at the horizon
    steps = [abs(b - a) for a, b in zip(seen[10:], seen[11:])]
    # no step changes the rate by more than the steepest schedule in between could:
    # lr0 x pi/2 over its shortest stretch (50 steps from 130 to 180)
    assert max(steps) <= (0.004 - 1e-4) * math.pi / 2 / 50


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

def test_the_report_says_when_a_minutes_schedule_is_estimated(tmp_path, corpus):
    r = run_cli("train", write_config(tmp_path, corpus), *SMALL, "--set", "train.max_minutes=2",
                "--set", "train.lr_schedule=cosine", "--dry-run")
    assert r.exit_code == 0, r.output
    assert ("schedule: cosine from 0.002 to 0 at the step where train.max_minutes runs out (its "
            "final evaluation included), estimated after timing the first 23 steps and again "
            "after the first evaluation and at 25%, 50%, 75%, 90% of the budget") in r.stderr


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


# -- a machine whose speed changes: the horizon estimated again ----------------------------------

BUDGET = 30.0                     # seconds: train.max_minutes=0.5
SLOW, FAST, EVALUATION, WRITE = 0.25, 0.0625, 1.0, 0.5    # seconds (binary fractions: exact sums)


@pytest.fixture
def changing_clock(monkeypatch):
    """A fake clock on a machine that speeds up: steps take SLOW s until step 60, FAST s after;
    each evaluation EVALUATION s and each checkpoint write WRITE s. Returns the clock ([now])."""
    now = [0.0]
    monkeypatch.setattr("time.perf_counter", lambda: now[0])

    def taking(seconds_of, real):
        def work(run, *a, **kw):
            now[0] += seconds_of(run)
            return real(run, *a, **kw)
        return work

    monkeypatch.setattr(loop_mod, "train_step", taking(
        lambda run: SLOW if run.progress.step < 60 else FAST, loop_mod.train_step))
    monkeypatch.setattr(loop_mod, "validation_loss",
                        taking(lambda run: EVALUATION, loop_mod.validation_loss))
    monkeypatch.setattr(loop_mod, "save", taking(lambda run: WRITE, loop_mod.save))
    return now


CHANGING = [*SMALL, "--set", "train.max_minutes=0.5", "--set", "train.lr_schedule=cosine",
            "--set", "train.warmup_steps=10", "--set", "train.eval_every=40",
            "--set", "train.checkpoint_every=40", "--set", "train.threads=1"]


@pytest.fixture
def moves(monkeypatch):
    """[(step, horizon before, horizon after)] of every move of the horizon."""
    seen, real = [], LearningRate.move_horizon

    def move(self, horizon):
        seen.append((self.progress.step, self.progress.horizon, horizon))
        real(self, horizon)

    monkeypatch.setattr(LearningRate, "move_horizon", move)
    return seen


def test_a_machine_that_speeds_up_still_ends_at_the_budget(tmp_path, corpus, changing_clock,
                                                            moves):
    # the old estimate, fixed once at step 23 from SLOW steps: 23 + (30 - 23 x SLOW) / SLOW =
    # step 120, reached after 60 SLOW and 60 FAST steps and 3 evaluations (each with at most
    # two writes) and the final write: far short of the budget
    assert 60 * SLOW + 60 * FAST + 3 * (EVALUATION + 2 * WRITE) + WRITE < 0.98 * BUDGET
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *CHANGING)
    assert r.exit_code == 0 and "reached the end of the schedule" in r.stderr, r.output
    end = changing_clock[0]            # after the final evaluation and checkpoint
    assert abs(end - BUDGET) <= 0.02 * BUDGET
    progress = load_checkpoint(str(tmp_path / "run" / "last.safetensors")).train_state["progress"]
    moved = [(step, a, b) for step, a, b in moves if a != b]
    assert len(moved) >= 3 and moved[-1][2] == progress["step"] == progress["horizon"]
    # the rate is continuous at each move: the change from the step before it to the step
    # after it is no larger than the schedule's own largest change between two steps
    lr = rates(tmp_path / "run")
    change = {k: abs(lr[k + 1] - lr[k]) for k in range(11, max(lr))}     # after the warmup
    at_moves = {step for step, _, _ in moved}
    own = max(d for k, d in change.items() if k not in at_moves)
    assert all(change[step] <= own for step in at_moves)
    cfg = load_checkpoint(str(tmp_path / "run" / "last.safetensors")).config.train
    for step, _, horizon in moved:      # as recomputing the schedule from step 0 would not be
        assert abs(lr_at(cfg, step, 0.0, horizon) - lr[step + 1]) > own


@pytest.mark.parametrize("stop", [70, 95])      # between the moves at 40 and 80; 80 and 109
def test_a_resume_repeats_the_moves_of_the_horizon_bit_for_bit(tmp_path, corpus, changing_clock,
                                                               moves, monkeypatch, stop):
    assert run_cli("train", write_config(tmp_path, corpus, out="whole"), "-q",
                   *CHANGING).exit_code == 0
    whole_moves = list(moves)
    moves.clear()
    interrupt_at(monkeypatch, stop)
    changing_clock[0] = 0.0                                    # the same timings again
    r = run_cli("train", write_config(tmp_path, corpus, out="split"), "-q", *CHANGING)
    assert r.exit_code == 130, r.output
    saved = load_checkpoint(str(tmp_path / "split" / "last.safetensors")).train_state["progress"]
    assert saved["step"] == stop and saved["horizon_anchor"] is not None   # decisions kept
    r = run_cli("train", "--resume", tmp_path / "split", "-q")
    assert r.exit_code == 0 and "reached the end of the schedule" in r.stderr, r.output
    assert "learning rate" not in r.stderr           # the note: the rate goes on as it would
    assert moves == whole_moves and any(step > stop for step, a, b in moves if a != b)
    assert rates(tmp_path / "whole") == rates(tmp_path / "split")       # every step's rate
    for name in ("last.safetensors", "best.safetensors"):
        a, b = weights(tmp_path / "whole", name), weights(tmp_path / "split", name)
        assert all((a[k] == b[k]).all() for k in a)                      # bit for bit
    losses = [{k: m[k] for k in ("step", "train_loss", "val_loss") if k in m}
              for m in metric_lines(tmp_path / "whole")]
    assert losses == [{k: m[k] for k in ("step", "train_loss", "val_loss") if k in m}
                      for m in metric_lines(tmp_path / "split")]


def test_a_resume_with_a_new_budget_starts_its_clock_again(tmp_path, corpus, changing_clock,
                                                            monkeypatch):
    interrupt_at(monkeypatch, 70)
    assert run_cli("train", write_config(tmp_path, corpus), "-q", *CHANGING).exit_code == 130
    ckpt = load_checkpoint(str(tmp_path / "run" / "last.safetensors"))
    was = LearningRate(ckpt.config.train, Progress(**ckpt.train_state["progress"]), 1).at(70)
    resumed_at = changing_clock[0]
    r = run_cli("train", "--resume", tmp_path / "run", "-q", "--set", "train.max_minutes=0.25")
    assert r.exit_code == 0 and "reached the end of the schedule" in r.stderr, r.output
    # the note: the schedule starts again for the new limit, from the peak (SMALL's lr)
    assert (f"the learning rate of step 71 is 0.002 (it would have been {was:.3g})"
            in r.stderr), r.stderr
    assert rates(tmp_path / "run")[71] == 0.002
    # 15 s from the resume, the final evaluation and checkpoint included
    assert abs(changing_clock[0] - resumed_at - 15.0) <= 0.02 * 15.0


def test_the_quick_timing_of_an_evaluation_scales_with_the_machines_load():
    from types import SimpleNamespace

    run = SimpleNamespace(eval_seconds=20.0, step_seconds=0.4, progress=Progress())
    assert loop_mod.eval_guess(run) == 20.0                   # no step timed yet
    run.progress.step_seconds = 0.7                           # at the last estimate, not 0.4
    assert loop_mod.eval_guess(run) == pytest.approx(35.0)


def test_a_horizon_saved_before_the_budgets_figures_stays_where_it_was():
    from charrnn.store.checkpoint import TrainState

    old = {"progress": {"step": 300, "horizon": 500, "lr": 0.001}, "optim": {}, "rng":
           {"dropout": {}, "batch": {}}}
    p = TrainState.from_dict(old).progress
    assert p.horizon_fixed and p.seconds == 0.0 and p.horizon_anchor is None   # the defaults
    cfg = Config().train
    cfg.max_minutes, cfg.lr_schedule = 1.0, "cosine"
    p.timed_steps, p.timed_seconds, p.eval_seconds = 50, 5.0, 1.0     # due, were it not fixed
    LearningRate(cfg, p, 1000).fix_horizon(45.0, lambda: 1.0)
    assert p.horizon == 500 and p.horizon_anchor is None
    new = TrainState.from_dict({**old, "progress": {**old["progress"], "seconds": 12.5}})
    q = new.progress
    assert not q.horizon_fixed
    q.timed_steps, q.timed_seconds, q.eval_seconds = 50, 5.0, 1.0
    LearningRate(cfg, q, 1000).fix_horizon(45.0, lambda: 1.0)      # not fixed: it moves
    assert q.horizon < 500 and q.horizon_anchor[0] == 300


def test_a_move_at_most_divides_the_steps_left_by_shrink():
    cfg = Config().train
    cfg.max_minutes, cfg.lr_schedule = 1.0, "cosine"
    p = Progress(step=100, horizon=500, seconds=59.0, timed_steps=10, timed_seconds=1.0,
                 eval_seconds=0.0, save_seconds=0.0)
    LearningRate(cfg, p, 1000).fix_horizon(59.0, lambda: 0.0)     # 1 s left: 10 steps
    assert p.horizon == 100 + 400 // lr_mod.SHRINK and p.horizon_anchor[0] == 100
    p.timed_steps, p.timed_seconds, p.eval_timed = 10, 0.01, False     # now far faster
    p.eval_seconds = 0.0
    LearningRate(cfg, p, 1000).fix_horizon(59.0, lambda: 0.0)     # a move that adds: unbounded
    assert p.horizon == 100 + 1000                             # 1 s at 1 ms a step


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_a_first_estimate_that_caps_the_warmup_behind_the_step_decays_from_the_peak(kind):
    cfg = Config().train       # warmup 100 steps, capped at a tenth of the horizon once fixed
    cfg.max_minutes, cfg.lr_schedule, cfg.min_lr = 1.0, kind, 1e-4
    p = Progress(step=23, timed_steps=20, timed_seconds=10.0)      # 0.5 s a step: ~70 steps
    lr = LearningRate(cfg, p, 1000)
    assert lr.at(23) == pytest.approx(cfg.lr * 24 / 101)           # on the warmup's ramp
    lr.fix_horizon(15.0, lambda: 10.0)
    assert p.horizon // 10 < 23                                    # the cap is behind us
    assert lr.at(23) == cfg.lr and lr.at(24) < cfg.lr              # the peak, then the decay
    assert lr.at(p.horizon) == pytest.approx(1e-4)


def test_a_constant_rate_run_keeps_its_final_evaluation_inside_the_budget(tmp_path, corpus,
                                                                          changing_clock):
    args = [*CHANGING, "--set", "train.lr_schedule=constant", "--set", "train.max_minutes=0.25"]
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *args)
    assert r.exit_code == 0 and "reached train.max_minutes=0.25" in r.stderr, r.output
    # 40 steps (10 s), an evaluation with its best checkpoint (1.5 s) and a checkpoint (0.5 s),
    # 4 steps more, then the final evaluation, best and last checkpoints: 15 s, not 15 + 2
    assert 0.98 * 15.0 <= changing_clock[0] <= 15.0


def test_the_report_of_a_resumed_minutes_run_says_its_end_is_estimated_so_far():
    cfg = Config().train
    cfg.max_minutes, cfg.lr_schedule = 1.0, "cosine"
    line = LearningRate(cfg, Progress(step=300, horizon=700), 1000).report_line()
    assert line == ("schedule: cosine from 0.004 to 0 at step 700 as estimated so far from what "
                    "is left of train.max_minutes (estimated again as the run goes)")
    kept = LearningRate(cfg, Progress(step=300, horizon=700, horizon_fixed=True), 1000)
    assert kept.report_line() == "schedule: cosine from 0.004 to 0 at step 700"


def test_the_evaluation_guess_counts_a_pass_fixed_cost_once(monkeypatch):
    """time_eval fits fixed + per-character seconds to two slices: a pass of 0.1 s set-up and
    40 us per character is guessed exactly, where one slice scaled up would count the set-up
    once per slice length."""
    from types import SimpleNamespace

    from charrnn.train import report

    timed = []

    def fake(run, chars):
        timed.append(chars)
        return 0.1 + 40e-6 * chars
    monkeypatch.setattr(report, "_time_slice", fake)
    run = SimpleNamespace(config=SimpleNamespace(train=SimpleNamespace(eval_chars=None)),
                          val_ids=np.zeros(111_541, np.uint8))
    assert report.time_eval(run) == pytest.approx(0.1 + 40e-6 * 111_540, rel=1e-9)
    assert timed == list(report.EVAL_SLICES)
    run.config.train.eval_chars = 50_000
    assert report.time_eval(run) == pytest.approx(0.1 + 40e-6 * 49_999, rel=1e-9)
    timed.clear()
    run.val_ids = np.zeros(3_001, np.uint8)                 # short: the whole text, timed
    assert report.time_eval(run) == pytest.approx(0.1 + 40e-6 * 3_000, rel=1e-9)
    assert timed == [3_000]
