"""The `charrnn` command line: each command parses its options and calls one function.

Errors the user can fix (bad config, bad data, bad checkpoint, ...) are raised as exceptions by
the modules below and turned here into one line on stderr and an exit status: 2 for usage and
config errors, 1 for everything else. stdout carries only data.
"""

from __future__ import annotations

import codecs
import os
import sys

import click

from charrnn import __version__
from charrnn.config import ConfigError
from charrnn.fast.allocator import keep_freed_memory
from charrnn.fast.parallel import WorkerError
from charrnn.nn.cells import CELLS
from charrnn.train.checkpoint import CheckpointError
from charrnn.train.data import DataError
from charrnn.train.errors import TrainingError, TrainingInterrupted
from charrnn.vocab import UnknownCharactersError

# exception type -> exit status; the message of each is written for the user
USER_ERRORS: dict[type, int] = {
    ConfigError: 2,
    CheckpointError: 1,
    DataError: 1,
    UnknownCharactersError: 1,
    TrainingError: 1,
    WorkerError: 1,
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


def examples(*lines: str) -> str:
    """A command's --help epilog: real examples, kept line by line (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _note(message: str) -> None:
    """One line for the user on stderr (stdout carries only data)."""
    click.echo(f"charrnn: {message}", err=True)


def _checkpoint(path: str) -> str:
    """The checkpoint file of a CHECKPOINT argument: a file, or a run folder (its best, else
    its last; one line on stderr says which)."""
    from charrnn.train.run import resolve_checkpoint

    return resolve_checkpoint(path, say=_note)


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
        except Exception as error:  # noqa: BLE001 - only known kinds are handled, others re-raised
            code = _exit_code(error)
            if code is None:
                raise
            message = str(error).rstrip()
            click.echo(f"charrnn: error: {message}", err=True)
            ctx.exit(code)


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


@cli.command(short_help="Train a model on a text file, or continue a run.", epilog=examples(
    "charrnn train --data my.txt                       # the defaults; the run goes to runs/my",
    "charrnn train configs/shakespeare.yaml --set model.cell=gru --set train.max_steps=2000",
    "charrnn train --resume runs/my --set train.max_minutes=30"))
@click.argument("config_file", metavar="[CONFIG.yaml]", required=False,
                type=click.Path(dir_okay=False))
@click.option("--data", "data_path", metavar="FILE|DIR|GLOB|-", type=click.Path(allow_dash=True),
              help="The UTF-8 text to train on (sets data.path): a file, a folder (its text "
                   "files, recursively), a quoted glob, or '-' for stdin. With no "
                   "train.out_dir the run goes to runs/<its name>.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config value (repeatable), e.g. --set train.lr=0.001.")
@click.option("--resume", "resume_dir", metavar="RUN_DIR", type=click.Path(),
              help="Continue the run in RUN_DIR exactly where it stopped (its last.safetensors, "
                   "else its best.safetensors; or a .safetensors file, continued in its folder).")
@click.option("--init-from", metavar="CHECKPOINT", type=CHECKPOINT,
              help="Start a new run from the weights of CHECKPOINT or a run folder (same vocabulary).")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar and no opening lines: one plain line per evaluation "
                   "(warnings still show).")
@click.option("--dry-run", is_flag=True,
              help="Check everything, print the start-of-run report (stderr) and the resolved "
                   "config (stdout), and exit without training or writing anything.")
def train(config_file, data_path, overrides, resume_dir, init_from, quiet, dry_run):
    """Train a model on a text (--data FILE, or data.path of CONFIG.yaml), or continue a run.

    Settings: the defaults, then CONFIG.yaml, then --data, then --set (`charrnn init` writes a
    config with every setting). The first lines say where the run goes and how to sample it
    (not with -q).
    """
    from charrnn.train.loop import run_training

    if resume_dir and (config_file or init_from or data_path):
        raise click.UsageError("--resume takes its config and text from the run; give no "
                               "CONFIG.yaml, --data or --init-from.")
    if not (resume_dir or config_file or data_path or overrides):
        raise click.UsageError("give the text to train on with --data FILE (or a CONFIG.yaml, "
                               "or --resume RUN_DIR).")
    cfg = None if resume_dir else _new_run_config(config_file, data_path, overrides)
    if dry_run:
        _dry_run(cfg, resume_dir, init_from, overrides)
        return
    run_training(cfg, resume_dir=resume_dir, init_from=init_from, overrides=overrides, quiet=quiet,
                 say=None if quiet else _note, warn=_note)


def _dry_run(cfg, resume_dir, init_from, overrides):
    from charrnn.config import config_yaml
    from charrnn.train.run import open_run

    run = open_run(cfg, resume_dir, init_from, overrides, say=_note, warn=_note, dry_run=True)
    try:
        click.echo(config_yaml(run.config), nl=False)
    finally:
        run.close()


def _new_run_config(config_file, data_path, overrides):
    """The config of a new run. A text file given in the config's place (`charrnn train my.txt`)
    gets a pointer to --data rather than a YAML error about its text."""
    from charrnn.train.run import train_config

    try:
        return train_config(config_file, data_path, overrides)
    except ConfigError as error:
        # the file itself (not YAML, not a mapping), named like a text: the user meant --data
        if (config_file and os.path.isfile(config_file)
                and str(error).startswith(f"config file '{config_file}'")
                and not config_file.endswith((".yaml", ".yml")) and not data_path):
            raise ConfigError(f"{config_file} is not a config file (YAML); to train on that text, "
                              f"give it with --data: charrnn train --data {config_file}") from None
        raise


@cli.command("init", epilog=examples(
    "charrnn init my.yaml && charrnn train my.yaml --data my.txt",
    "charrnn init | less                                 # read every setting"))
@click.argument("file", metavar="[FILE]", required=False, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def init_command(file, force):
    """Write a starter config: every setting, its default and what it does (to FILE or stdout)."""
    from charrnn.config import starter_config
    from charrnn.fileio import write_atomically

    text = starter_config()
    if file is None:
        click.echo(text, nl=False)
        return
    if os.path.lexists(file) and not force:
        raise UserError(f"{file} exists; give --force to overwrite it, or another name", 2)
    try:
        write_atomically(file, text.encode("utf-8"))
    except OSError as error:
        raise UserError(f"cannot write {file}: {error.strerror or error}") from None
    _note(f"wrote {file}; edit it (data.path: your text), then: charrnn train {file}")


# -- seeing inside the network: gradcheck, diagnose, plot ---------------------------------------

from charrnn.tools.gradcheck import DEFAULT_TOLERANCE  # noqa: E402
from charrnn.tools.plot import PlotError  # noqa: E402

USER_ERRORS[PlotError] = 1


@cli.command("gradcheck", epilog=examples(
    "charrnn gradcheck                                 # a 2-layer LSTM",
    "charrnn gradcheck --cell rnn --nonlinearity relu --layers 1",
    "charrnn gradcheck --cell gru --dropout 0.3 --seed 5"))
@click.option("--cell", type=click.Choice(list(CELLS)), default="lstm", show_default=True)
@click.option("--layers", type=click.IntRange(1, 4), default=2, show_default=True)
@click.option("--nonlinearity", type=click.Choice(["tanh", "relu"]), default="tanh",
              show_default=True, help="For --cell rnn.")
@click.option("--seed", type=click.IntRange(0), default=2, show_default=True,
              help="Seeds the weights, the inputs and the dropout masks.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True)
@click.option("--tolerance", type=click.FloatRange(0, min_open=True), default=DEFAULT_TOLERANCE,
              show_default=True, help="Largest relative error that passes.")
def gradcheck_command(cell, layers, nonlinearity, seed, dropout, tolerance):
    """Check the backward pass against finite differences on a tiny random float64 model.

    Exits 1 when any parameter's gradient is off by more than --tolerance.
    """
    from charrnn.tools.diagnose import check_random_model, format_gradcheck

    table, ok = format_gradcheck(check_random_model(cell, layers, nonlinearity, dropout, seed),
                                 tolerance)
    click.echo(table)
    if not ok:
        sys.exit(1)


@cli.command("diagnose", epilog=examples(
    "charrnn diagnose runs/my held_out.txt --window 200",
    "charrnn diagnose runs/my/last.safetensors my.txt --json",
    "charrnn diagnose runs/my my.txt --plot decay.png"))
@click.argument("checkpoint", metavar="CHECKPOINT|RUN_DIR", type=CHECKPOINT)
@click.argument("text_file", metavar="[FILE|-]", required=False, default="-")
@click.option("--window", type=click.IntRange(2), default=100, show_default=True,
              help="Characters the model reads before the prediction whose gradient is traced.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True,
              help="Where the window starts in the text.")
@click.option("--json", "as_json", is_flag=True, help="All norms as JSON.")
@click.option("--plot", "plot_path", metavar="FILE.png", type=click.Path(dir_okay=False),
              help="Also draw the norms on a log scale (needs charrnn[plot]).")
def diagnose_command(checkpoint, text_file, window, offset, as_json, plot_path):
    """How far back the gradient of the last character's loss reaches, per layer.

    CHECKPOINT is a .safetensors file or a run folder (its best checkpoint, else its last).
    Reads a window of FILE (or stdin) from a zero state and prints ||dL/dh_t|| against the
    distance from the last step, the decay per step, and where it falls below 1e-3.
    """
    import json

    from charrnn.tools.diagnose import diagnose_text, format_decay
    from charrnn.tools.plot import output_path, plot_decay
    from charrnn.train.checkpoint import load_model
    from charrnn.train.data import read_text

    if text_file == "-" and sys.stdin.isatty():
        raise UserError("give a text FILE, or pipe text into '-'", 2)
    if plot_path:
        plot_path = output_path(plot_path)[0]      # a bad suffix fails before the work
    checkpoint = _checkpoint(checkpoint)
    model, vocab, _ = load_model(checkpoint)
    result = diagnose_text(model, vocab, read_text(text_file, warn=_warn), window, offset)
    result["checkpoint"] = checkpoint
    if plot_path:
        written = plot_decay(result, plot_path, title=f"{checkpoint}: gradient through time")
        click.echo(f"wrote {written}", err=True)
    click.echo(json.dumps(result, indent=1) if as_json else format_decay(result))


@cli.command("plot", epilog=examples(
    "charrnn plot runs/my                              # writes runs/my/loss.png",
    "charrnn plot runs/my -o my-loss.png"))
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(file_okay=False))
@click.option("-o", "--output", metavar="FILE.png", type=click.Path(dir_okay=False),
              help="Where to write the picture (default RUN_DIR/loss.png).")
def plot_command(run_dir, output):
    """Draw the training and validation loss of a run from RUN_DIR/metrics.jsonl."""
    from charrnn.tools.plot import plot_metrics

    click.echo(plot_metrics(run_dir, output))


# -- generation and evaluation: sample, eval (alias perplexity) ------------------------------

from charrnn.infer.evaluate import EvalError  # noqa: E402
from charrnn.infer.sample import SampleError  # noqa: E402

USER_ERRORS[SampleError] = 2
USER_ERRORS[EvalError] = 1


def _warn(message: str) -> None:
    click.echo(f"charrnn: warning: {message}", err=True)


@cli.command("sample", epilog=examples(
    "charrnn sample runs/my                            # its best checkpoint, 500 characters",
    "charrnn sample runs/my --prime \"ROMEO:\" --temperature 0.8 -n 200 --seed 1",
    "charrnn sample runs/my/last.safetensors --num-samples 3 --stop $'\\n\\n' --json"))
@click.argument("checkpoint", metavar="CHECKPOINT|RUN_DIR", type=CHECKPOINT)
@click.option("-n", "--length", type=int,
              help="Characters to generate per sample, not counting the prime.  [default: 500]")
@click.option("-t", "--temperature", metavar="T[,T...]",
              help="> 0; below 1 is safer and more repetitive, above 1 wilder. Several "
                   "(0.5,0.8,1.2): the samples once per temperature, labelled, from the same "
                   "prime and seed.  [default: 1.0]")
@click.option("--greedy", is_flag=True, help="Always take the most likely character (--temperature is ignored).")
@click.option("--top-k", type=int, metavar="K", help="Sample only from the K most likely characters.")
@click.option("--top-p", type=float, metavar="P",
              help="Sample only from the most likely characters that make up probability P.")
@click.option("--prime", metavar="TEXT", help="Text fed to the model first (echoed unless --no-echo).")
@click.option("--prime-file", metavar="FILE|-", help="Read the prime from a file ('-': stdin).")
@click.option("--seed", type=click.IntRange(0), help="The same seed gives the same output.")
@click.option("--num-samples", type=int, default=1, show_default=True,
              help="Samples to draw, each from the primed state, separated by a blank line.")
@click.option("--separator", metavar="TEXT",
              help="Between samples instead of a blank line (\\n and \\t are understood).")
@click.option("--stop", metavar="STRING",
              help="End a sample when it produces STRING (included; \\n and \\t are understood).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sample and line.")
@click.option("--echo/--no-echo", default=True, show_default=True, help="Print the prime first.")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="Prime characters outside the vocabulary: fail, or drop them with a warning.")
@click.option("--novelty/--no-novelty", default=None,
              help="Mark each sample as in the training split, in validation, or new, and print "
                   "the share of new ones on stderr (reads the run's data.path again). Default: "
                   "on for a documents-mode model with --json.")
def sample_command(checkpoint, length, temperature, greedy, top_k, top_p, prime, prime_file, seed,
                   num_samples, separator, stop, as_json, echo, unknown, novelty):
    """Generate text from CHECKPOINT, streamed to stdout as it is produced.

    CHECKPOINT is a .safetensors file or a run folder (its best checkpoint, else its last).
    Options not given (length, temperature, top-k, top-p, prime, seed) take their values from
    the `sample:` section of the config the checkpoint was trained with, else the defaults shown.
    """
    from charrnn.infer.sample import check_settings, unescape, write_samples
    from charrnn.train.checkpoint import load_model
    from charrnn.train.data import read_text

    if num_samples < 1:
        raise SampleError(f"--num-samples must be >= 1; got {num_samples}")
    if prime is not None and prime_file is not None:
        raise SampleError("give --prime or --prime-file, not both")
    model, vocab, ckpt = load_model(_checkpoint(checkpoint))
    saved = ckpt.config.sample
    length = saved.length if length is None else length
    temperature = saved.temperature if temperature is None else _temperatures(temperature)
    if greedy:
        temperature = 1.0       # the argmax does not depend on it: -t is ignored, not checked
    top_k = saved.top_k if top_k is None else top_k
    top_p = saved.top_p if top_p is None else top_p
    seed = saved.seed if seed is None else seed
    for t in temperature if isinstance(temperature, list) else [temperature]:
        check_settings(length, t, top_k, top_p)
    documents = ckpt.config.data.documents if vocab.eod is not None else "none"
    if separator is None and documents == "lines":
        separator = r"\n"                           # one document per line
    marker = _novelty_marker(ckpt, vocab, novelty, documents != "none" and as_json)
    if prime_file is not None:
        prime_text = read_text(prime_file, warn=_warn)
    else:
        prime_text = saved.prime if prime is None else prime
    write_samples(model, vocab, sys.stdout, prime=prime_text, unknown=unknown, length=length,
                  temperature=temperature, greedy=greedy, top_k=top_k, top_p=top_p,
                  seed=seed, num_samples=num_samples, separator=unescape(separator),
                  stop=unescape(stop), as_json=as_json, echo=echo, warn=_warn, novelty=marker,
                  note=_note)


def _temperatures(text: str):
    """A -t value: one number, or a list of them for 't1,t2,...'."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise SampleError(f"--temperature must be a number > 0, or several separated by commas "
                          f"(0.5,0.8,1.2); got {text!r}") from None
    return values if len(values) > 1 else values[0]


