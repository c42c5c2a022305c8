"""Setting up a run: its config and folder, the corpus, the model, the optimizer, the batches
and the random generators, new or restored from a checkpoint; and writing its checkpoints.

Run folder: config.yaml (the resolved config), metrics.jsonl (one JSON object per logged
figure), last.safetensors (latest state), best.safetensors (lowest validation loss). Every
command that reads a checkpoint also takes the folder (resolve_checkpoint).
"""

from __future__ import annotations

import os
import re
import shlex
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.config import Config, ConfigError, apply_overrides, load_config, parse_override
from charrnn.fileio import remove_stale_temporaries
from charrnn.nn.model import CharRNN
from charrnn.train import corpus as corpus_mod
from charrnn.train import data as data_mod
from charrnn.train.checkpoint import (
    RUN_CHECKPOINTS,
    Checkpoint,
    CheckpointError,
    Progress,
    TrainState,
    load_checkpoint,
    save_checkpoint,
)
from charrnn.train.docbatch import make_document_batches
from charrnn.train.engine import Local, make_engine
from charrnn.train.errors import TrainingError
from charrnn.train.optim import flatten_state, make_optimizer, unflatten_state
from charrnn.vocab import Vocab

ARCHITECTURE_KEYS = ("cell", "nonlinearity", "layers", "hidden_size", "embed_size")


@dataclass
class Run:
    """Everything the loop works on, set up by `prepare`."""

    config: Config
    vocab: Vocab
    model: CharRNN
    optimizer: object
    batches: object
    val_ids: np.ndarray
    dropout_rng: np.random.Generator
    batch_rng: np.random.Generator
    progress: Progress
    carry: tuple | None = None
    out_dir: str = ""
    engine: object = None          # Local or DataParallel: where the step is computed
    corpus: dict | None = None     # corpus_fingerprint of the ids, saved to check resumes
    removed: tuple = ()            # temporary files of interrupted writes cleaned from out_dir
    notes: tuple = ()              # what reading the corpus found (files, documents, the split)

    def __post_init__(self):
        if self.engine is None:
            self.engine = Local(self.model, self.optimizer)

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)


RUN_FILES = RUN_CHECKPOINTS
LAST, BEST = RUN_CHECKPOINTS
RUNS_FOLDER = "runs"           # where `charrnn train --data FILE` puts a run with no out_dir


def resolve_checkpoint(path: str, say=None) -> str:
    """The checkpoint file that `path` names: `path` itself, or for a run folder its
    best.safetensors if there, else its last.safetensors (say(line) tells which).

    CheckpointError for a folder that holds neither.
    """
    if not os.path.isdir(path):
        return path
    for name, why in ((BEST, "lowest validation loss"), (LAST, "latest; no best.safetensors yet")):
        found = os.path.join(path, name)
        if os.path.isfile(found):
            if say is not None:
                say(f"using {found} ({why})")
            return found
    raise CheckpointError(f"the folder {path} holds no checkpoint ({BEST} or {LAST}); give a "
                          f"run folder of `charrnn train` or a .safetensors file.")


def out_dir_for(data_path: str) -> str:
    """The run folder for a corpus given with --data: runs/<file or folder name without its
    suffix> (of a glob: of the part before its first wildcard), runs/stdin for '-'."""
    stem = "stdin" if data_path == "-" else Path(re.split(r"[*?[]", data_path)[0]).stem.lstrip(".")
    return os.path.join(RUNS_FOLDER, stem or "text")


def train_config(config_file: str | None, data_path: str | None, overrides=()) -> Config:
    """A new run's config: defaults < CONFIG file < --data < --set.

    With the text given on the command line (--data, or --set data.path) and no train.out_dir
    in the file or --set, the run goes to out_dir_for(the text): the default runs/shakespeare
    names another corpus (so an out_dir equal to it counts as unset).
    """
    sets = ([f"data.path={data_path}"] if data_path is not None else []) + list(overrides)
    cfg = load_config(config_file, sets)
    named = {parse_override(o)[:2] for o in sets}
    if (("data", "path") in named and ("train", "out_dir") not in named
            and cfg.train.out_dir == Config().train.out_dir):
        cfg.train.out_dir = out_dir_for(cfg.data.path)
    return cfg


def refuse_existing_run(out_dir: str) -> None:
    """ConfigError when out_dir already holds a run's checkpoints: a new run would overwrite them
    and append to its metrics.jsonl. Called before anything in the folder is touched."""
    if any(os.path.exists(os.path.join(out_dir, name)) for name in RUN_FILES):
        raise ConfigError(f"the output folder {out_dir} already holds a run; continue it with "
                          f"`charrnn train --resume {out_dir}`, or set train.out_dir to another "
                          f"folder for a new run (--set train.out_dir={out_dir.rstrip(os.sep)}-2).")


