"""Every console: the real `charrnn` entry point writing to a stdout / stderr whose encoding is not
UTF-8 (a Windows code page, latin-1, plain ASCII through PYTHONIOENCODING).

The documented behaviour (README, "Output on any console"): data on stdout is always UTF-8 bytes;
messages on stderr are in the console's encoding with the characters it cannot show escaped
(\\u2603), except that a console declared ASCII gets UTF-8; never a traceback. Each case runs
the command in a child process (the streams are set up by `main()`) and compares its bytes with
the text the same command writes in process, encoded as documented.
"""

import os
import subprocess
import sys

import pytest

from charrnn.store.vocab import Vocab
from tests.conftest import run_cli, save_tiny_checkpoint

CONSOLES = ["cp1252", "latin-1", "ascii"]
# é is in cp1252 and latin-1, € in cp1252 only, ü in both, ☃ in neither
SYMBOLS = Vocab(list("\n abcdéü€"))
TEXT = "abc é€ dü\nbad cab\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(checkpoint, text file) whose vocabulary and text have characters beyond ASCII."""
    folder = tmp_path_factory.mktemp("console")
    ckpt = save_tiny_checkpoint(folder / "m.safetensors", SYMBOLS, cell="gru", layers=1,
                                hidden=6, embed=4, seed=3)[0]
    text = folder / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    return ckpt, str(text)


def run_on_console(encoding, *args):
    """`python -m charrnn ARGS` writing to pipes declared as `encoding`."""
    env = dict(os.environ, PYTHONIOENCODING=encoding, NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], env=env,
                          capture_output=True, timeout=120)


def message_bytes(text, encoding):
    """A message as the documented rule writes it to a console of `encoding`."""
    if encoding == "ascii":
        return text.encode("utf-8")
    return text.encode(encoding, "backslashreplace")


def assert_data_as_utf8(encoding, *args):
    """The command succeeds and writes the in-process run's stdout as UTF-8 bytes."""
    want = run_cli(*args)
    got = run_on_console(encoding, *args)
    assert b"Traceback" not in got.stderr, got.stderr.decode(encoding, "replace")
    assert want.exit_code == got.returncode == 0
    assert any(ord(c) > 127 for c in want.stdout)            # the case is exercised
    assert got.stdout == want.stdout.encode("utf-8")
    return want.stdout


@pytest.mark.parametrize("encoding", CONSOLES)
def test_sample_writes_utf8_on_any_console(encoding, files):
    text = assert_data_as_utf8(encoding, "sample", files[0], "-n", 60, "--seed", 1,
                               "--prime", "é€")
    assert text.startswith("é€")


@pytest.mark.parametrize("encoding", CONSOLES)
def test_sample_json_writes_utf8_on_any_console(encoding, files):
    assert_data_as_utf8(encoding, "sample", files[0], "-n", 60, "--seed", 1, "--json",
                        "--prime", "ü")


@pytest.mark.parametrize("encoding", CONSOLES)
def test_eval_json_on_any_console(encoding, files):
    """eval --json is ASCII JSON; a text file with a non-ASCII name is read and named as is."""
    want = run_cli("eval", files[0], files[1], "--json")
    got = run_on_console(encoding, "eval", files[0], files[1], "--json")
    assert want.exit_code == got.returncode == 0 and got.stderr == b""
    assert got.stdout == want.stdout.encode("utf-8")


@pytest.mark.parametrize("encoding", CONSOLES)
def test_inspect_terminal_view_writes_utf8_on_any_console(encoding, files):
    assert_data_as_utf8(encoding, "inspect", files[0], files[1], "--no-color")


@pytest.mark.parametrize("encoding", CONSOLES)
@pytest.mark.parametrize("args", [
    ("sample", "{ckpt}", "--prime", "zé☃"),                  # the message quotes the prime
    ("eval", "{ckpt}", "{folder}/missing-ü€☃.txt"),          # ... and a file name
], ids=["prime", "file-name"])
def test_an_error_quoting_non_ascii_is_one_line_in_the_console_encoding(encoding, args, files):
    args = [a.format(ckpt=files[0], folder=os.path.dirname(files[1])) for a in args]
    want = run_cli(*args)
    got = run_on_console(encoding, *args)
    assert got.returncode == want.exit_code in (1, 2) and got.stdout == b""   # usage or runtime
    assert want.stderr.startswith("charrnn: error: ") and want.stderr.count("\n") == 1
    assert "☃" in want.stderr                                 # the case is exercised
    assert got.stderr == message_bytes(want.stderr, encoding)