def _novelty_marker(ckpt, vocab, novelty: bool | None, by_default: bool):
    """The novelty mark of `charrnn sample` (corpus.novelty_marker), or None when off. On by
    default only: a training text that cannot be read is a warning, not an error."""
    from charrnn.train.corpus import novelty_marker

    if novelty is False or (novelty is None and not by_default):
        return None
    try:
        return novelty_marker(ckpt.config.data, vocab)
    except DataError as error:
        if novelty:
            raise DataError(f"--novelty reads the run's training text (data.path), which "
                            f"failed: {error}") from None
        _warn(f"samples not marked for novelty: the run's training text cannot be read ({error})")
        return None


@cli.command("eval", epilog=examples(
    "charrnn eval runs/my held_out.txt",
    "cat notes.txt | charrnn perplexity runs/my - --json",
    "charrnn eval runs/my/last.safetensors held_out.txt --streams 32    # faster, approximate"))
@click.argument("checkpoint", metavar="CHECKPOINT|RUN_DIR", type=CHECKPOINT)
@click.argument("text_file", metavar="[FILE|-]", required=False, default="-")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="Characters outside the vocabulary: fail, or skip them and count them.")
@click.option("--chunk-len", type=click.IntRange(1), default=1024, show_default=True,
              help="Characters per forward call (speed and memory only; results are the same).")
