"""The `charrnn` command line: each command parses its options and calls one function.

app.py holds the group and what the commands share (one-line errors, notes on stderr); the
commands are in train.py (train, init), use.py (sample, eval, inspect; dynamic.py: their
--dynamic options), tools.py (gradcheck, diagnose, plot, bench) and export.py (export).
"""

import codecs
import sys

from charrnn.cli import export, tools, train, use  # noqa: F401 - each registers its commands
from charrnn.cli.app import cli


def _console_streams() -> None:
    """Whatever the console's encoding: data to stdout as UTF-8, messages to stderr in the
    console's encoding with what it cannot show escaped (\\xe9); a console declared ASCII is taken
    as misconfigured and given UTF-8, as Python's C locale and click take it (README, Output)."""
    ascii_only = codecs.lookup(getattr(sys.stderr, "encoding", None) or "ascii").name == "ascii"
    for stream, options in ((sys.stdout, {"encoding": "utf-8"}),
                            (sys.stderr, {"encoding": "utf-8" if ascii_only else None,
                                          "errors": "backslashreplace"})):
        if hasattr(stream, "reconfigure"):      # a real text stream (not a test's replacement)
            stream.reconfigure(**options)


def main():
    _console_streams()
    cli(prog_name="charrnn")
