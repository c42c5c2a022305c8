"""click's own usage errors are one line on stderr and exit status 2, as charrnn's are."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from charrnn.cli import cli


@pytest.mark.parametrize("args,line", [
    (["train"], "charrnn: error: give the text to train on with --data FILE (or a CONFIG.yaml, "
                "or --resume RUN_DIR) (see 'charrnn train --help')"),
    (["eval"], "charrnn: error: Missing argument 'CHECKPOINT|RUN_DIR' (see 'charrnn eval --help')"),
    (["eval", "x.safetensors", "--chunk-len", "0"],
     "charrnn: error: Invalid value for '--chunk-len': 0 is not in the range x>=1 "
     "(see 'charrnn eval --help')"),
    (["sample", "x.safetensors", "--seed", "-1"], "charrnn: error: Invalid value for '--seed'"),
    (["bench", "--cell", "transformer"], "charrnn: error: Invalid value for '--cell'"),
    (["nosuch"], "charrnn: error: No such command 'nosuch' (see 'charrnn --help')"),
    (["--bogus"], "charrnn: error: No such option '--bogus' (see 'charrnn --help')"),
])
def test_usage_errors_are_one_line(args, line):
    r = CliRunner().invoke(cli, args, prog_name="charrnn")
    assert r.exit_code == 2, r.output
    assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(line), r.stderr
    assert "Usage:" not in r.stderr and "Try '" not in r.stderr


def test_a_folder_given_for_the_config_file(tmp_path):
    r = CliRunner().invoke(cli, ["train", str(tmp_path)], prog_name="charrnn")
    assert r.exit_code == 2
    assert r.stderr == (f"charrnn: error: Invalid value for '[CONFIG.yaml]': File '{tmp_path}' is a "
                        f"directory (see 'charrnn train --help')\n")


def test_help_is_unchanged():
    r = CliRunner().invoke(cli, ["train", "--help"], prog_name="charrnn")
    assert r.exit_code == 0 and r.stdout.startswith("Usage: charrnn train [OPTIONS] [CONFIG.yaml]")
    assert "--resume RUN_DIR" in r.stdout and r.stderr == ""
    r = CliRunner().invoke(cli, ["--help"], prog_name="charrnn")
    assert r.exit_code == 0 and "Commands:" in r.stdout


def test_the_installed_command_in_a_subprocess():
    p = subprocess.run([sys.executable, "-m", "charrnn", "eval", "--streams", "0", "x"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == ("charrnn: error: Invalid value for '--streams': 0 is not in the range "
                        "x>=1 (see 'charrnn eval --help')\n")
