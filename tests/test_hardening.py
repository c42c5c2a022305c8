"""Issue 14's faults, one test (or more) per case: diverging runs, resumes with changed settings,
a run folder with only best.safetensors, orphaned workers, run folder locks and small ones.

The text encodings of fault 5 are tested with the corpus reader (tests/test_corpus*.py).
"""

import errno
import json
import math
import os
import signal
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from charrnn.config import Config, ModelConfig
from charrnn.infer.evaluate import DEFAULT_CHUNK, chunk_for, evaluate_ids
from charrnn.nn.model import CharRNN
from charrnn.train import divergence, resume
from charrnn.store.checkpoint import load_checkpoint, save_checkpoint
from charrnn.train.folder import LOCK_NAME, FolderLock
from charrnn.train.metrics import Metrics
from charrnn.train.run import open_run
from charrnn.store.vocab import Vocab
from tests.conftest import make_corpus, run_cli, wait_until
from tests.test_train import SMALL, write_config


def one_line_error(r, code, *needles):
    assert r.exit_code == code, r.output
    assert r.stderr.count("charrnn: error: ") == 1 and "Traceback" not in r.output, r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr


def strict_json_lines(path):
    """Every line of a metrics.jsonl parsed as standard JSON (NaN / Infinity refused)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return [json.loads(line, parse_constant=refuse) for line in open(path)]


def finite_eval(run_dir, corpus):
    """`charrnn eval` of every checkpoint left in run_dir: exit 0 and a finite loss each."""
    for name in ("last.safetensors", "best.safetensors"):
        path = run_dir / name
        if path.exists():
            assert np.isfinite(load_checkpoint(str(path)).params["decoder.weight"]).all()
            r = run_cli("eval", path, corpus, "--json")
            assert r.exit_code == 0 and math.isfinite(json.loads(r.stdout)["loss"]), r.output


# -- 1. a diverging run never leaves a diverged checkpoint ----------------------------------------

@pytest.mark.parametrize("cell,lr", [("rnn", 20), ("lstm", 1e12)])
def test_a_diverging_run_stops_before_saving_a_diverged_state(tmp_path, corpus, cell, lr):
    # the cases: a relu RNN at SGD lr 20 and an LSTM at lr 1e12, no clipping,
    # evaluating and checkpointing every step
    relu = ("--set", "model.nonlinearity=relu") if cell == "rnn" else ()
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL,
                "--set", f"model.cell={cell}", *relu,
                "--set", "train.optimizer=sgd", "--set", f"train.lr={lr}",
                "--set", "train.clip=none", "--set", "train.eval_every=1",
                "--set", "train.checkpoint_every=1", "--set", "train.max_steps=50")
    one_line_error(r, 1, "the run diverged at step", "nothing from that state was saved")
    run = tmp_path / "run"
    finite_eval(run, corpus)
    strict_json_lines(run / "metrics.jsonl")
    best = load_checkpoint(str(run / "best.safetensors")) if (run / "best.safetensors").exists() else None
    if best is not None:         # what was kept is below the divergence ceiling
        val = best.train_state["progress"]["best_val_loss"]
        assert val < divergence.loss_ceiling(best.train_state["progress"]["first_loss"], len(best.vocab))


def test_a_checkpoint_waits_for_the_next_steps_loss(tmp_path, corpus, monkeypatch):
    """last.safetensors of step k is written only once step k+1's loss (on step k's weights) is
    known to be finite: a NaN at step 7 leaves step 5's checkpoint, not step 6's."""
    real = CharRNN.loss_and_grad
    calls = {"n": 0}

    def nan_at_step_7(self, *args, **kwargs):
        calls["n"] += 1
        loss, state, d0 = real(self, *args, **kwargs)
        return (float("nan") if calls["n"] == 7 else loss), state, d0

    monkeypatch.setattr(CharRNN, "loss_and_grad", nan_at_step_7)
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.threads=1",
                "--set", "train.checkpoint_every=1", "--set", "train.eval_every=100",
                "--set", "train.max_steps=20")
    one_line_error(r, 1, "diverged at step 7", "keeps last.safetensors (step 5)")
    assert load_checkpoint(str(tmp_path / "run" / "last.safetensors")).train_state[
        "progress"]["step"] == 5


def test_the_ceiling_has_a_uniform_guess_as_floor():
    ceiling = divergence.loss_ceiling(4.0, 65)               # 3 x max(4.0, ln 65 = 4.17)
    assert ceiling == pytest.approx(3 * math.log(65))
    assert divergence.loss_ceiling(1.0, 65) == ceiling        # a fine-tuned run: the ln V floor
    assert divergence.loss_ceiling(35.0, 65) == 105.0         # an IRNN's large first loss
    assert divergence.step_problem(1e9, 1e9) is None          # finite: judged against the ceiling
    assert "gradient norm became infinite" in divergence.step_problem(1.0, math.inf)
    assert "not a number" in divergence.val_problem(float("nan"))


def exploding_losses(monkeypatch, steps):
    """CharRNN.loss_and_grad reporting 1000x its loss at the given (1-based) calls."""
    real = CharRNN.loss_and_grad
    calls = {"n": 0}

    def boosted(self, *args, **kwargs):
        calls["n"] += 1
        loss, state, d0 = real(self, *args, **kwargs)
        return (loss * 1000 if calls["n"] in steps else loss), state, d0

    monkeypatch.setattr(CharRNN, "loss_and_grad", boosted)


def spy_saves(monkeypatch):
    import charrnn.train.loop as loop_mod
    saved, real = [], loop_mod.save

    def spy(run, name, *args):
        saved.append((name, run.progress.step))
        real(run, name, *args)

    monkeypatch.setattr(loop_mod, "save", spy)
    return saved


def test_a_burst_is_survived_but_its_states_are_never_saved(tmp_path, corpus, monkeypatch):
    exploding_losses(monkeypatch, {6, 7})         # the losses of the states of steps 5 and 6
    saved = spy_saves(monkeypatch)
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.threads=1",
                "--set", "train.checkpoint_every=1", "--set", "train.eval_every=100",
                "--set", "train.max_steps=10")
    assert r.exit_code == 0, r.output
    last_steps = [step for name, step in saved if name == "last.safetensors"]
    assert last_steps == [1, 2, 3, 4, 7, 8, 9, 10]


def test_a_lasting_explosion_stops_the_run(tmp_path, corpus, monkeypatch):
    monkeypatch.setattr(divergence, "EXPLODED_STEPS", 4)
    exploding_losses(monkeypatch, set(range(3, 100)))
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.threads=1",
                "--set", "train.checkpoint_every=1", "--set", "train.eval_every=100",
                "--set", "train.max_steps=50")
    one_line_error(r, 1, "the run diverged at step 6: the training loss reached",
                   "4 steps in a row", "keeps last.safetensors (step 1)")


def test_metrics_stay_standard_json(tmp_path):
    m = Metrics(str(tmp_path / "metrics.jsonl"))
    m.log(step=1, train_loss=float("nan"), grad_norm=float("inf"), lr=0.1)
    m.close()
    assert strict_json_lines(tmp_path / "metrics.jsonl") == [
        {"step": 1, "train_loss": None, "grad_norm": None, "lr": 0.1}]


def test_a_checkpoint_with_nan_weights_is_refused_by_sample_and_eval(tmp_path, text_file):
    vocab = Vocab.from_text(text_file.read_text())
    cfg = Config(model=ModelConfig(cell="gru", layers=1, hidden_size=4, embed_size=3))
    model = CharRNN(len(vocab), cfg.model, seed=0)
    model.params["rnn.weight_hh_l0"][0, 0] = np.nan
    path = tmp_path / "nan.safetensors"
    save_checkpoint(str(path), model, vocab, cfg)
    for args in (["sample", path, "-n", "5"], ["eval", path, text_file]):
        one_line_error(run_cli(*args), 1, "NaN or infinite values (in rnn.weight_hh_l0)",
                       "diverged")


# -- 2. resume with changed settings ---------------------------------------------------------

@pytest.fixture
def five_steps(tmp_path, corpus):
    """A run folder trained for 5 steps (batch 4 x 8, constant rate)."""
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=5")
    assert r.exit_code == 0, r.output
    return tmp_path / "run"


@pytest.mark.parametrize("setting,reason", [
    ("train.batch_size=8", "the saved batch position and carried state depend on it"),
    ("train.seq_len=16", "the saved batch position and carried state depend on it"),
    ("train.optimizer=sgd", "optimizer state"),
    ("data.val_fraction=0.2", "boundary between training and validation"),
    ("model.forget_bias=1", "acts only when a run starts"),
    ("train.out_dir=elsewhere", "the run lives in its folder")])
def test_a_resume_refuses_a_setting_its_state_depends_on(five_steps, setting, reason):
    before = {p.name: p.read_bytes() for p in five_steps.iterdir()}
    r = run_cli("train", "--resume", five_steps, "-q", "--set", setting, "--set", "train.max_steps=9")
    one_line_error(r, 2, f"{setting.split('=')[0]} cannot change when a run resumes", reason)
    assert {p.name: p.read_bytes() for p in five_steps.iterdir()} == before
    assert not os.path.exists("elsewhere")


def test_every_setting_has_a_resume_rule():
    for section in ("data", "model", "train", "sample"):
        for key in vars(getattr(Config(), section)):
            assert resume.rule(f"{section}.{key}") in (resume.EXACT, resume.CHANGES, resume.REFUSED)


def test_a_resume_takes_a_new_rate_and_says_what_it_does(five_steps):
    r = run_cli("train", "--resume", five_steps, "-q", "--set", "train.lr=0.001",
                "--set", "train.max_steps=7")
    assert r.exit_code == 0, r.output
    assert "train.lr changes from 0.002 to 0.001: the run goes on from the saved state" in r.stderr
    assert "the learning rate of step 6 is 0.001 (it would have been 0.002)" in r.stderr
    assert load_checkpoint(str(five_steps / "last.safetensors")).train_state["progress"]["lr"] == 0.001


def test_extending_a_finished_cosine_run_says_the_rate_rises_again(tmp_path, corpus):
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=5",
                "--set", "train.lr_schedule=cosine", "--set", "train.min_lr=0.0001")
    assert r.exit_code == 0, r.output
    r = run_cli("train", "--resume", tmp_path / "run", "-q", "--set", "train.max_steps=10")
    assert r.exit_code == 0, r.output
    assert ("the learning rate of step 6 is 0.00105 (it would have been 0.0001); the cosine "
            "schedule now ends at step 10 instead of 5, so the rate rises again") in r.stderr


def test_a_resume_with_nothing_left_to_do_says_how_to_go_on(five_steps):
    r = run_cli("train", "--resume", five_steps, "-q")
    one_line_error(r, 2, "already meets train.max_steps=5", "--set train.max_steps=10")


def test_exact_settings_change_without_a_note(five_steps):
    r = run_cli("train", "--resume", five_steps, "-q", "--set", "train.max_steps=6",
                "--set", "train.eval_every=3", "--set", "sample.temperature=0.5")
    assert r.exit_code == 0 and "changes" not in r.stderr and "rate" not in r.stderr, r.output


# -- 3. a run folder with best.safetensors and no last.safetensors ---------------------------

def test_resume_falls_back_on_best_when_last_is_missing(five_steps):
    (five_steps / "last.safetensors").unlink()
    r = run_cli("train", "--resume", five_steps, "--set", "train.max_steps=8")
    assert r.exit_code == 0, r.output
    assert "has no last.safetensors; resuming from best.safetensors" in r.stderr
    assert "resuming the run in" in r.stderr and "at step 5" in r.stderr
    assert load_checkpoint(str(five_steps / "last.safetensors")).train_state["progress"]["step"] == 8


def test_a_folder_without_checkpoints_sends_the_user_to_a_new_run(tmp_path, corpus):
    folder = tmp_path / "run"
    folder.mkdir()
    r = run_cli("train", "--resume", folder)
    one_line_error(r, 1, "holds no checkpoint to resume", f"train.out_dir={folder}")
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=2")
    assert r.exit_code == 0, r.output        # and the way it names works


def test_a_full_disk_before_any_checkpoint_does_not_claim_one_is_intact(tmp_path, corpus,
                                                                        monkeypatch):
    import charrnn.train.run as run_mod

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_mod, "write_checkpoint", disk_full)
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=9")
    one_line_error(r, 1, "No space left on device", "no best.safetensors had been written yet",
                   "start the run again")
    assert "intact" not in r.stderr


# -- 4. worker processes end with their parent -----------------------------------------------

def children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return kids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are processes on Linux only")
def test_workers_die_when_the_trainer_is_killed(tmp_path, corpus):
    cmd = [sys.executable, "-m", "charrnn", "train", str(write_config(tmp_path, corpus)), "-q",
           *SMALL, "--set", "train.threads=2", "--set", "train.batch_size=16"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers = wait_until(lambda: children(proc.pid), what="the worker process")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_until(lambda: not any(alive(w) for w in workers), timeout=10,
                   what="the orphaned worker to end")
    finally:
        proc.kill()
        proc.wait()


# -- 6. a running run owns its folder ---------------------------------------------------------

def test_a_second_run_into_a_running_runs_folder_is_refused(tmp_path, corpus):
    folder = tmp_path / "run"
    folder.mkdir()
    held = FolderLock(str(folder))                 # a run that has not saved yet
    try:
        r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=2")
        one_line_error(r, 1, f"the run folder {folder} is in use by another charrnn train "
                             f"(process {os.getpid()})")
        assert os.listdir(folder) == [LOCK_NAME]
    finally:
        held.close()
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=2")
    assert r.exit_code == 0, r.output
    assert LOCK_NAME not in os.listdir(folder)     # given up at the end


def test_a_killed_runs_lock_does_not_stick(tmp_path, corpus):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from charrnn.train.folder "
                               "import FolderLock; lock = FolderLock(sys.argv[1]); print('held', "
                               "flush=True); time.sleep(60)", str(folder)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=2")
        one_line_error(r, 1, "is in use by another charrnn train")
    finally:
        holder.kill()
        holder.wait()
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=2")
    assert r.exit_code == 0, r.output


# -- 7. smaller ones ----------------------------------------------------------------------------

def test_a_yaml_key_given_twice_is_refused(tmp_path, corpus):
    cfg = tmp_path / "twice.yaml"
    cfg.write_text(f"data:\n  path: {corpus}\ntrain:\n  lr: 0.01\n  max_steps: 2\n  lr: 0.5\n")
    one_line_error(run_cli("train", cfg), 2, "'lr' is given twice (lines 4 and 6); keep one")


def test_a_run_with_no_limit_says_so_even_when_quiet(tmp_path, corpus):
    heard = []
    cfg = Config()
    cfg.data.path, cfg.train.out_dir = str(corpus), str(tmp_path / "run")
    cfg.train.batch_size, cfg.train.seq_len = 4, 8
    run = open_run(cfg, warn=heard.append)
    run.close()
    assert heard == ["it trains until Ctrl-C, which saves it (or set train.max_minutes, max_steps)"]


@pytest.mark.parametrize("setting,said", [
    ("sample.prime=\u2603", "sample.prime has 1 character(s)"),
    ("train.batch_size=4000", "needs a corpus of at least")])
def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path, corpus, setting, said):
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.sample_every=5",
                "--set", setting)
    assert r.exit_code != 0 and said in r.stderr, r.output
    assert not (tmp_path / "run").exists()


def test_validation_of_a_large_vocabulary_is_chunked_by_its_size():
    V = 20000
    assert chunk_for(65) == DEFAULT_CHUNK and chunk_for(63710) * 63710 * 8 <= 32 << 20
    model = CharRNN(V, ModelConfig(cell="gru", layers=1, hidden_size=8, embed_size=4), seed=0)
    ids = np.random.default_rng(0).integers(0, V, 1500)
    small, _ = evaluate_ids(model, ids, chunk_len=50, pipeline=False)
    tracemalloc.start()
    total, n = evaluate_ids(model, ids, pipeline=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == pytest.approx(small, rel=1e-6) and n == 1499
    assert peak < 3 * (32 << 20), peak / 2**20      # was ~1024 x V x 8 bytes, three times over


# -- found by trying to break the above ------------------------------------------------------

def test_resuming_a_checkpoint_file_goes_on_in_its_own_folder(five_steps, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(five_steps, copy)
    before = {p.name: p.read_bytes() for p in five_steps.iterdir()}
    r = run_cli("train", "--resume", copy / "last.safetensors", "-q", "--set", "train.max_steps=7")
    assert r.exit_code == 0, r.output
    assert {p.name: p.read_bytes() for p in five_steps.iterdir()} == before   # untouched
    assert load_checkpoint(str(copy / "last.safetensors")).train_state["progress"]["step"] == 7


def test_the_evaluation_is_timed_the_way_validation_runs(monkeypatch, corpus, tmp_path):
    import charrnn.infer.evaluate as evaluate_mod
    from charrnn.train.report import time_eval

    seen = []
    monkeypatch.setattr(evaluate_mod, "evaluate_ids",
                        lambda model, ids, pipeline=True, **kw: seen.append(pipeline) or (1.0, 1))
    cfg = Config()
    cfg.data.path, cfg.train.out_dir = str(corpus), str(tmp_path / "run")
    cfg.train.batch_size, cfg.train.seq_len, cfg.train.threads = 8, 8, 2
    run = open_run(cfg, dry_run=True)
    try:
        time_eval(run)
    finally:
        run.close()
    assert seen and set(seen) == {True}       # two workers: validation uses the pipeline


def test_a_full_disk_at_the_metrics_is_one_line(tmp_path, corpus, monkeypatch):
    def disk_full(self, **fields):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Metrics, "log", disk_full)
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=9")
    one_line_error(r, 1, "could not write", "metrics.jsonl (No space left on device)",
                   "free some space")


def test_a_run_that_cannot_take_a_folder_leaves_it_to_its_owner(tmp_path, corpus, monkeypatch):
    import charrnn.train.folder as folder_mod

    folder = tmp_path / "run"
    folder.mkdir()
    held = FolderLock(str(folder))
    real = folder_mod.prepare_out_dir
    monkeypatch.setattr(folder_mod, "prepare_out_dir", lambda d: real(d) or True)   # "created"
    monkeypatch.setattr(folder_mod, "in_use", lambda d: False)     # both started at once
    try:
        r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL, "--set", "train.max_steps=2")
        one_line_error(r, 1, "is in use by another charrnn train")
        assert os.listdir(folder) == [LOCK_NAME]                 # the owner's folder stays
    finally:
        held.close()


def test_a_new_run_into_a_running_runs_folder_is_told_it_is_in_use(five_steps, corpus, tmp_path):
    held = FolderLock(str(five_steps))
    try:
        r = run_cli("train", write_config(tmp_path, corpus), "-q", *SMALL)
        one_line_error(r, 1, "is in use by another charrnn train")
        assert "--resume" not in r.stderr
    finally:
        held.close()


def test_a_diverged_resume_suggests_the_limits_it_was_given(five_steps, monkeypatch):
    monkeypatch.setattr(CharRNN, "loss_and_grad", lambda self, *a, **k: (float("nan"), None, None))
    r = run_cli("train", "--resume", five_steps, "-q", "--set", "train.max_steps=40")
    one_line_error(r, 1, "--set train.lr=0.0002 --set train.max_steps=40")


def test_the_suggested_limit_is_above_the_current_step(five_steps):
    r = run_cli("train", "--resume", five_steps, "-q", "--set", "train.max_steps=3")
    one_line_error(r, 2, "the run is at step 5, which already meets train.max_steps=3",
                   "--set train.max_steps=10")


def test_a_finished_minutes_schedule_is_not_run_again():
    from charrnn.config import ConfigError
    from charrnn.store.checkpoint import Progress

    cfg = Config()
    cfg.train.max_minutes = 1.0
    with pytest.raises(ConfigError, match="schedule already ended at step 100"):
        resume.change_notes(cfg, cfg, Progress(step=100, horizon=100), 50)


def test_a_run_folder_inside_a_corpus_folder_is_not_corpus(tmp_path, monkeypatch):
    texts = tmp_path / "texts"
    texts.mkdir()
    for k in range(3):
        make_corpus(texts / f"part{k}.txt", seed=k)
    monkeypatch.chdir(texts)
    r = run_cli("train", "--data", ".", "-q", *SMALL, "--set", "train.max_steps=5",
                "--set", "train.out_dir=runs/here")
    assert r.exit_code == 0, r.output
    r = run_cli("train", "--resume", "runs/here", "-q", "--set", "train.max_steps=7")
    assert r.exit_code == 0, r.output           # its config.yaml and metrics.jsonl were not read


def test_sigterm_while_a_run_is_set_up_stops_it_like_ctrl_c():
    from charrnn.train.errors import TrainingInterrupted
    from charrnn.train.loop import set_up_signals

    with pytest.raises(TrainingInterrupted, match="before training began"):
        with set_up_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            wait_until(lambda: False, timeout=5, what="the signal")


def test_words_for_what_a_stopped_run_keeps(tmp_path):
    from types import SimpleNamespace

    from charrnn.train.loop import kept_words

    run = SimpleNamespace(saved={}, path=lambda name: f"R/{name}")
    assert kept_words(run) == "no checkpoint was saved"
    run.saved = {"last.safetensors": 4}
    assert kept_words(run) == "R/last.safetensors (step 4) is intact"


def test_printed_paths_are_shell_words():
    from charrnn.fileio import shell_path

    assert shell_path("runs/my run") == "'runs/my run'"
    assert shell_path("-weird") == "./-weird"


def test_a_stdin_run_resumed_without_stdin_says_to_pipe_it_again(tmp_path, corpus):
    run = tmp_path / "run"
    r = run_cli("train", "--data", "-", "-q", *SMALL, "--set", "train.max_steps=3",
                "--set", f"train.out_dir={run}", input=corpus.read_text())
    assert r.exit_code == 0, r.output
    r = run_cli("train", "--resume", run, "-q", "--set", "train.max_steps=5", input="")
    one_line_error(r, 1, "read its text from standard input and none came", "data.path=FILE")
    r = run_cli("train", "--resume", run, "-q", "--set", "train.max_steps=5",
                input=corpus.read_text())
    assert r.exit_code == 0, r.output           # the way it names works
