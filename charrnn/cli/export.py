"""`charrnn export`: the model as one self-contained web page (charrnn/tools/export.py)."""

from __future__ import annotations

import os

import click

from charrnn.cli.app import checkpoint_argument, checkpoint_file, cli, examples, note
from charrnn.errors import CharrnnError


@cli.command("export", epilog=examples(
    "charrnn export runs/my -o model.html               # open model.html in any browser, offline",
    "charrnn export runs/my/last.safetensors -o small.html --dtype float16"))
@checkpoint_argument
@click.option("-o", "--output", required=True, metavar="FILE.html", type=click.Path(dir_okay=False),
              help="The page to write (replaced atomically).")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True, help="How the weights are stored in the page (float16: half "
                                      "the size, its numbers no longer NumPy's to 1e-5).")
def export_command(checkpoint, output, dtype):
    """Write CHECKPOINT as one web page that samples and scores text in the browser, with no
    network and no install: sampling (prime, temperature, top-k, top-p, greedy, seed), scoring
    a pasted text by surprisal, and the model card; `window.charrnn` is its API (docs/export.md).

    CHECKPOINT is a .safetensors file or a run folder (its best checkpoint, else its last).
    """
    from charrnn.store.checkpoint import load_checkpoint
    from charrnn.tools.export import write_page

    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):                              # before the work, not after
        raise CharrnnError(f"cannot write {output}: the folder {folder} does not exist")
    checkpoint = checkpoint_file(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    try:
        figures = write_page(ckpt, checkpoint, output, dtype)
    except OSError as error:
        raise CharrnnError(f"cannot write {output}: {error.strerror or error}") from None
    note(f"wrote {output} ({figures['bytes'] / 1e6:.2f} MB: {figures['params']:,} parameters "
         f"in {dtype}; open it in a browser)")