@click.option("--streams", type=click.IntRange(1), default=1, show_default=True,
              help="Read the text as this many parallel segments (faster, approximate: each "
                   "segment sees only --warmup characters before it). 1 is the exact pass.")
@click.option("--warmup", type=click.IntRange(0), default=250, show_default=True,
              help="With --streams > 1: characters each segment reads, unscored, before it.")
@click.option("--one-process", is_flag=True,
              help="Keep the exact pass in this process (by default, on Linux, a model of two "
                   "or more layers runs layer 0 in a second one; the result is the same).")
def eval_command(checkpoint, text_file, as_json, unknown, chunk_len, streams, warmup,
                 one_process):
    """Loss (nats/char), bits/char and perplexity of CHECKPOINT on a text (default: stdin).

    CHECKPOINT is a .safetensors file or a run folder (its best checkpoint, else its last).
    One sequential pass from a zero state: every character but the first is predicted from all
    the characters before it. A model trained with data.documents scores each document of the
    text from a zero state, its end-of-document symbol included (--json: each one's figures). --streams 32 is about 1.5x faster, and approximate: each
    segment is read from --warmup characters before it instead of from the start.
    """
    import json

    from charrnn.infer.evaluate import evaluate_text, format_result
    from charrnn.train.checkpoint import load_model
    from charrnn.train.data import read_text

    if text_file == "-" and sys.stdin.isatty():
        raise UserError("give a text FILE, or pipe the text into standard input", exit_code=2)
    model, vocab, ckpt = load_model(_checkpoint(checkpoint))
    if vocab.eod is not None:           # documents mode: each document from a zero state
        from charrnn.infer.evaluate import evaluate_document_list
        from charrnn.train.corpus import split_documents

        docs = split_documents(read_text(text_file, warn=_warn), ckpt.config.data.documents)
        result = evaluate_document_list(model, vocab, docs, unknown, chunk_len)
    else:
        result = evaluate_text(model, vocab, read_text(text_file, warn=_warn), unknown, chunk_len,
                               streams, warmup, pipeline=not one_process)
    if result.chars_skipped:
        _warn(f"skipped {result.chars_skipped} character(s) not in the model's vocabulary")
    click.echo(json.dumps(result.to_dict()) if as_json else format_result(result))


