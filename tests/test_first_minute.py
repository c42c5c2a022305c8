"""The first minute of a new user: `charrnn train --data my.txt` with no config, the run folder
it names, `charrnn init`, run folders wherever a checkpoint goes, the temporary files of
interrupted writes, and the examples at the end of every --help."""

import os
import shlex
import subprocess
import sys

import click
import pytest
import yaml
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.config import Config, config_to_dict, field_comments, load_config, starter_config
from charrnn.fileio import TEMP_PREFIX, is_temp_name, remove_stale_temporaries, temp_name
from charrnn.store.checkpoint import load_checkpoint
from charrnn.store.checkpoint import resolve_checkpoint
from charrnn.train.run import out_dir_for, train_config
from tests.conftest import LSTM_CHECKPOINT, TINY_TEXT, make_corpus, save_tiny_checkpoint

# a small model and short run, for the tests that are about the command and not the defaults
SMALL = ["--set", "model.hidden_size=8", "--set", "model.embed_size=4", "--set", "model.layers=1",
         "--set", "train.batch_size=4", "--set", "train.seq_len=8", "--set", "train.eval_every=2",
         "--set", "train.threads=1"]


def invoke(*args, input=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, prog_name="charrnn")
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def assert_one_line_error(result, code, *words):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Work in tmp_path (runs/ goes there), with my.txt: a corpus of the user's own."""
    monkeypatch.chdir(tmp_path)
    make_corpus(tmp_path / "my.txt")
    return tmp_path


def chars(path):
    """The number of characters of a text file, as the opening line writes it."""
    return f"{len(path.read_text(encoding='utf-8')):,}"


# -- 1. train --data, no config -----------------------------------------------------------------

def test_train_from_data_alone_with_the_defaults(in_tmp):
    r = invoke("train", "--data", "my.txt", "--set", "train.max_steps=2")
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"charrnn: training on my.txt ({chars(in_tmp / 'my.txt')} characters, ")
    assert lines[0].endswith("the run goes to runs/my")
    assert lines[1] == "charrnn: sample from it with: charrnn sample runs/my"
    run = in_tmp / "runs" / "my"
    assert {"best.safetensors", "last.safetensors", "config.yaml"} <= set(os.listdir(run))
    saved = load_checkpoint(str(run / "last.safetensors")).config
    expected = Config()
    expected.data.path, expected.train.out_dir, expected.train.max_steps = "my.txt", "runs/my", 2
    assert saved == expected                          # the defaults and nothing else
    assert invoke("sample", "runs/my", "-n", 20, "--seed", 1).exit_code == 0


def test_quiet_has_no_opening_lines_and_resume_says_where_it_continues(in_tmp):
    assert invoke("train", "--data", "my.txt", "-q", *SMALL, "--set", "train.max_steps=2").stderr \
        .startswith("step 2:")
    r = invoke("train", "--resume", "runs/my", "--set", "train.max_steps=4")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[:2] == [
        "charrnn: resuming the run in runs/my at step 2 (my.txt)",
        "charrnn: sample from it with: charrnn sample runs/my"]


@pytest.mark.parametrize("config,args,out_dir", [
    (None, ["--data", "my.txt"], "runs/my"),
    (None, ["--data", "texts/notes.v2.txt"], "runs/notes.v2"),
    (None, ["--set", "data.path=my.txt"], "runs/my"),              # --data's long form
    (None, ["--data", "my.txt", "--set", "train.out_dir=elsewhere"], "elsewhere"),
    ("train: {out_dir: mine}", ["--data", "my.txt"], "mine"),      # the file's out_dir wins
    ("model: {cell: gru}", ["--data", "my.txt"], "runs/my"),
    ("data: {path: my.txt}", [], "runs/shakespeare"),               # a config alone: as before
    (None, ["--data", "-"], "runs/stdin"),
])
def test_the_run_folder_is_named_after_the_text(tmp_path, config, args, out_dir):
    path = None
    if config is not None:
        path = tmp_path / "c.yaml"
        path.write_text(config)
    data = args[args.index("--data") + 1] if "--data" in args else None
    overrides = [a for i, a in enumerate(args) if i and args[i - 1] == "--set"]
    cfg = train_config(path and str(path), data, overrides)
    assert cfg.train.out_dir == out_dir