def prepare_out_dir(out_dir: str) -> None:
    """Create the run folder if needed and prove it is writable, before any training."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"cannot create the output folder {out_dir}: {e.strerror}; "
                            f"set train.out_dir to a writable folder.") from None
    probe = os.path.join(out_dir, ".write-test")
    try:
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise TrainingError(f"the output folder {out_dir} is not writable ({e.strerror}); "
                            f"set train.out_dir to a writable folder.") from None


def load_corpus(cfg: Config, vocab: Vocab | None):
    """(vocab, train ids, val ids) of data.path; the given vocab (from a checkpoint) if any."""
    corpus = read_checked_corpus(cfg, vocab)
    return corpus.vocab, corpus.train_ids, corpus.val_ids


def read_checked_corpus(cfg: Config, vocab: Vocab | None) -> corpus_mod.Corpus:
    """The corpus of data.path (charrnn/train/corpus.py), checked to make a batch and a
    validation pass; the given vocab (from a checkpoint) if any."""
    try:
        corpus = corpus_mod.read_corpus(cfg.data, vocab)
    except data_mod.DataError as e:
        if "is empty" not in str(e):
            raise
        need = data_mod.min_corpus_chars(cfg.data.val_fraction, cfg.train.batch_size,
                                         cfg.train.seq_len, cfg.data.batching)
        raise data_mod.DataError(f"{str(e).removesuffix('some UTF-8 text')}a UTF-8 text "
                                 f"file of at least {need} characters") from None
    if not corpus.documents:       # documents mode: its batcher checks the pieces (docbatch.py)
        data_mod.validate_split(corpus.train_ids, corpus.val_ids, cfg.data.val_fraction,
                                cfg.train.batch_size, cfg.train.seq_len, cfg.data.batching)
    return corpus


def corpus_fingerprint(train_ids: np.ndarray, val_ids: np.ndarray) -> dict:
    """{"chars": N, "crc32": checksum of the ids}: enough to tell a resumed run's corpus changed
    (one pass of zlib's crc32 over them)."""
    crc = zlib.crc32(np.ascontiguousarray(val_ids).data, zlib.crc32(np.ascontiguousarray(train_ids).data))
    return {"chars": int(len(train_ids) + len(val_ids)), "crc32": int(crc)}


def check_same_corpus(cfg: Config, state: TrainState, corpus: dict) -> None:
    """TrainingError when a resumed run's corpus is not the one it was saved with: its batches
    would be other text, so it would not continue the same run. (Older checkpoints: no check.)"""
    saved = state.corpus
    if saved is not None and saved != corpus:
        raise TrainingError(
            f"the corpus {cfg.data.path} is not the one this run was trained on "
            f"({saved.get('chars')} characters then, {corpus['chars']} now, different contents); "
            f"restore that file to resume, or start a new run from these weights with --init-from.")


def check_prime(cfg: Config, vocab: Vocab) -> None:
    """ConfigError when the periodic sample's prime has characters outside the vocabulary,
    before any training (the first sample would otherwise fail after the work was done)."""
    if not cfg.train.sample_every:
        return
    missing = sorted(set(cfg.sample.prime) - set(vocab.symbols))
    if missing:
        shown = ", ".join(repr(c) for c in missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise ConfigError(f"sample.prime has {len(missing)} character(s) that are not in the "
                          f"model's vocabulary ({shown}); change sample.prime or set "
                          f"train.sample_every=0")


def _check_same_architecture(cfg: Config, ckpt: Checkpoint, what: str) -> None:
    for key in ARCHITECTURE_KEYS:
        mine, theirs = getattr(cfg.model, key), getattr(ckpt.config.model, key)
        if mine != theirs:
            # a resumed run's config is the checkpoint's, so only a --set can differ; a config
            # for --init-from may differ by a default the user never wrote
            fix = ("remove that --set, or start a new run" if what == "resumed" else
                   f"set model.{key}: {theirs!r} in the config (or --set model.{key}={theirs})")
            raise ConfigError(f"model.{key} is {mine!r} but the {what} checkpoint has {theirs!r}; "
                              f"{fix}.")


def prepare(cfg: Config, resume: Checkpoint | None = None, init_from: Checkpoint | None = None) -> Run:
    """Build the run: corpus, model, optimizer, batches and RNGs, restored from `resume` if given.

    A new run (no `resume`) refuses an out_dir that already holds one.
    """
    if resume is None:
        refuse_existing_run(cfg.train.out_dir)
    prepare_out_dir(cfg.train.out_dir)
    removed = remove_stale_temporaries(cfg.train.out_dir)    # no write can be under way yet
    state = _train_state(resume) if resume is not None else None
    source = resume or init_from
    if source is not None:
        _check_same_architecture(cfg, source, "resumed" if resume else "--init-from")
    text = read_checked_corpus(cfg, source.vocab if source else None)
    vocab, train_ids, val_ids = text.vocab, text.train_ids, text.val_ids
    corpus = corpus_fingerprint(train_ids, val_ids)
    if state is not None:
        check_same_corpus(cfg, state, corpus)
    check_prime(cfg, vocab)
    dtype = np.dtype(cfg.train.dtype)
    model = CharRNN(len(vocab), cfg.model, dtype=dtype, seed=cfg.train.seed)
    if source is not None:
        model.params.copy_from({k: v.astype(dtype) for k, v in source.params.items()})
    optimizer = make_optimizer(None, model.params, cfg.train)
    seeds = np.random.SeedSequence(cfg.train.seed).spawn(2)
    dropout_rng, batch_rng = (np.random.default_rng(s) for s in seeds)
    if vocab.eod_id is not None:
        batches = make_document_batches(train_ids, vocab.eod_id, cfg.train, cfg.data.batching,
                                        batch_rng)
    else:
        batches = data_mod.make_batches(train_ids, cfg.train, cfg.data.batching, batch_rng)
    run = Run(cfg, vocab, model, optimizer, batches, val_ids, dropout_rng, batch_rng, Progress(),
              out_dir=cfg.train.out_dir, corpus=corpus, removed=tuple(removed),
              notes=tuple(text.notes))
    if resume is not None:
        _restore(run, resume, state)
    run.engine = make_engine(model, optimizer, cfg.train, state.workers if state else None)
    return run


def _incomplete(error: Exception) -> TrainingError:
    return TrainingError(f"the checkpoint's training state is incomplete ({error}); "
                         f"use --init-from to start a new run from its weights.")


def _train_state(ckpt: Checkpoint) -> TrainState:
    try:
        return TrainState.from_dict(ckpt.train_state)
    except ValueError as e:
        raise _incomplete(e) from None


def _restore(run: Run, ckpt: Checkpoint, state: TrainState) -> None:
    """Put optimizer, progress, carried state and RNGs back as they were saved."""
    try:
        run.optimizer.load_state_dict(unflatten_state(ckpt.optim, state.optim))
        run.dropout_rng.bit_generator.state = state.rng["dropout"]
        run.batch_rng.bit_generator.state = state.rng["batch"]
    except (KeyError, TypeError, ValueError) as e:
        raise _incomplete(e) from None
    run.progress = state.progress
    dtype = run.model.dtype
    run.carry = tuple(np.asarray(c, dtype) for c in ckpt.carry) or None
    if run.progress.position > run.batches.batches_per_epoch:
        raise TrainingError("the resumed run's batch position is past the end of an epoch: "
                            "data.path, train.batch_size or train.seq_len changed since it was saved.")


def save(run: Run, name: str) -> None:
    """Write RUN/name (last or best) with everything needed to resume."""
    tensors, scalars = flatten_state(run.optimizer.state_dict())
    p = run.progress
    state = TrainState(p, scalars, {"dropout": run.dropout_rng.bit_generator.state,
                                    "batch": run.batch_rng.bit_generator.state},
                       run.engine.workers, run.corpus)
    try:
        save_checkpoint(run.path(name), run.model, run.vocab, run.config, tensors,
                        state.to_dict(), carry=run.carry or ())
    except OSError as e:                 # disk full, folder removed, ...: the old file is intact
        raise TrainingError(f"could not write {run.path(name)} at step {p.step} "
                            f"({e.strerror or e}); the previous {name} is intact. Free some "
                            f"space (or fix the folder) and resume with: charrnn train "
                            f"--resume {run.out_dir}") from None


def open_run(cfg: Config | None, resume_dir: str | None = None, init_from: str | None = None,
             overrides=(), say=None) -> Run:
    """The run of `charrnn train`: a new one from cfg, or the one in resume_dir, continued
    with `overrides` (--set) on top of its config. init_from: a checkpoint or a run folder.
    say(line), if given, hears where the run goes and how to sample from it."""
    resume = None
    if resume_dir is not None:
        path = resume_dir if resume_dir.endswith(".safetensors") else os.path.join(resume_dir, LAST)
        resume = load_checkpoint(path)
        cfg = apply_overrides(resume.config, overrides)
        if not resume_dir.endswith(".safetensors"):
            cfg.train.out_dir = resume_dir     # the run folder may have been moved
    init = load_checkpoint(resolve_checkpoint(init_from, say)) if init_from else None
    run = prepare(cfg, resume=resume, init_from=init)
    if say is not None:
        announce(run, resumed=resume is not None, say=say)
    return run


def announce(run: Run, resumed: bool, say) -> None:
    """The first lines of a run: what it reads, where it goes, and the command that samples."""
    if run.removed:
        say(f"removed {len(run.removed)} temporary file(s) of interrupted writes from {run.out_dir}")
    data = run.config.data.path
    source = ", ".join(data_mod.display_name(p) for p in ([data] if isinstance(data, str) else data))
    if resumed:
        say(f"resuming the run in {run.out_dir} at step {run.progress.step} ({source})")
    else:
        say(f"training on {source} ({run.corpus['chars']:,} characters, {len(run.vocab)} distinct); "
            f"the run goes to {run.out_dir}")
        if run.notes:
            say("; ".join(run.notes))
    say(f"sample from it with: charrnn sample {shlex.quote(run.out_dir)}")
    t = run.config.train
    if t.max_steps is None and t.max_epochs is None and t.max_minutes is None:
        say("it trains until Ctrl-C, which saves it (or set train.max_minutes, max_steps)")
