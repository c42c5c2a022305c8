"""model.size auto (charrnn/train/autosize.py): the rule on a table, its resolution into plain
sizes in the stored config, explicit sizes winning, and the refusals."""

import numpy as np
import pytest
import yaml

from charrnn.config import Config, load_config
from charrnn.train import autosize
from charrnn.train.autosize import Candidate, choose, corpus_class, predict, run_steps
from tests.conftest import make_corpus, run_cli

SHAPE = ["--set", "model.embed_size=8", "--set", "train.batch_size=4", "--set", "train.seq_len=8",
         "--set", "train.eval_every=5", "--set", "train.checkpoint_every=5",
         "--set", "train.warmup_steps=0"]


@pytest.fixture
def table(monkeypatch):
    """A small table over tiny candidates: `big` (2x16, dropout 0.25) is measured lower than
    `small` (1x8) at 10 steps, higher at 1000."""
    monkeypatch.setattr(autosize, "CANDIDATES", {"small": Candidate(1, 8, 0.0),
                                                 "big": Candidate(2, 16, 0.25)})
    monkeypatch.setattr(autosize, "STEP_SECONDS", {8: 0.06, 16: 0.06})
    monkeypatch.setattr(autosize, "CORPORA", {"tiny": 3600, "huge": 10**9})
    monkeypatch.setattr(autosize, "MEASURED", (
        ("tiny", 0.01, "small", 10, 2.0), ("tiny", 1, "small", 1000, 1.0),
        ("tiny", 0.01, "big", 10, 1.9), ("tiny", 1, "big", 1000, 1.2),
        ("huge", 0.01, "small", 10, 3.0)))


# -- the rule ---------------------------------------------------------------------------------

def test_a_prediction_interpolates_in_log_steps_and_reaches_only_so_far():
    points = [(100, 2.0), (400, 1.0)]
    assert predict(points, 200) == pytest.approx(1.5)          # halfway in log(steps)
    assert predict(points, 100) == 2.0 and predict(points, 400) == 1.0
    assert predict(points, 70) == 2.0 and predict(points, 600) == 1.0     # within REACH 1.5
    assert predict(points, 60) is None and predict(points, 601) is None
    assert predict([], 100) is None


def test_the_choice_is_the_lowest_prediction_at_each_candidates_own_steps(table):
    both_long = choose("tiny", lambda c: 1000)
    assert (both_long.candidate, both_long.loss, both_long.minutes) == ("small", 1.0, None)
    assert choose("tiny", lambda c: 10).candidate == "big"
    # the small model is fast enough for 1000 steps where the big one makes 10
    assert choose("tiny", lambda c: 1000 if c.hidden_size == 8 else 10).candidate == "small"
    halfway = choose("tiny", lambda c: 100)          # small 1.5, big 1.55
    assert halfway.candidate == "small" and halfway.loss == pytest.approx(1.5)
    only_big = choose("tiny", lambda c: 1000, allowed=lambda c: c.dropout > 0)
    assert (only_big.candidate, only_big.loss) == ("big", 1.2)
    assert choose("tiny", lambda c: 1000, allowed=lambda c: c.layers == 3) is None


def test_a_budget_beyond_the_table_takes_the_best_at_its_nearest_budget(table):
    beyond = choose("tiny", lambda c: 10**6)           # 1000 minutes: nearest is 1 min
    assert (beyond.candidate, beyond.loss, beyond.minutes, beyond.steps) == ("small", 1.0, 1, 10**6)
    below = choose("tiny", lambda c: 1)                # 0.001 min: nearest is 0.01 min
    assert (below.candidate, below.loss, below.minutes) == ("big", 1.9, 0.01)


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
    for corpus, minutes, name, steps, loss in autosize.MEASURED:
        assert corpus in autosize.CORPORA and name in autosize.CANDIDATES
        hidden = autosize.CANDIDATES[name].hidden_size
        assert steps == round(minutes * 60 / autosize.STEP_SECONDS[hidden]) and 0 < loss < 5
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
    # batches of 4 x 8 are 1/64 of the table's 32 x 64: 10 steps here count as 0.16, below
    # the table, so the best at its shortest budget
    assert ("model.size auto: 2x16, dropout 0.25, this budget (1 step of 32 x 64 characters) is "
            "beyond the measured ones, so the best at the table's nearest budget, 0.01 min: 1.900 "
            "nats/char on tiny (3,600 training characters), the measured text nearest this one "
            "(3,224) (docs/model-size.md)") in r.stderr
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]
    assert (stored["size"], stored["layers"], stored["hidden_size"], stored["dropout"]) == \
        (None, 2, 16, 0.25)
    assert run_cli("sample", tmp_path / "run", "-n", "20", "--seed", "1").exit_code == 0
    resumed = run_cli("train", "--resume", tmp_path / "run", "--set", "train.max_steps=15")
    assert resumed.exit_code == 0, resumed.output
    assert "model.size auto" not in resumed.stderr
    again = run_cli("train", "--resume", tmp_path / "run", "--set", "model.size=auto")
    assert again.exit_code == 2 and ("model.size cannot change when a run resumes (it chooses a "
                                     "new run's sizes); remove that --set, or start a new run") \
        in again.stderr


