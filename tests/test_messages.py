"""What the command line says (issue 32): commands printed as the user invoked charrnn, every
evaluation line kept on a terminal, too many threads, the eval alias in --help."""

import os
import pty
import re
import subprocess
import sys

from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.fast.parallel import available_cores

TEXT = "the quick brown fox jumps over the lazy dog\n" * 8
SMALL = ["--set", "train.batch_size=2", "--set", "train.seq_len=8", "--set", "model.hidden_size=8",
         "--set", "model.embed_size=4", "--set", "model.layers=1"]
BIN = os.path.dirname(sys.executable)


def without_venv_path():
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if os.path.realpath(p) != os.path.realpath(BIN))
    return {**os.environ, "PATH": path}


def test_the_sample_hint_is_the_command_as_invoked(tmp_path):
    (tmp_path / "my.txt").write_text(TEXT)
    script = os.path.join(BIN, "charrnn")
    for argv, expected in (([script], script), ([sys.executable, "-m", "charrnn"],
                                                f"{sys.executable} -m charrnn")):
        r = subprocess.run([*argv, "train", "--data", "my.txt", "--dry-run", *SMALL],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120,
                           env=without_venv_path())
        assert r.returncode == 0, r.stderr
        assert f"charrnn: sample from it with: {expected} sample runs/my\n" in r.stderr


def test_every_evaluation_line_stays_above_the_bar_on_a_terminal(tmp_path):
    (tmp_path / "my.txt").write_text(TEXT)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "train", "--data", "my.txt", *SMALL,
                             "--set", "train.max_steps=6", "--set", "train.eval_every=2",
                             "--set", "train.log_every=1", "--set", "train.threads=1"],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:                        # the terminal's other end closed: it ended
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    screen = out.decode("utf-8", "replace")
    assert [int(s) for s in re.findall(r"step (\d+): val loss", screen)] == [2, 4, 6]
    assert "val=" not in screen                # no stale figure in the bar


def test_more_threads_than_cores_warn_once(tmp_path):
    (tmp_path / "my.txt").write_text(TEXT * 4)
    cores = available_cores()
    r = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "my.txt"), "--dry-run", *SMALL,
                                 "--set", "train.batch_size=64", "--set",
                                 f"train.threads={cores + 1}",
                                 "--set", f"train.out_dir={tmp_path / 'r'}"])
    assert r.exit_code == 0, r.output
    assert r.stderr.count(f"train.threads is {cores + 1} but this machine gives charrnn "
                          f"{cores} core") == 1


def test_help_says_perplexity_is_eval():
    r = CliRunner().invoke(cli, ["--help"])
    assert re.search(r"\n  perplexity +The same as eval \(another name for it\)\.\n", r.output)


def test_inspect_leaves_out_a_feature_that_only_rises_and_colours_what_a_unit_spans(tmp_path):
    import json

    from charrnn.store.vocab import Vocab
    from tests.conftest import LSTM_CHECKPOINT, save_tiny_checkpoint

    vocab = Vocab(list("\n [abc(),"))
    ckpt, _, _ = save_tiny_checkpoint(tmp_path / "m.safetensors", vocab, **LSTM_CHECKPOINT)
    text = "a [b, c\n" * 5 + "a b\n"                           # 5 '[' and no ']': depth only rises
    (tmp_path / "t.txt").write_text(text)
    r = CliRunner().invoke(cli, ["inspect", ckpt, str(tmp_path / "t.txt"), "--json"])
    assert r.exit_code == 0, r.output
    features = [f["feature"] for f in json.loads(r.stdout)["units"]]
    assert "bracket_depth" not in features and "in_brackets" not in features
    assert "line_position" in features
    page = tmp_path / "p.html"
    r = CliRunner().invoke(cli, ["inspect", ckpt, str(tmp_path / "t.txt"), "--html", str(page)])
    assert r.exit_code == 0, r.output
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>',
                                page.read_text(), re.S).group(1))
    assert all(lo <= 0 <= hi for lo, hi in zip(data["lows"]["1/c"], data["scales"]["1/c"]))
    assert min(data["scales"]["1/c"]) < 1                    # no floor of 1: its own top


def test_inspect_skip_counts_only_the_characters_it_read(tmp_path):
    from tests.conftest import LSTM_CHECKPOINT, save_tiny_checkpoint

    ckpt, _, _ = save_tiny_checkpoint(tmp_path / "m.safetensors", **LSTM_CHECKPOINT)
    (tmp_path / "t.txt").write_text("the dog ZZZ sat. the cat\n")
    r = CliRunner().invoke(cli, ["inspect", ckpt, str(tmp_path / "t.txt"), "--unknown", "skip",
                                 "--no-color"])
    assert r.exit_code == 0, r.output
    assert "\n22 characters, 21 scored: " in r.stdout          # 25 in the file, 3 skipped
    assert "3 character(s) outside the vocabulary skipped" in r.stdout
