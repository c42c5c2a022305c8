"""The command-line side of dynamic evaluation (`charrnn eval --dynamic`, `charrnn inspect
--dynamic`): its options, and the reading the infer layer must not do (the checkpoint's
training text for MS, through the corpus reader the other commands use).

Public API:
  dynamic_options(command) -> command      the shared click options (the paper's names in help)
  settings_from(options) -> Settings
  run_eval(model, vocab, ckpt, text, options, unknown, warn) -> result dict
  dynamic_inspection(model, ckpt, ids, options, warn) -> (surprisal [N] bits, result dict)
"""

from __future__ import annotations

import click
import numpy as np

from charrnn.infer.dynamic import EPSILON, RULES, SEGMENT, DynamicError
from charrnn.infer.dynamic_eval import (  # noqa: F401 - format_dynamic: the CLI's printer
    MS_SOURCES,
    Settings,
    evaluate_dynamic,
    format_dynamic,
    pick_ms,
    split_for_fit,
)
from charrnn.infer.evaluate import EvalError, encode_text

_OPTIONS = [
    click.option("--dynamic", is_flag=True,
                 help="Dynamic evaluation (Krause et al. 2017): score each segment, then take "
                      "one gradient step on it; prints the static loss beside it."),
    click.option("--rule", type=click.Choice(RULES), default="rms", show_default=True,
                 help="rms: theta -= eta g / (MS + eps) + lambda decay (theta0 - theta), MS "
                      "the training gradient's RMS; sgd: theta -= eta g + lambda (theta0 - "
                      "theta)."),
    click.option("--eta", "--dynamic-lr", "eta", type=float, default=None,
                 help="eta, the learning rate of the update.  [default: rms 1e-4 with MS "
                      "from adam, 1e-3 from train; sgd 0.04]"),
    click.option("--lambda", "--decay", "lam", type=float, default=None,
                 help="lambda, the decay rate toward the trained weights theta0, in [0, 1].  "
                      "[default: rms 0.005, sgd 0.001]"),
    click.option("--segment", type=int, default=SEGMENT, show_default=True,
                 help="n, characters per segment (one update each; the paper's is 5, which "
                      "measured worse and half as fast here)."),
    click.option("--epsilon", type=float, default=EPSILON, show_default=True,
                 help="eps of the rms rule, as a fraction of mean(MS)."),
    click.option("--ms", "ms_source", type=click.Choice(MS_SOURCES), default="auto",
                 show_default=True,
                 help="Where MS comes from: train (the paper's: the gradient over the run's "
                      "training text, data.path), adam (the checkpoint's Adam second moment), "
                      "auto (adam when the checkpoint has it, measured better; else train)."),
    click.option("--fit", is_flag=True,
                 help="First search eta and lambda on the first 10% of the text (or "
                      "--fit-on), then score the rest with the best."),
    click.option("--fit-on", metavar="FILE", type=click.Path(dir_okay=False, exists=True),
                 help="With --fit: search on this text instead, and score all of FILE|-."),
    click.option("--reset-weights/--carry-weights", default=None,
                 help="Documents-mode models: go back to the trained weights at each document, "
                      "or carry the adapted ones over.  [default: carry (measured better)]"),
]


def dynamic_options(command):
    """Add the dynamic-evaluation options to a click command."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def settings_from(options: dict) -> Settings:
    """Settings from the parsed options, checked (DynamicError, exit 2, for a bad one) before
    any work; eta and lambda left None where the defaults depend on MS's source."""
    s = Settings(options["rule"], options["eta"], options["lam"], options["segment"],
                 options["epsilon"], options["ms_source"], options["reset_weights"])
    s.resolved()
    return s


def _train_ids(ckpt, vocab, warn):
    """The ids of the run's training split, or None (with a note) when they cannot be read."""
    from charrnn.store.corpus import read_corpus
    from charrnn.store.text import DataError

    try:
        corpus = read_corpus(ckpt.config.data, vocab, warn=lambda message: None)
    except (DataError, OSError) as error:
        warn(f"the run's training text cannot be read for MS ({error})")
        return None
    return corpus.train_ids


def _ms(model, vocab, ckpt, s: Settings, warn):
    if s.rule != "rms":
        return None, None
    optim_state = (ckpt.train_state or {}).get("optim") or {}
    steps = optim_state.get("step") if isinstance(optim_state, dict) else None
    beta2 = getattr(ckpt.config.train, "beta2", None) or 0.999
    has_adam = any(k.startswith("optim.exp_avg_sq.") for k in ckpt.optim or {})
    wants_text = s.ms_source == "train" or (s.ms_source == "auto" and not has_adam)
    train = _train_ids(ckpt, vocab, warn) if wants_text else None
    return pick_ms(model, s.ms_source, train, ckpt.optim, steps, s.segment, beta2)


def run_eval(model, vocab, ckpt, text: str, options: dict, unknown: str, warn,
             read_text=None) -> dict:
    """`charrnn eval --dynamic`: the result dict (charrnn.infer.dynamic_eval)."""
    s = settings_from(options)
    eod = vocab.eod_id if vocab.eod is not None else None
    if eod is not None and (options["fit"] or options["fit_on"]):
        raise DynamicError("--fit is not available for a documents-mode model yet; give "
                           "--eta and --lambda")
    if options["fit_on"] and not options["fit"]:
        raise DynamicError("--fit-on names the text --fit searches on; add --fit")
    if eod is not None:
        from charrnn.store.corpus import join_documents, split_documents

        text = join_documents(split_documents(text, ckpt.config.data.documents))
    ids, skipped, _ = encode_text(vocab, text, unknown, "the text")
    if len(ids) < 2:
        raise EvalError(f"the text has {len(ids)} character(s) the model knows; evaluation "
                        f"needs at least 2 (one to read, one to predict)")
    ms, source = _ms(model, vocab, ckpt, s, warn)
    fit_ids, note = None, ""
    if options["fit_on"]:
        fit_ids = encode_text(vocab, read_text(options["fit_on"]), unknown, "the --fit-on text")[0]
        note = options["fit_on"]
        if len(fit_ids) < 2:
            raise EvalError("the --fit-on text has fewer than 2 characters the model knows")
    elif options["fit"]:
        fit_ids, ids = split_for_fit(ids)
        note = "the first 10% of the text"
    result = evaluate_dynamic(model, ids, s, ms, fit_ids, note, eod, source)
    result["ms_source"] = source
    result["chars_skipped"] = int(skipped)
    return result


def dynamic_surprisal(model, vocab, ckpt, ids, options: dict, warn) -> tuple[np.ndarray, dict]:
    """(surprisal [N] bits with NaN at 0, settings dict) of ids read with dynamic evaluation
    (`charrnn inspect --dynamic`); the model's weights are left as they were."""
    from charrnn.infer.dynamic import Rule, dynamic_pass

    s = settings_from(options)
    ms, source = _ms(model, vocab, ckpt, s, warn)
    s = Settings(s.rule, options["eta"], options["lam"], s.segment, s.epsilon, s.ms_source,
                 s.reset).resolved(source)
    theta0 = model.params.flat.copy()
    bits = np.full(len(ids), np.nan)
    try:
        rule = Rule(s.rule, s.eta, s.lam, ms, s.epsilon).bind(model)
        for start, _, nll in dynamic_pass(model, ids, rule, s.segment):
            bits[start + 1:start + 1 + len(nll)] = nll / np.log(2)
    finally:
        model.params.flat[...] = theta0
    return bits, {"rule": s.rule, "eta": s.eta, "lambda": s.lam, "segment": s.segment,
                  "epsilon": s.epsilon, "ms_source": source}
