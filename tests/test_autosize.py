"""model.size auto (charrnn/train/autosize.py): the rule on a table, its resolution into plain
sizes in the stored config, explicit sizes winning, and the refusals."""

import math

import numpy as np
import pytest
import yaml

from charrnn.config import Config, load_config
from charrnn.train import autosize
from charrnn.train.autosize import Candidate, choose, corpus_class, predict, run_steps
from tests.conftest import run_cli

SHAPE = ["--set", "model.embed_size=8", "--set", "train.batch_size=4", "--set", "train.seq_len=8",
         "--set", "train.eval_every=5", "--set", "train.checkpoint_every=5",
         "--set", "train.warmup_steps=0"]


@pytest.fixture
def table(monkeypatch):
    """A small table over tiny candidates: `big` (2x16, dropout 0.25) is measured lower than
    `small` (1x8) at 10 steps, higher at 1000."""
    monkeypatch.setattr(autosize, "CANDIDATES", {"small": Candidate(1, 8, 0.0),
                                                 "big": Candidate(2, 16, 0.25)})
    monkeypatch.setattr(autosize, "CORPORA", {"tiny": 3600, "huge": 10**9})
    monkeypatch.setattr(autosize, "MEASURED", (
        ("tiny", "small", 10, 2.0), ("tiny", "small", 1000, 1.0),
        ("tiny", "big", 10, 1.9), ("tiny", "big", 1000, 1.2),
        ("huge", "small", 10, 3.0)))


# -- the rule ---------------------------------------------------------------------------------

def test_a_prediction_interpolates_in_log_steps_and_reaches_only_so_far():
    points = [(100, 2.0), (400, 1.0)]
    assert predict(points, 200) == pytest.approx(1.5)          # halfway in log(steps)
    assert predict(points, 100) == 2.0 and predict(points, 400) == 1.0
    assert predict(points, 70) == 2.0 and predict(points, 600) == 1.0     # within REACH 1.5
    assert predict(points, 60) is None and predict(points, 601) is None
    assert predict(points, 10**6, reach=math.inf) == 1.0
    assert predict([], 100) is None


def test_the_choice_is_the_lowest_prediction_at_each_candidates_own_steps(table):
    both_long = choose("tiny", lambda c: 1000)
    assert (both_long.candidate, both_long.predicted, both_long.within) == ("small", 1.0, True)
    assert choose("tiny", lambda c: 10).candidate == "big"
    # the small model is fast enough for 1000 steps where the big one makes 10
    assert choose("tiny", lambda c: 1000 if c.hidden_size == 8 else 10).candidate == "small"
    halfway = choose("tiny", lambda c: 100)          # small 1.5, big 1.55
    assert halfway.candidate == "small" and halfway.predicted == pytest.approx(1.5)


def test_a_budget_beyond_the_table_counts_each_candidates_nearest_measurement(table):
    beyond = choose("tiny", lambda c: 10**6)
    assert (beyond.candidate, beyond.predicted, beyond.within) == ("small", 1.0, False)
    assert choose("tiny", lambda c: 1).candidate == "big"


def test_the_corpus_is_the_measured_one_nearest_in_log_characters():
    assert corpus_class(50_000) == "shk-100K" and corpus_class(250_000) == "shk-100K"
    assert corpus_class(400_000) == "shk-1M" and corpus_class(2_000_000) == "shk-1M"
    assert corpus_class(4_000_000) == "code-10M" and corpus_class(10**9) == "code-10M"


def test_the_steps_are_those_of_the_runs_first_limit():
    t = Config().train
    t.max_minutes = 1.0
    assert run_steps(t, 0.1, 50) == 600
    t.max_steps = 500
    assert run_steps(t, 0.1, 50) == 500
    t.max_epochs = 3
    assert run_steps(t, 0.1, 50) == 150
    t.max_minutes = None
    assert run_steps(t, None, 50) == 150


def test_the_table_names_only_candidates_and_corpora_it_defines():
    for corpus, name, steps, loss in autosize.MEASURED:
        assert corpus in autosize.CORPORA and name in autosize.CANDIDATES
        assert steps > 0 and 0 < loss < 5
    assert {c.hidden_size for c in autosize.CANDIDATES.values()} <= set(autosize.STEP_SECONDS)


def test_the_timing_runs_one_workers_share_of_the_batch(monkeypatch):
    from charrnn.nn.model import CharRNN

    seen = []
    monkeypatch.setattr(CharRNN, "loss_and_grad",
                        lambda self, x, y: seen.append((x.shape, self.hidden_size)))
    cfg = load_config(None, ["train.threads=2", "train.batch_size=6", "train.seq_len=5"])
    assert autosize.time_step(cfg, 7, 24, np.arange(100) % 7) >= 0
    assert seen == [((3, 5), 24)] * (autosize.TIMED + 1)


# -- the config --------------------------------------------------------------------------------

