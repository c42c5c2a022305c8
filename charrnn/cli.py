"""The `charrnn` command line: each command parses its options and calls one function.

Errors the user can fix (bad config, bad data, bad checkpoint, ...) are raised as exceptions by
the modules below and turned here into one line on stderr and an exit status: 2 for usage and
config errors, 1 for everything else. stdout carries only data.
"""

from __future__ import annotations

import os
import sys

import click

from charrnn import __version__
from charrnn.checkpoint import CheckpointError
from charrnn.config import ConfigError
from charrnn.data import DataError
from charrnn.vocab import UnknownCharactersError

# exception type -> exit status; the message of each is written for the user
USER_ERRORS: dict[type, int] = {
    ConfigError: 2,
    CheckpointError: 1,
    DataError: 1,
    UnknownCharactersError: 1,
}


class UserError(Exception):
    """A runtime failure with a message for the user (exit status 1 unless given)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _exit_code(error: BaseException) -> int | None:
    if isinstance(error, UserError):
        return error.exit_code
    for kind, code in USER_ERRORS.items():
        if isinstance(error, kind):
            return code
    return None


def _silence_stdout() -> None:
    """After the reader of a pipe left, point stdout at /dev/null so the final flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class CharrnnGroup(click.Group):
    """A click group that turns the known user errors into one line and an exit status."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # `charrnn sample | head`: the reader has what it wanted; end quietly
            _silence_stdout()
            ctx.exit(0)
        except Exception as error:  # noqa: BLE001 - only known kinds are handled, others re-raised
            code = _exit_code(error)
            if code is None:
                raise
            message = str(error).rstrip()
            click.echo(f"charrnn: error: {message}", err=True)
            ctx.exit(code)


@click.group(cls=CharrnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """Train and use character-level RNN / GRU / LSTM language models on a CPU."""


def main():
    cli(prog_name="charrnn")