def test_settings_apply_as_defaults_then_file_then_data_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {path: from-file.txt}\nmodel: {hidden_size: 32, layers: 1}\n")
    cfg = train_config(str(path), "from-data.txt", ["model.hidden_size=16"])
    assert (cfg.data.path, cfg.model.hidden_size, cfg.model.layers) == ("from-data.txt", 16, 1)
    assert cfg.model.cell == Config().model.cell
    assert out_dir_for("..") == os.path.join("runs", "text") and out_dir_for(".x") == "runs/x"


def test_stdin_trains_into_runs_stdin_and_says_so(in_tmp):
    text = (in_tmp / "my.txt").read_text(encoding="utf-8")
    r = invoke("train", "--data", "-", *SMALL, "--set", "train.max_steps=2", input=text)
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[0].startswith(f"charrnn: training on standard input "
                                               f"({chars(in_tmp / 'my.txt')} characters")
    assert "the run goes to runs/stdin" in r.stderr.splitlines()[0]
    assert (in_tmp / "runs" / "stdin" / "last.safetensors").exists()


@pytest.mark.parametrize("args,words", [
    (["train"], ["give the text to train on with --data FILE"]),
    (["train", "my.txt"], ["my.txt is not a config file", "charrnn train --data my.txt"]),
    (["train", "--resume", "runs/x", "--data", "my.txt"], ["--resume takes its config and text"]),
    (["train", "--data", "nope.txt"], ["nope.txt"]),
])
def test_a_wrong_first_command_is_one_line(in_tmp, args, words):
    r = invoke(*args)
    assert_one_line_error(r, 1 if "nope.txt" in args else 2, *words)
    assert not (in_tmp / "runs" / "my").exists()


# -- 2. init -------------------------------------------------------------------------------------

def test_init_writes_every_field_and_loads_back_as_the_defaults(tmp_path):
    r = invoke("init")
    assert r.exit_code == 0 and r.stderr == ""
    path = tmp_path / "starter.yaml"
    path.write_text(r.stdout, encoding="utf-8")
    assert load_config(str(path)) == Config()
    assert yaml.safe_load(r.stdout) == config_to_dict(Config())       # every field, written out


def test_init_comments_are_the_config_sources_comments():
    notes = field_comments()
    text = starter_config()
    for name, (above, end) in notes.items():
        if "." in name:
            assert above or end, f"{name} has no comment in charrnn/config.py"
        for comment in above + end:
            assert f"# {comment}" in text
    assert notes["train.lr"] == ([], ["peak learning rate (after warmup); measured with auto: "
                                      "docs/defaults.md"])
    assert notes["train.threads"][0][0].startswith("workers per training step")   # a block above
    assert "  lr: 0.004" in text and "  prime: ''" in text and "  max_steps: null" in text


def test_init_to_a_file_refuses_to_overwrite_unless_forced(tmp_path):
    path = tmp_path / "my.yaml"
    r = invoke("init", path)
    assert r.exit_code == 0 and r.stdout == ""
    assert r.stderr == (f"charrnn: wrote {path}; edit it (data.path: your text), then: "
                        f"charrnn train {path}\n")
    assert load_config(str(path)) == Config()
    path.write_text("mine\n")
    assert_one_line_error(invoke("init", path), 2, f"{path} exists", "--force")
    assert path.read_text() == "mine\n"
    assert invoke("init", path, "--force").exit_code == 0
    assert load_config(str(path)) == Config()
    assert_one_line_error(invoke("init", tmp_path / "no" / "such.yaml"), 1, "cannot write")


# -- 3. a run folder wherever a checkpoint goes -------------------------------------------------

