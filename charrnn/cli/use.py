"""Using a trained model: `charrnn sample`, `charrnn eval` (alias `perplexity`) and
`charrnn inspect`."""

from __future__ import annotations

import copy
import os
import sys

import click

from charrnn.cli.app import (checkpoint_argument, checkpoint_file, cli, examples, note,
                             text_argument, warn)
from charrnn.cli.dynamic import dynamic_options
from charrnn.errors import CharrnnError, UsageError
from charrnn.infer.sample import SampleError
from charrnn.store.text import DataError


@cli.command("sample", epilog=examples(
    "charrnn sample runs/my                            # its best checkpoint, 500 characters",
    "charrnn sample runs/my --prime \"ROMEO:\" --temperature 0.8 -n 200 --seed 1",
    "charrnn sample runs/my/last.safetensors --num-samples 3 --stop $'\\n\\n' --json"))
@checkpoint_argument
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
                   "the share of new ones on stderr (reads the run's data.path again, and checks "
                   "it is the text the run trained on). Default: on for a documents-mode model "
                   "with --json.")
@click.option("--data", "data_path", metavar="PATH",
              help="For --novelty: where the run's training text is now, when it has moved.")
def sample_command(checkpoint, length, temperature, greedy, top_k, top_p, prime, prime_file, seed,
                   num_samples, separator, stop, as_json, echo, unknown, novelty, data_path):
    """Generate text from CHECKPOINT, streamed to stdout as it is produced.

    CHECKPOINT is a .safetensors file or a run folder (its best checkpoint, else its last).
    Options not given (length, temperature, top-k, top-p, prime, seed) take their values from
    the `sample:` section of the config the checkpoint was trained with, else the defaults shown.
    """
    from charrnn.infer.sample import unescape, write_samples
    from charrnn.store.checkpoint import load_model, resolve_checkpoint
    from charrnn.store.text import read_text

    if num_samples < 1:
        raise SampleError(f"--num-samples must be >= 1; got {num_samples}")
    if prime is not None and prime_file is not None:
        raise SampleError("give --prime or --prime-file, not both")
    if temperature is not None:
        temperature = _temperatures(temperature)
        if greedy and isinstance(temperature, list):
            raise SampleError("--greedy always takes the most likely character, so every "
                              "temperature of -t would give the same samples; give --greedy "
                              "or a -t list, not both")
    using = []              # the folder's checkpoint, said once the options are known good
    path = resolve_checkpoint(checkpoint, say=using.append)
    model, vocab, ckpt = load_model(path)
    saved = ckpt.config.sample
    length, temperature, top_k, top_p, seed = _settings(saved, length, temperature, greedy,
                                                        top_k, top_p, seed)
    if prime_file is not None:
        prime_text = read_text(prime_file, warn=warn)
    else:
        prime_text = saved.prime if prime is None else prime
    _check_prime(vocab, prime_text, unknown)
    for line in using:
        note(line)
    documents = ckpt.config.data.documents if vocab.eod is not None else "none"
    if separator is None and documents == "lines":
        separator = r"\n"                           # one document per line
    marker = _novelty_marker(ckpt, vocab, novelty, documents != "none" and as_json, checkpoint,
                             path, data_path)
    write_samples(model, vocab, sys.stdout, prime=prime_text, unknown=unknown, length=length,
                  temperature=temperature, greedy=greedy, top_k=top_k, top_p=top_p,
                  seed=seed, num_samples=num_samples, separator=unescape(separator),
                  stop=unescape(stop), as_json=as_json, echo=echo, warn=warn, novelty=marker,
                  note=note)


def _settings(saved, length, temperature, greedy, top_k, top_p, seed):
    """(length, temperature, top_k, top_p, seed) of a sample: the options given, else the
    checkpoint's `sample:` section; SampleError for one that cannot be used."""
    from charrnn.infer.sample import check_settings

    length = saved.length if length is None else length
    temperature = saved.temperature if temperature is None else temperature
    if greedy:
        temperature = 1.0       # the argmax does not depend on a single -t: ignored, not checked
    top_k = saved.top_k if top_k is None else top_k
    top_p = saved.top_p if top_p is None else top_p
    for t in temperature if isinstance(temperature, list) else [temperature]:
        check_settings(length, t, top_k, top_p)
    return length, temperature, top_k, top_p, saved.seed if seed is None else seed