cli.add_command(eval_command, "perplexity")


# -- inspect: what the model sees, character by character and unit by unit -------------------

@cli.command("inspect", epilog=examples(
    "charrnn inspect runs/my passage.txt                  # the text shaded by surprisal, a summary",
    "charrnn inspect runs/my passage.txt --html page.html # hover characters, colour by a unit",
    "charrnn inspect runs/my/last.safetensors notes.txt --json --gates  # every figure, as JSON"))
@click.argument("checkpoint", metavar="CHECKPOINT|RUN_DIR", type=CHECKPOINT)
@click.argument("text_file", metavar="[FILE|-]", required=False, default="-")
@click.option("--html", "html_path", metavar="FILE.html", type=click.Path(dir_okay=False),
              help="Write a self-contained page: surprisal, top-k on hover, any unit's values, "
                   "the interpretable units (stdout then gets the summary only).")
@click.option("--json", "as_json", is_flag=True,
              help="Print every figure as one JSON object (schema: docs/inspect.md).")
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True,
              help="Predictions kept per character.")
@click.option("--units", "per_feature", type=click.IntRange(0), default=3, show_default=True,
              help="Interpretable units listed per feature (0: no search).")
@click.option("--after", metavar="CHARS", default="\\n .,", show_default=True,
              help="Characters c for the 'after c' features (\\n and \\t are understood).")