@pytest.fixture
def run_dir(tmp_path):
    """A run folder with a best and a last checkpoint that differ (other seeds)."""
    run = tmp_path / "run"
    run.mkdir()
    save_tiny_checkpoint(run / "best.safetensors", **LSTM_CHECKPOINT)
    save_tiny_checkpoint(run / "last.safetensors", **{**LSTM_CHECKPOINT, "seed": 7})
    (tmp_path / "text.txt").write_text(TINY_TEXT, encoding="utf-8")
    return run


def test_resolve_checkpoint_prefers_best_then_last(run_dir):
    said = []
    assert resolve_checkpoint(str(run_dir), said.append) == str(run_dir / "best.safetensors")
    assert said == [f"using {run_dir / 'best.safetensors'} (lowest validation loss)"]
    (run_dir / "best.safetensors").unlink()
    assert resolve_checkpoint(str(run_dir)) == str(run_dir / "last.safetensors")
    assert resolve_checkpoint("a/file.safetensors") == "a/file.safetensors"


@pytest.mark.parametrize("command", [
    ["sample", "{ckpt}", "-n", "30", "--seed", "3", "--prime", "the "],
    ["eval", "{ckpt}", "{text}", "--json"],
    ["perplexity", "{ckpt}", "{text}"],
    ["diagnose", "{ckpt}", "{text}", "--window", "20", "--json"],
])
def test_commands_take_a_run_folder_as_its_best_checkpoint(run_dir, command):
    text = run_dir.parent / "text.txt"

    def output(ckpt):
        return invoke(*[a.format(ckpt=ckpt, text=text) for a in command])

    folder, best, last = output(run_dir), output(run_dir / "best.safetensors"), \
        output(run_dir / "last.safetensors")
    assert folder.exit_code == 0, folder.output
    assert folder.stderr == f"charrnn: using {run_dir / 'best.safetensors'} (lowest validation loss)\n"
    assert folder.stdout == best.stdout != last.stdout
    (run_dir / "best.safetensors").unlink()           # no best yet: the last
    r = output(run_dir)
    assert r.stdout == last.stdout and "last.safetensors (latest; no best.safetensors yet)" in r.stderr


@pytest.mark.parametrize("command", ["sample", "eval", "diagnose"])
def test_a_folder_without_a_checkpoint_is_one_line(tmp_path, command):
    (tmp_path / "notes").mkdir()
    (tmp_path / "t.txt").write_text(TINY_TEXT)
    r = invoke(command, tmp_path / "notes", *([] if command == "sample" else [tmp_path / "t.txt"]))
    assert_one_line_error(r, 1, f"the folder {tmp_path / 'notes'} holds no checkpoint",
                          "best.safetensors or last.safetensors")


def test_init_from_takes_a_run_folder(in_tmp):
    assert invoke("train", "--data", "my.txt", "-q", *SMALL, "--set", "train.max_steps=2").exit_code == 0
    r = invoke("train", "--data", "my.txt", "--init-from", "runs/my", *SMALL,
               "--set", "train.max_steps=2", "--set", "train.out_dir=runs/tuned")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[0] == "charrnn: using runs/my/best.safetensors (lowest validation loss)"
    assert "the run goes to runs/tuned" in r.stderr.splitlines()[1]


# -- 4. temporary files of interrupted writes ----------------------------------------------------

def test_the_writer_and_the_cleaner_share_one_name_pattern():
    name = temp_name("last.safetensors")
    assert name.startswith(TEMP_PREFIX) and name.endswith(".last.safetensors")
    assert is_temp_name(name) and is_temp_name(".tmp-ab_9xyz0.config.yaml")   # mkstemp's alphabet
    for other in [".tmp-abc.last.safetensors", ".tmp-ABCDEFGH.last.safetensors", ".tmp-12345678",
                  "x.tmp-12345678.last.safetensors", ".tmp-123456789.last.safetensors", "last.safetensors"]:
        assert not is_temp_name(other), other


