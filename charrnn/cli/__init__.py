"""The `charrnn` command line: each command parses its options and calls one function.

app.py holds the group and what the commands share (one-line errors, notes on stderr); the
commands are in train.py (train, init), use.py (sample, eval, inspect) and tools.py
(gradcheck, diagnose, plot, bench), export.py (export).
"""

from charrnn.cli import tools, train, use  # noqa: F401 - each module registers its commands
from charrnn.cli import export  # noqa: F401 - registers `charrnn export`
from charrnn.cli.app import cli


def main():
    cli(prog_name="charrnn")