@click.option("--gates", is_flag=True, help="Also keep the gates' activations (LSTM i f g o, GRU r z n).")
@click.option("--color/--no-color", default=None,
              help="Shade the text by surprisal.  [default: on a terminal, unless NO_COLOR is set]")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="Characters outside the vocabulary: fail, or skip them and count them.")
def inspect_command(checkpoint, text_file, html_path, as_json, top_k, per_feature, after, gates,
                    color, unknown):
    """Run a text through CHECKPOINT once (eval's exact pass) and show, per character, its
    surprisal (bits), the model's top-k predictions and every layer's state; and which units
    track simple features of the text (quotes, brackets, position in the line, ...).

    CHECKPOINT is a .safetensors file or a run folder (its best checkpoint, else its last).
    """
    from charrnn.infer.sample import unescape
    from charrnn.tools.inspect import SPAN_WIDTH, find_units, inspect_text, surprising_spans
    from charrnn.tools.inspect_term import format_summary, format_text
    from charrnn.train.checkpoint import load_model
    from charrnn.train.data import read_text

    if text_file == "-" and sys.stdin.isatty():
        raise UserError("give a text FILE, or pipe the text into standard input", exit_code=2)
    folder = os.path.dirname(os.path.abspath(html_path)) if html_path else ""
    if html_path and not os.path.isdir(folder):             # before the work, not after
        raise UserError(f"cannot write {html_path}: the folder {folder} does not exist")
    checkpoint = _checkpoint(checkpoint)
    model, vocab, _ = load_model(checkpoint)
    ins = inspect_text(model, vocab, read_text(text_file), top_k, gates, unknown)
    if ins.chars_skipped:
        _warn(f"skipped {ins.chars_skipped} character(s) not in the model's vocabulary")
    ranked = find_units(ins, unescape(after), per_feature)
    spans = surprising_spans(ins.surprisal)
    if html_path:
        _write_page(html_path, ins, ranked, checkpoint)
    if as_json:
        from charrnn.tools.inspect_json import write_json

        write_json(sys.stdout, ins, ranked, spans, checkpoint, SPAN_WIDTH)
        return
    if color is None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    if not html_path:
        click.echo(format_text(ins, color), color=color)    # click strips escapes unless told
        click.echo()
    click.echo(format_summary(ins, ranked, spans, color), color=color)