def interrupted_write(folder, name):
    """A process killed between writing a file's temporary copy and renaming it (kill -9)."""
    code = ("import os, sys; from charrnn import fileio; os.replace = lambda a, b: os._exit(9); "
            "fileio.write_atomically(sys.argv[1], b'x' * 1000)")
    p = subprocess.run([sys.executable, "-c", code, os.path.join(folder, name)], timeout=60)
    assert p.returncode == 9


# files that look close to charrnn's temporary files but are not, and must survive a start
NOT_OURS = {".tmp-notes": b"mine", ".tmp-ABCDEFGH.last.safetensors": b"a", "keep.txt": b"k",
            "x.tmp-12345678.last.safetensors": b"b", ".tmp-1234567.last.safetensors": b"c"}


def test_a_resume_removes_the_temporaries_of_interrupted_writes_and_nothing_else(in_tmp):
    assert invoke("train", "--data", "my.txt", "-q", *SMALL, "--set", "train.max_steps=2").exit_code == 0
    run = in_tmp / "runs" / "my"
    for name in ("last.safetensors", "best.safetensors", "config.yaml"):
        interrupted_write(run, name)
    stale = sorted(n for n in os.listdir(run) if n.startswith(TEMP_PREFIX))
    assert len(stale) == 3 and all(is_temp_name(n) for n in stale)
    for name, data in NOT_OURS.items():
        (run / name).write_bytes(data)
    (run / ".tmp-abcdefgh.folder").mkdir()                   # the pattern, but not a file
    r = invoke("train", "--resume", "runs/my", "--set", "train.max_steps=4")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[0] == ("charrnn: removed 3 temporary file(s) of interrupted "
                                        "writes from runs/my")
    assert not [n for n in os.listdir(run) if is_temp_name(n) and (run / n).is_file()]
    assert {n: (run / n).read_bytes() for n in NOT_OURS} == NOT_OURS
    assert (run / ".tmp-abcdefgh.folder").is_dir()


def test_a_new_run_in_a_folder_of_temporaries_removes_them(in_tmp):
    folder = in_tmp / "runs" / "my"
    folder.mkdir(parents=True)
    interrupted_write(folder, "last.safetensors")
    (folder / "keep.txt").write_text("k")
    assert invoke("train", "--data", "my.txt", "-q", *SMALL, "--set", "train.max_steps=2").exit_code == 0
    assert sorted(os.listdir(folder)) == ["best.safetensors", "config.yaml", "keep.txt",
                                          "last.safetensors", "metrics.jsonl"]
    assert remove_stale_temporaries(str(in_tmp / "no-such-folder")) == []


# -- 5. examples in every --help, shell completion ----------------------------------------------

def commands():
    return sorted(cli.commands)


def help_examples(name):
    r = invoke(name, "--help")
    assert r.exit_code == 0
    _, _, tail = r.stdout.partition("Examples:\n")
    return [line.strip() for line in tail.splitlines() if line.strip()]


@pytest.mark.parametrize("name", commands())
def test_every_help_ends_with_real_examples(name):
    lines = help_examples(name)
    assert 2 <= len(lines) <= 3, lines
    for line in lines:
        for part in line.split("#")[0].replace("&&", "|").split("|"):
            words = shlex.split(part)
            if not words or words[0] != "charrnn":
                continue                                  # cat, less: the other end of a pipe
            parent = click.Context(cli, info_name="charrnn")
            cli.commands[words[1]].make_context(words[1], words[2:], parent=parent)   # it parses
    aliases = {"perplexity": "eval"}
    assert any(f"charrnn {aliases.get(name, name)}" in line for line in lines)


def test_shell_completion_through_click():
    env = {**os.environ, "_CHARRNN_COMPLETE": "bash_source"}
    p = subprocess.run([sys.executable, "-m", "charrnn"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and "_charrnn_completion" in p.stdout
    assert "_CHARRNN_COMPLETE=bash_source charrnn" in invoke("--help").stdout
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    assert "_CHARRNN_COMPLETE=bash_source charrnn" in readme
