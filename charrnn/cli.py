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
from charrnn.train import TrainingError, TrainingInterrupted
from charrnn.vocab import UnknownCharactersError

# exception type -> exit status; the message of each is written for the user
USER_ERRORS: dict[type, int] = {
    ConfigError: 2,
    CheckpointError: 1,
    DataError: 1,
    UnknownCharactersError: 1,
    TrainingError: 1,
    TrainingInterrupted: 130,   # its own exit_code (128 + signal) wins
}


class UserError(Exception):
    """A runtime failure with a message for the user (exit status 1 unless given)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _exit_code(error: BaseException) -> int | None:
    if isinstance(error, (UserError, TrainingInterrupted)):
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


@cli.command()
@click.argument("config_file", metavar="CONFIG.yaml", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config value (repeatable), e.g. --set train.lr=0.001.")
@click.option("--resume", "resume_dir", metavar="RUN_DIR",
              help="Continue the run saved in RUN_DIR/last.safetensors exactly where it stopped.")
@click.option("--init-from", metavar="CHECKPOINT",
              help="Start a new run from the weights of CHECKPOINT (same vocabulary).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def train(config_file, overrides, resume_dir, init_from, quiet):
    """Train a model on the corpus named in CONFIG.yaml (or continue one with --resume)."""
    from charrnn.config import load_config
    from charrnn.train import run_training

    if resume_dir and (config_file or init_from):
        raise click.UsageError("--resume takes its config from the run; give no CONFIG.yaml or --init-from.")
    if not resume_dir and not config_file:
        raise click.UsageError("give a CONFIG.yaml (see configs/), or --resume RUN_DIR.")
    cfg = None if resume_dir else load_config(config_file, overrides)
    run_training(cfg, resume_dir=resume_dir, init_from=init_from, overrides=overrides, quiet=quiet)


def main():
    cli(prog_name="charrnn")
