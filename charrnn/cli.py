"""The `charrnn` command line: each command parses its options and calls one function."""

import click

from charrnn import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """Train and use character-level RNN / GRU / LSTM language models on a CPU."""


def main():
    cli()
