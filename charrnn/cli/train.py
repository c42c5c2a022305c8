"""`charrnn train` and `charrnn init`: a run from a config, a text or a run folder."""

from __future__ import annotations

import os

import click

from charrnn.cli.app import CHECKPOINT, cli, examples, note
from charrnn.config import ConfigError
from charrnn.errors import CharrnnError, UsageError


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
                 say=None if quiet else note, warn=note)


def _dry_run(cfg, resume_dir, init_from, overrides):
    from charrnn.config import config_yaml
    from charrnn.train.run import open_run

    run = open_run(cfg, resume_dir, init_from, overrides, say=note, warn=note, dry_run=True)
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
        raise UsageError(f"{file} exists; give --force to overwrite it, or another name")
    try:
        write_atomically(file, text.encode("utf-8"))
    except OSError as error:
        raise CharrnnError(f"cannot write {file}: {error.strerror or error}") from None
    note(f"wrote {file}; edit it (data.path: your text), then: charrnn train {file}")