def _write_page(path, ins, ranked, checkpoint):
    from charrnn.tools.inspect_html import write_html

    try:
        write_html(path, ins, ranked, checkpoint)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
    _note(f"wrote {path} (open it in a browser)")


# -- throughput benchmark (the same measurement as the PyTorch reference script) ---------------

@cli.command("bench", epilog=examples(
    "charrnn bench --cell lstm --hidden 128",
    "charrnn bench --cell gru --threads 4 --json",
    "charrnn bench --sample 0 --tokenize-mb 10          # reading and encoding a 10 MB text"))
@click.option("--cell", type=click.Choice(list(CELLS)), default="lstm", show_default=True)
@click.option("--layers", type=click.IntRange(1), default=2, show_default=True)
@click.option("--hidden", type=click.IntRange(1), default=128, show_default=True)
@click.option("--emb", type=click.IntRange(1), default=64, show_default=True)
@click.option("--vocab", type=click.IntRange(2, 50000), default=65, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=50, show_default=True)
@click.option("--seq", type=click.IntRange(1), default=50, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=30, show_default=True,
              help="Timed training steps (after 3 warm-up steps).")
@click.option("--sample", type=click.IntRange(0), default=2000, show_default=True,
              help="Characters sampled one at a time at temperature 0.8 (0: skip).")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True,
              help="BLAS threads (set at run time through OpenBLAS).")
@click.option("--tokenize-mb", type=click.FloatRange(0, min_open=True), default=None,
              help="Also time reading + vocabulary + encoding of an N MB synthetic text file.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line (as torch_ref.py prints).")
def bench_command(cell, layers, hidden, emb, vocab, batch, seq, steps, sample, threads,
                  tokenize_mb, as_json):
    """Training and sampling throughput (chars/s) and peak memory on random data."""
    import json

    from charrnn.tools.bench import format_summary, run_bench
    result = run_bench(cell=cell, layers=layers, hidden=hidden, emb=emb, vocab=vocab, batch=batch,
                       seq=seq, steps=steps, sample=sample, threads=threads, tokenize_mb=tokenize_mb)
    click.echo(json.dumps(result) if as_json else format_summary(result))


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
