"""The command group and what every command shares: the one-line errors, the notes on stderr,
the CHECKPOINT argument.

Errors the user can fix are raised below as charrnn.errors.CharrnnError, which carries its exit
status (2 for usage and config errors, 1 for the rest); here each becomes one line on stderr.
stdout carries only data.
"""

from __future__ import annotations

import os
import sys

import click

from charrnn import __version__
from charrnn.errors import CharrnnError
from charrnn.fast.allocator import keep_freed_memory


def _silence_stdout() -> None:
    """After the reader of a pipe left, point stdout at /dev/null so the final flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def examples(*lines: str) -> str:
    """A command's --help epilog: real examples, kept line by line (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def note(message: str) -> None:
    """One line for the user on stderr (stdout carries only data)."""
    click.echo(f"charrnn: {message}", err=True)


def warn(message: str) -> None:
    """A warning for the user on stderr."""
    click.echo(f"charrnn: warning: {message}", err=True)


def checkpoint_file(path: str) -> str:
    """The checkpoint file of a CHECKPOINT argument: a file, or a run folder (its best, else
    its last; one line on stderr says which)."""
    from charrnn.store.checkpoint import resolve_checkpoint

    return resolve_checkpoint(path, say=note)


# bare `charrnn` prints the help (click >= 8.2 signals it with this UsageError): keep it
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _usage_line(error: click.UsageError) -> str:
    """click's usage error as one line: `charrnn: error: <message> (see 'charrnn <cmd> --help')`."""
    message = " ".join(error.format_message().split()).rstrip(".")
    path = error.ctx.command_path if error.ctx is not None else "charrnn"
    return f"charrnn: error: {message} (see '{path} --help')"


class CharrnnGroup(click.Group):
    """A click group that turns the known user errors into one line and an exit status.

    click's own usage errors (a missing argument, a bad option value, an unknown command) are
    one line too, exit status 2, instead of click's Usage / Try / Error block.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as error:       # the group's own options: `charrnn --bogus`
            if isinstance(error, _NO_ARGS_IS_HELP):
                raise
            click.echo(_usage_line(error), err=True)
            raise click.exceptions.Exit(2) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:       # a subcommand's arguments, options or body
            if isinstance(error, _NO_ARGS_IS_HELP):
                raise
            click.echo(_usage_line(error), err=True)
            ctx.exit(2)
        except BrokenPipeError:
            # `charrnn sample | head`: the reader has what it wanted; end quietly
            _silence_stdout()
            ctx.exit(0)
        except MemoryError as error:
            click.echo(f"charrnn: error: out of memory ({str(error).rstrip('.') or 'allocation failed'}); "
                       f"try a smaller model (model.hidden_size, model.layers) or batch "
                       f"(train.batch_size, train.seq_len)", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            # Ctrl-C in eval, diagnose, bench, ... (train saves first, with its own handler):
            # the shell's convention 128 + SIGINT, not click's "Aborted!" and status 1
            click.echo("charrnn: interrupted", err=True)
            ctx.exit(130)
        except CharrnnError as error:          # the user's to fix: one line, its exit status
            kind = "error: " if error.is_error else ""
            click.echo(f"charrnn: {kind}{str(error).rstrip()}", err=True)
            ctx.exit(error.exit_code)


@click.group(cls=CharrnnGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=examples(
                 "charrnn train --data my.txt          # train on your text; the run goes to runs/my",
                 "charrnn sample runs/my               # write text from its best checkpoint",
                 "charrnn eval runs/my held_out.txt    # bits per character on other text")
             + '\n\n\b\nShell completion (bash): eval "$(_CHARRNN_COMPLETE=bash_source charrnn)"')
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """Train and use character-level RNN / GRU / LSTM language models on a CPU."""
    keep_freed_memory()     # every command: large per-step buffers are reused, not re-faulted


# CHECKPOINT arguments: a .safetensors file or a run folder (shell completion offers both)
CHECKPOINT = click.Path()
# the two arguments of the commands that read a model and a text, spelled once for all of them
checkpoint_argument = click.argument("checkpoint", metavar="CHECKPOINT|RUN_DIR", type=CHECKPOINT)
text_argument = click.argument("text_file", metavar="[FILE|-]", required=False, default="-")
