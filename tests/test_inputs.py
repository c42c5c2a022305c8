"""Hostile inputs through the command line (issue 32): special files in a corpus folder, the
same file reached twice, non-UTF-8 files in a folder, and the run folder used from elsewhere."""

import os
import re
import subprocess
import sys

import pytest

TEXT = "the quick brown fox jumps over the lazy dog\n" * 8
SMALL = ["--set", "train.batch_size=2", "--set", "train.seq_len=8", "--set", "model.hidden_size=8",
         "--set", "model.embed_size=4", "--set", "model.layers=1", "--set", "train.threads=1"]


def charrnn(*args, cwd=None, timeout=60, **kw):
    """The command in a child process that can never hang the tests."""
    return subprocess.run([sys.executable, "-m", "charrnn", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, **kw)


def test_a_folder_reads_only_its_regular_files_each_once(tmp_path):
    d = tmp_path / "texts"
    d.mkdir()
    (d / "GPL-3").write_text(TEXT)
    (d / "MIT").write_text(TEXT.upper())
    os.symlink("GPL-3", d / "GPL")                      # Debian's common-licenses has these
    os.symlink(d / "MIT", d / "Expat")
    os.mkfifo(d / "pipe")                               # reading it would wait for ever
    os.symlink("/dev/zero", d / "zeros")                # reading it would never end
    os.symlink("gone.txt", d / "dangling")
    r = charrnn("train", "--data", str(d), "--dry-run", *SMALL,
                "--set", f"train.out_dir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert f"({2 * len(TEXT):,} characters" in r.stderr        # two texts, each once
    assert "2 files" in r.stderr
    assert "skipped 2 files that are not regular files (pipes, devices, sockets)" in r.stderr
    assert "skipped 1 broken link" in r.stderr
    assert "skipped 2 paths to a file already read (Expat -> MIT, GPL -> GPL-3)" in r.stderr


@pytest.mark.parametrize("make,kind", [
    (lambda p: os.mkfifo(p), "a named pipe (FIFO)"),
    (lambda p: os.symlink("/dev/zero", p), "a character device"),
])
def test_a_named_file_that_is_not_a_regular_file_is_one_line(tmp_path, make, kind):
    make(tmp_path / "special")
    r = charrnn("train", "--data", str(tmp_path / "special"), *SMALL)
    assert r.returncode == 1
    assert r.stderr == (f"charrnn: error: {tmp_path / 'special'} is {kind}, not a regular file; "
                        f"give a text file (to read from a pipe, give --data - and pipe the "
                        f"text in)\n")


def test_the_advice_for_a_non_utf8_file_in_a_folder_works_when_followed(tmp_path):
    d = tmp_path / "songs"
    d.mkdir()
    (d / "a.txt").write_text(TEXT)
    (d / "b.txt").write_bytes("café, naïve\n".encode("cp1252") * 20)
    args = ["train", "--data", str(d), "--dry-run", *SMALL, "--set", f"train.out_dir={tmp_path / 'r'}"]
    r = charrnn(*args)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "or add --set data.skip_invalid=true to skip such files" in r.stderr
    command = re.search(r"convert it in place with: (.*?); or add", r.stderr)[1]
    subprocess.run(command, shell=True, check=True, timeout=30)     # follow the advice
    assert sorted(os.listdir(d)) == ["a.txt", "b.txt"]
    assert (d / "b.txt").read_text(encoding="utf-8") == "café, naïve\n" * 20
    r = charrnn(*args)
    assert r.returncode == 0, r.stderr
    assert f"({len(TEXT) + 12 * 20:,} characters" in r.stderr


def test_documents_mode_counts_dropped_empty_lines_and_copies_in_validation(tmp_path):
    names = [f"name{i:03d}" for i in range(90)] + ["", "  "] + ["name001", "name002"] + \
        [f"other{i}" for i in range(8)]
    (tmp_path / "n.txt").write_text("\n".join(names) + "\n\n")
    r = charrnn("train", "--data", str(tmp_path / "n.txt"), "--dry-run", *SMALL,
                "--set", "data.documents=lines", "--set", f"train.out_dir={tmp_path / 'r'}")
    assert r.returncode == 0, r.stderr
    assert "100 documents (lines), 3 empty lines dropped" in r.stderr
    assert ("charrnn: warning: 2 of the 11 validation documents are copies of training "
            "documents") in r.stderr       # the split: 11 documents held out


def test_plain_contiguous_batching_says_what_an_epoch_leaves_out(tmp_path):
    (tmp_path / "t.txt").write_text("abcdefghij" * 100)          # 900 training characters
    r = charrnn("train", "--data", str(tmp_path / "t.txt"), "--dry-run",
                "--set", "train.batch_size=4", "--set", "train.seq_len=50",
                "--set", "model.hidden_size=8", "--set", f"train.out_dir={tmp_path / 'r'}")
    assert r.returncode == 0, r.stderr
    # 4 streams of 224 inputs, 4 steps of 50: 24 a stream and the text's last 3 left out
    assert ("batches: an epoch of 4 streams x 4 steps leaves out 99 of 899 characters (11.0%, "
            "the streams' ends, the same every epoch)") in r.stderr
