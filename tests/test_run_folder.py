"""A run folder used from anywhere (issue 32): --resume and sample --novelty find the run's text
from another working directory, know when it changed or went, and sample checks its options
before it says which checkpoint it uses."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from charrnn.cli import cli

NAMES = ["anna", "bo", "cyrilla", "dee", "eve", "fitzgeraldo", "gus", "hal", "ivy", "jo",
         "kim", "lou", "maximiliana", "ned", "ola", "pia", "quinn", "rob", "sue", "tom"]


def invoke(*args, cwd):
    here = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, [str(a) for a in args])
    finally:
        os.chdir(here)


@pytest.fixture()
def project(tmp_path):
    """A project folder with names.txt and a documents run trained on it as `--data names.txt`."""
    home = tmp_path / "project"
    home.mkdir()
    (home / "names.txt").write_text("\n".join(NAMES * 3) + "\n")
    r = invoke("train", "--data", "names.txt", "-q", "--set", "data.documents=lines",
               "--set", "model.hidden_size=8", "--set", "model.layers=1", "--set",
               "train.batch_size=4", "--set", "train.seq_len=5", "--set", "train.threads=1",
               "--set", "train.max_steps=4", "--set", "train.eval_every=2", cwd=home)
    assert r.exit_code == 0, r.output
    (tmp_path / "elsewhere").mkdir()
    return home


def test_resume_and_novelty_work_from_another_directory(project):
    elsewhere = project.parent / "elsewhere"
    run = project / "runs" / "names"
    r = invoke("train", "--resume", run, "-q", "--set", "train.max_steps=6", cwd=elsewhere)
    assert r.exit_code == 0, r.output
    r = invoke("sample", run, "--novelty", "--num-samples", 6, "--seed", 1, "-n", 30,
               cwd=elsewhere)
    assert r.exit_code == 0, r.output
    marks = [line.rsplit("\t", 1)[1] for line in r.stdout.splitlines()]
    assert len(marks) == 6 and set(marks) <= {"train", "val", "new"}
    assert f"novelty: {marks.count('new')} of 6 samples new" in r.stderr


def test_a_project_moved_as_a_whole_still_resumes(project):
    moved = project.parent / "moved"
    shutil.move(project, moved)
    r = invoke("train", "--resume", moved / "runs" / "names", "-q", "--set", "train.max_steps=6",
               cwd=project.parent / "elsewhere")
    assert r.exit_code == 0, r.output


def test_novelty_refuses_a_changed_text(project):
    (project / "names.txt").write_text("\n".join(reversed(NAMES * 3)) + "\n")
    run = project / "runs" / "names"
    r = invoke("sample", run, "--novelty", "--num-samples", 3, "--seed", 1, cwd=project)
    assert r.exit_code == 1 and r.stdout == ""
    assert "is not the one it was trained on (" in r.stderr and "the marks would be wrong" in r.stderr
    r = invoke("sample", run, "--json", "--num-samples", 3, "--seed", 1, cwd=project)   # on by default
    assert r.exit_code == 0
    assert "samples not marked for novelty" in r.stderr
    assert all("novelty" not in json.loads(line) for line in r.stdout.splitlines())


def test_a_text_that_is_gone_names_the_setting_that_fixes_it(project):
    os.rename(project / "names.txt", project / "moved.txt")
    run = project / "runs" / "names"
    r = invoke("train", "--resume", run, "-q", "--set", "train.max_steps=6", cwd=project)
    assert r.exit_code == 1
    assert r.stderr.startswith("charrnn: error: the run's text names.txt is gone (looked for ")
    assert f"charrnn train --resume {run} --set data.path=NEW_PATH" in r.stderr
    r = invoke("sample", run, "--novelty", cwd=project)
    assert r.exit_code == 1 and f"charrnn sample {run} --novelty --data NEW_PATH" in r.stderr
    r = invoke("sample", run, "--novelty", "--data", "moved.txt", "--num-samples", 2, cwd=project)
    assert r.exit_code == 0, r.output
    r = invoke("train", "--resume", run, "-q", "--set", "data.path=moved.txt",
               "--set", "train.max_steps=6", cwd=project)
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args,words", [
    (["--prime", "ZZ"], "the prime has 2 character(s) not in the model's vocabulary"),
    (["-t", "0"], "--temperature must be a number > 0; got 0.0"),
    (["-t", "inf"], "--temperature must be a finite number > 0; got inf"),
    (["--greedy", "-t", "0.5,1"], "--greedy always takes the most likely character"),
])
def test_sample_usage_errors_exit_2_before_naming_the_checkpoint(project, args, words):
    r = invoke("sample", project / "runs" / "names", *args, cwd=project)
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith(f"charrnn: error: {words}") and r.stderr.count("\n") == 1


def test_init_from_reports_the_texts_own_figures_and_the_vocabulary_apart(tmp_path):
    letters = "abcdefghijklmnopqrstuvwxyz"
    (tmp_path / "big.txt").write_text((letters + " .\n") * 20)          # 29 distinct
    (tmp_path / "small.txt").write_text((letters + "\n") * 20)            # 27 distinct
    small = ["--set", "model.hidden_size=8", "--set", "model.layers=1", "--set",
             "train.batch_size=2", "--set", "train.seq_len=8", "--set", "train.threads=1"]
    r = invoke("train", "--data", "big.txt", "-q", *small, "--set", "train.max_steps=1",
               cwd=tmp_path)
    assert r.exit_code == 0, r.output
    r = invoke("train", "--data", "small.txt", "--dry-run", "--init-from", "runs/big", *small,
               cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert (f"training on small.txt ({27 * 20:,} characters, 27 distinct, encoded with the "
            f"29-symbol vocabulary of runs/big/best.safetensors); the run goes to runs/small"
            ) in r.stderr