def test_the_config_records_the_keys_a_file_and_the_overrides_give(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  hidden_size: 64\ntrain:\n  lr: 0.01\n")
    cfg = load_config(str(path), ["model.dropout=0.2"])
    assert cfg.given == {"model.hidden_size", "train.lr", "model.dropout"}
    assert Config().given == frozenset()


# -- a run ------------------------------------------------------------------------------------

def train(tmp_path, corpus, *sets, extra=""):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  path: {corpus}\ntrain:\n  out_dir: {tmp_path / 'run'}\n{extra}")
    args = [a for s in sets for a in ("--set", s)]
    return run_cli("train", cfg, *SHAPE, "--set", "model.size=auto", *args)


def test_auto_resolves_to_plain_sizes_in_the_stored_config(tmp_path, corpus, table):
    r = train(tmp_path, corpus, "train.max_steps=10")
    assert r.exit_code == 0, r.output
    assert ("model.size auto: 2x16, dropout 0.25, the lowest measured loss for 10 steps on a "
            "text of 3,600 characters (predicted 1.900 nats/char") in r.stderr
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]
    assert (stored["size"], stored["layers"], stored["hidden_size"], stored["dropout"]) == \
        (None, 2, 16, 0.25)
    assert run_cli("sample", tmp_path / "run", "-n", "20", "--seed", "1").exit_code == 0
    resumed = run_cli("train", "--resume", tmp_path / "run", "--set", "train.max_steps=15")
    assert resumed.exit_code == 0, resumed.output
    assert "model.size auto" not in resumed.stderr
    again = run_cli("train", "--resume", tmp_path / "run", "--set", "model.size=auto")
    assert again.exit_code == 2 and "model.size cannot change when a run resumes" in again.stderr


def test_explicit_sizes_win_from_the_command_line_and_from_the_file(tmp_path, corpus, table):
    r = run_cli("train", "--data", corpus, *SHAPE, "--set", "model.size=auto",
                "--set", "train.max_steps=1000", "--set", "model.hidden_size=12", "--dry-run")
    assert r.exit_code == 0, r.output
    model = yaml.safe_load(r.stdout)["model"]
    assert (model["layers"], model["hidden_size"], model["dropout"]) == (1, 12, 0.0)
    assert "model.size auto: 1x8, dropout 0" in r.stderr and "model.hidden_size as given" in r.stderr
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  path: {corpus}\nmodel:\n  size: auto\n  dropout: 0.1\n  layers: 3\n")
    r = run_cli("train", cfg, *SHAPE, "--set", "train.max_steps=10", "--dry-run")
    model = yaml.safe_load(r.stdout)["model"]
    assert (model["size"], model["layers"], model["hidden_size"], model["dropout"]) == \
        (None, 3, 16, 0.1)
    assert "model.layers, model.dropout as given" in r.stderr


def test_a_minutes_budget_is_converted_by_timing_each_size_here(tmp_path, corpus, table,
                                                               monkeypatch):
    monkeypatch.setattr(autosize, "time_step", lambda cfg, v, hidden, ids: hidden / 800)
    r = run_cli("train", "--data", corpus, *SHAPE, "--set", "model.size=auto",
                "--set", "train.max_minutes=0.1", "--dry-run")      # small 600 steps, big 300
    assert r.exit_code == 0, r.output
    assert "model.size auto: 1x8, dropout 0, the lowest measured loss for 600 steps" in r.stderr


@pytest.mark.parametrize("sets, says", [
    (["model.cell=gru", "train.max_steps=5"], "its table is measured for the lstm cell, not gru"),
    (["train.lr_schedule=constant"], "it chooses by the run's budget, and this run has none"),
    (["train.engine=torch", "train.max_steps=5"], "its timings are of the numpy engine"),
])
def test_auto_refuses_where_it_has_nothing_to_choose_from(tmp_path, corpus, sets, says):
    r = run_cli("train", "--data", corpus, "--set", "model.size=auto",
                *[a for s in sets for a in ("--set", s)], "--dry-run")
    assert r.exit_code == 2 and says in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_auto_refuses_init_from(tmp_path, corpus, table):
    assert train(tmp_path, corpus, "train.max_steps=5").exit_code == 0
    r = run_cli("train", "--data", corpus, "--init-from", tmp_path / "run",
                "--set", "model.size=auto", "--set", "train.max_steps=5",
                "--set", f"train.out_dir={tmp_path / 'second'}")
    assert r.exit_code == 2 and "--init-from takes the checkpoint's sizes" in r.stderr


# -- the default -------------------------------------------------------------------------------

def dry_run(corpus, *sets):
    r = run_cli("train", "--data", corpus, *SHAPE, *[a for s in sets for a in ("--set", s)],
                "--dry-run")
    assert r.exit_code == 0, r.output
    return yaml.safe_load(r.stdout)["model"], r.stderr


def test_a_time_budget_with_no_size_given_chooses_by_default(corpus, table, monkeypatch):
    monkeypatch.setattr(autosize, "time_step", lambda cfg, v, hidden, ids: hidden / 800)
    model, said = dry_run(corpus, "train.max_minutes=0.1")
    assert (model["size"], model["layers"], model["hidden_size"]) == (None, 1, 8)
    assert "model.size auto: 1x8, dropout 0" in said


@pytest.mark.parametrize("sets", [
    ["train.max_steps=10"],                                   # no time budget
    ["train.max_minutes=0.1", "model.dropout=0.0"],           # a size given
    ["train.max_minutes=0.1", "model.size=null"],             # auto turned off
    ["train.max_minutes=0.1", "model.cell=gru"],              # a cell the table does not know
])
def test_the_default_keeps_the_plain_sizes_where_it_does_not_apply(corpus, table, sets):
    model, said = dry_run(corpus, *sets)
    assert (model["size"], model["layers"], model["hidden_size"]) == (None, 2, 256)
    assert "model.size auto" not in said