def _check_prime(vocab, prime: str, unknown: str) -> None:
    """A prime with characters outside the vocabulary is a bad option value: a usage error
    (exit 2), as a bad --temperature is, unless --unknown skip drops them."""
    from charrnn.infer.evaluate import UnknownTextError, encode_text

    try:
        encode_text(vocab, prime, unknown, "the prime")
    except UnknownTextError as error:
        raise SampleError(str(error)) from None


def _temperatures(text: str):
    """A -t value: one number, or a list of them for 't1,t2,...'."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise SampleError(f"--temperature must be a number > 0, or several separated by commas "
                          f"(0.5,0.8,1.2); got {text!r}") from None
    return values if len(values) > 1 else values[0]


def _novelty_marker(ckpt, vocab, novelty: bool | None, by_default: bool, given: str, path: str,
                    data_path: str | None):
    """The novelty mark of `charrnn sample` (corpus.novelty_marker), or None when off. On by
    default only: a training text that cannot be read is a warning, not an error. given: the
    CHECKPOINT argument, path: its file; data_path: --data."""
    import dataclasses

    from charrnn.fileio import shell_path
    from charrnn.store.corpus import novelty_marker

    if novelty is False or (novelty is None and not by_default):
        return None
    data = ckpt.config.data
    if data_path is not None:
        data = dataclasses.replace(data, path=data_path)
    fix = f"charrnn sample {shell_path(given)} --novelty --data NEW_PATH"
    try:
        return novelty_marker(data, vocab, (ckpt.train_state or {}).get("corpus"),
                              os.path.dirname(path) or os.curdir, fix)
    except DataError as error:
        if novelty:
            raise DataError(f"--novelty reads the run's training text (data.path), which "
                            f"failed: {error}") from None
        warn(f"samples not marked for novelty: the run's training text cannot be read ({error})")
        return None


@cli.command("eval", epilog=examples(
    "charrnn eval runs/my held_out.txt",
    "cat notes.txt | charrnn perplexity runs/my - --json",
    "charrnn eval runs/my/last.safetensors held_out.txt --streams 32    # faster, approximate"))
@checkpoint_argument
@text_argument
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
@dynamic_options
def eval_command(checkpoint, text_file, as_json, unknown, chunk_len, streams, warmup,
                 one_process, **dynamic):
    """Loss (nats/char), bits/char and perplexity of CHECKPOINT on a text (default: stdin).

    CHECKPOINT is a .safetensors file or a run folder (its best checkpoint, else its last).
    One sequential pass from a zero state: every character but the first is predicted from all
    the characters before it. A model trained with data.documents scores each document of the
    text from a zero state, its end-of-document symbol included (--json: each one's figures). --streams 32 is about 1.5x faster, and approximate: each
    segment is read from --warmup characters before it instead of from the start.
    """
    import json

    from charrnn.infer.evaluate import evaluate_text, format_result
    from charrnn.store.checkpoint import load_model
    from charrnn.store.text import read_text

    if text_file == "-" and sys.stdin.isatty():
        raise UsageError("give a text FILE, or pipe the text into standard input")
    model, vocab, ckpt = load_model(checkpoint_file(checkpoint))
    if dynamic["dynamic"]:              # docs/dynamic-eval.md
        from charrnn.cli.dynamic import format_dynamic, run_eval

        result = run_eval(model, vocab, ckpt, read_text(text_file, warn=warn), dynamic, unknown,
                          warn, read_text)
        click.echo(json.dumps(result) if as_json else format_dynamic(result))
        return
    if vocab.eod is not None:           # documents mode: each document from a zero state
        from charrnn.infer.evaluate import evaluate_document_list
        from charrnn.store.corpus import split_documents

        docs = split_documents(read_text(text_file, warn=warn), ckpt.config.data.documents)
        result = evaluate_document_list(model, vocab, docs, unknown, chunk_len)
    else:
        result = evaluate_text(model, vocab, read_text(text_file, warn=warn), unknown, chunk_len,
                               streams, warmup, pipeline=not one_process)
    if result.chars_skipped:
        warn(f"skipped {result.chars_skipped} character(s) not in the model's vocabulary")
    click.echo(json.dumps(result.to_dict()) if as_json else format_result(result))


def _alias(command: click.Command, name: str) -> click.Command:
    """The same command under another name, whose line in `charrnn --help` says so."""
    alias = copy.copy(command)
    alias.name = name
    alias.short_help = f"The same as {command.name} (another name for it)."
    return alias


cli.add_command(_alias(eval_command, "perplexity"))


# -- inspect: what the model sees, character by character and unit by unit -------------------

@cli.command("inspect", epilog=examples(
    "charrnn inspect runs/my passage.txt                  # the text shaded by surprisal, a summary",
    "charrnn inspect runs/my passage.txt --html page.html # hover characters, colour by a unit",
    "charrnn inspect runs/my/last.safetensors notes.txt --json --gates  # every figure, as JSON"))
@checkpoint_argument
@text_argument
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
@dynamic_options
def inspect_command(checkpoint, text_file, html_path, as_json, top_k, per_feature, after, gates,
                    color, unknown, **dynamic):
    """Run a text through CHECKPOINT once (eval's exact pass) and show, per character, its
    surprisal (bits), the model's top-k predictions and every layer's state; and which units
    track simple features of the text (quotes, brackets, position in the line, ...).

    CHECKPOINT is a .safetensors file or a run folder (its best checkpoint, else its last).
    """
    from charrnn.infer.sample import unescape
    from charrnn.tools.inspect import SPAN_WIDTH, find_units, inspect_text, surprising_spans
    from charrnn.tools.inspect_term import format_summary, format_text
    from charrnn.store.checkpoint import load_model
    from charrnn.store.text import read_text

    if text_file == "-" and sys.stdin.isatty():
        raise UsageError("give a text FILE, or pipe the text into standard input")
    folder = os.path.dirname(os.path.abspath(html_path)) if html_path else ""
    if html_path and not os.path.isdir(folder):             # before the work, not after
        raise CharrnnError(f"cannot write {html_path}: the folder {folder} does not exist")
    checkpoint = checkpoint_file(checkpoint)
    model, vocab, ckpt = load_model(checkpoint)
    ins = inspect_text(model, vocab, read_text(text_file), top_k, gates, unknown)
    if dynamic["dynamic"]:              # static and dynamic surprisal side by side
        from charrnn.cli.dynamic import dynamic_surprisal

        ins.dynamic_surprisal, ins.dynamic = dynamic_surprisal(
            model, vocab, ckpt, vocab.encode(ins.text), dynamic, warn)
    if ins.chars_skipped:
        warn(f"skipped {ins.chars_skipped} character(s) not in the model's vocabulary")
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
    if ins.dynamic is not None:
        from charrnn.tools.inspect_dynamic import format_dynamic_summary, format_side_by_side
        if not html_path:
            click.echo(format_side_by_side(ins, color), color=color)
            click.echo()
        click.echo(format_dynamic_summary(ins))
    elif not html_path:
        click.echo(format_text(ins, color), color=color)    # click strips escapes unless told
        click.echo()
    click.echo(format_summary(ins, ranked, spans, color), color=color)


def _write_page(path, ins, ranked, checkpoint):
    from charrnn.tools.inspect_html import write_html

    try:
        write_html(path, ins, ranked, checkpoint)
    except OSError as error:
        raise CharrnnError(f"cannot write {path}: {error.strerror or error}") from None
    note(f"wrote {path} (open it in a browser)")