@pytest.fixture
def long_corpus(tmp_path):
    """A text long enough for batches of the table's 32 x 64 characters."""
    make_corpus(tmp_path / "long.txt", n=24000)
    return tmp_path / "long.txt"


TABLE_BATCH = ["--set", "train.batch_size=32", "--set", "train.seq_len=64"]


def test_steps_count_in_the_tables_characters_per_step(tmp_path, long_corpus, table):
    r = run_cli("train", "--data", long_corpus, *SHAPE, *TABLE_BATCH, "--set", "model.size=auto",
                "--set", "train.max_steps=1000", "--dry-run")
    assert "model.size auto: 1x8, dropout 0, the lowest loss the measured table predicts for " \
           "this budget, 1,000 steps of 32 x 64 characters: 1.000 nats/char" in r.stderr, r.output


def test_explicit_sizes_choose_among_the_candidates_that_have_them(tmp_path, corpus, table):
    r = run_cli("train", "--data", corpus, *SHAPE, "--set", "model.size=auto",
                "--set", "train.max_steps=64000", "--set", "model.hidden_size=16", "--dry-run")
    assert r.exit_code == 0, r.output
    model = yaml.safe_load(r.stdout)["model"]
    assert (model["layers"], model["hidden_size"], model["dropout"]) == (2, 16, 0.25)
    assert "model.size auto: 2x16, dropout 0.25, the lowest loss" in r.stderr
    assert "model.hidden_size as given" in r.stderr
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  path: {corpus}\nmodel:\n  size: auto\n  dropout: 0.1\n  layers: 3\n")
    r = run_cli("train", cfg, *SHAPE, "--set", "train.max_steps=10", "--dry-run")
    model = yaml.safe_load(r.stdout)["model"]
    assert (model["size"], model["layers"], model["hidden_size"], model["dropout"]) == \
        (None, 3, 256, 0.1)
    assert ("model.size auto: no measured size has model.layers 3, model.dropout 0.1; the others "
            "keep their defaults") in r.stderr


def test_a_minutes_budget_is_converted_by_timing_each_size_here(tmp_path, long_corpus, table,
                                                               monkeypatch):
    monkeypatch.setattr(autosize, "time_step", lambda cfg, v, hidden, ids: hidden / 800)
    r = run_cli("train", "--data", long_corpus, *SHAPE, *TABLE_BATCH, "--set", "model.size=auto",
                "--set", "train.max_minutes=0.1", "--dry-run")      # small 600 steps, big 300
    assert r.exit_code == 0, r.output
    assert "model.size auto: 1x8, dropout 0, the lowest loss the measured table predicts for " \
           "this budget, 600 steps" in r.stderr


@pytest.mark.parametrize("sets, says", [
    (["model.cell=gru", "train.max_steps=5"], "its table is measured for the lstm cell, not gru"),
    (["train.lr_schedule=constant"], "it chooses by the run's budget, and this run has none"),
    (["train.engine=torch", "train.max_steps=5"], "its table is measured on the numpy engine"),
])
def test_auto_refuses_where_it_has_nothing_to_choose_from(tmp_path, corpus, sets, says):
    r = run_cli("train", "--data", corpus, "--set", "model.size=auto",
                *[a for s in sets for a in ("--set", s)], "--dry-run")
    assert r.exit_code == 2 and says in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_auto_refuses_init_from_and_the_default_takes_the_checkpoints_sizes(tmp_path, corpus,
                                                                             table):
    assert train(tmp_path, corpus, "train.max_steps=5").exit_code == 0      # a 2x16 run
    r = run_cli("train", "--data", corpus, "--init-from", tmp_path / "run",
                "--set", "model.size=auto", "--set", "train.max_steps=5",
                "--set", f"train.out_dir={tmp_path / 'second'}")
    assert r.exit_code == 2 and "with --init-from the model is the checkpoint's" in r.stderr
    r = run_cli("train", "--data", corpus, *SHAPE, "--init-from", tmp_path / "run",
                "--set", "train.max_minutes=0.05", "--dry-run")
    assert r.exit_code == 0, r.output
    model = yaml.safe_load(r.stdout)["model"]
    assert (model["layers"], model["hidden_size"]) == (2, 16)


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
