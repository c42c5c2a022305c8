"""Seeing inside the network and measuring it: `charrnn gradcheck`, `diagnose`, `plot`, `bench`."""

from __future__ import annotations

import sys

import click

from charrnn.cli.app import checkpoint_argument, checkpoint_file, cli, examples, text_argument, warn
from charrnn.errors import UsageError
from charrnn.engines import NAMES as ENGINE_NAMES
from charrnn.nn.cells import CELLS
from charrnn.tools.gradcheck import DEFAULT_TOLERANCE


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
@checkpoint_argument
@text_argument
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
    from charrnn.store.checkpoint import load_model
    from charrnn.store.text import read_text

    if text_file == "-" and sys.stdin.isatty():
        raise UsageError("give a text FILE, or pipe text into '-'")
    if plot_path:
        plot_path = output_path(plot_path)[0]      # a bad suffix fails before the work
    checkpoint = checkpoint_file(checkpoint)
    model, vocab, _ = load_model(checkpoint)
    result = diagnose_text(model, vocab, read_text(text_file, warn=warn), window, offset)
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


# -- throughput benchmark (the same measurement as the PyTorch reference script) ---------------

@cli.command("bench", epilog=examples(
    "charrnn bench --cell lstm --hidden 128 --engine torch    # train.engine torch (pip install charrnn[torch])",
    "charrnn bench --sample 0 --tokenize-mb 10          # reading and encoding a 10 MB text",
    "charrnn bench --standard                           # the four shapes charrnn is measured on"))
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
@click.option("--engine", type=click.Choice(ENGINE_NAMES), default="numpy", show_default=True,
              help="Where the training steps run (train.engine).")
@click.option("--device", default="auto", show_default=True,
              help="train.device of the torch engine: auto, cpu, cuda, cuda:N or mps.")
@click.option("--standard", is_flag=True,
              help="The standard shapes instead (2 x 128, the demo's, the shipped config's, 2 x 512).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line (as torch_ref.py prints).")
@click.pass_context
def bench_command(ctx, cell, layers, hidden, emb, vocab, batch, seq, steps, sample, threads,
                  tokenize_mb, engine, device, standard, as_json):
    """Training and sampling throughput (chars/s) and peak memory on random data."""
    import json

    from charrnn.config import DEVICE_TEXT
    from charrnn.tools.bench import format_summary, run_bench
    if not DEVICE_TEXT.fullmatch(device):
        raise click.BadParameter("must be auto, cpu, cuda, cuda:N or mps", param_hint="--device")
    if standard:
        _bench_standard(ctx, cell, sample, threads, engine, device, as_json)
        return
    result = run_bench(cell=cell, layers=layers, hidden=hidden, emb=emb, vocab=vocab, batch=batch,
                       seq=seq, steps=steps, sample=sample, threads=threads, tokenize_mb=tokenize_mb,
                       engine=engine, device=device)
    click.echo(json.dumps(result) if as_json else format_summary(result))


def _bench_standard(ctx, cell, sample, threads, engine, device, as_json):
    """`bench --standard`: each STANDARD shape in turn, a line as soon as it is measured."""
    import json

    from click.core import ParameterSource

    from charrnn.tools.bench import (SHAPE_OPTIONS, STANDARD_HEADER, format_standard_row,
                                     run_standard)
    given = [f"--{name}" for name in SHAPE_OPTIONS + ("tokenize_mb",)
             if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"--standard measures its own shapes; drop {', '.join(given)}"
                               .replace("_", "-"))
    if not as_json:
        click.echo(STANDARD_HEADER)
    for row in run_standard(cell, sample, threads, engine, device):
        click.echo(json.dumps(row) if as_json else format_standard_row(row))
