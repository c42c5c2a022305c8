"""Setting up a run: its config and folder, the corpus, the model, the optimizer, the batches
and the random generators, new or restored from a checkpoint; and writing its checkpoints.

Run folder: config.yaml (the resolved config), metrics.jsonl (one JSON object per logged
figure), last.safetensors (latest state), best.safetensors (lowest validation loss). Every
command that reads a checkpoint also takes the folder (resolve_checkpoint).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn.config import (
    Config,
    ConfigError,
    apply_overrides,
    load_config,
    parse_override,
    save_config,
)
from charrnn import engines
from charrnn.engines.base import Engine
from charrnn.fast.parallel import available_cores
from charrnn.fileio import command_name, shell_path
from charrnn.nn.model import CharRNN
from charrnn.store import corpus as corpus_mod
from charrnn.store import source as text_source
from charrnn.store.text import DataError, display_name
from charrnn.train import autosize
from charrnn.train import data as data_mod
from charrnn.store.checkpoint import (
    RUN_CHECKPOINTS,
    Checkpoint,
    CheckpointError,
    Progress,
    TrainState,
    load_checkpoint,
    resolve_checkpoint,
    saved_steps,
    write_checkpoint,
)
from charrnn.train.data import Batches
from charrnn.train.docbatch import make_document_batches
from charrnn.train.errors import TrainingError
from charrnn.train.folder import FolderLock, own_out_dir, refuse_existing_run, remove_empty_folder
from charrnn.train.report import quick_timing, report_lines
from charrnn.train.lr import LearningRate
from charrnn.train.resume import change_notes, refuse_changes
from charrnn.store.vocab import Vocab

ARCHITECTURE_KEYS = ("cell", "nonlinearity", "layers", "hidden_size", "embed_size", "residual",
                     "ffn_mult")


@dataclass
class Run:
    """Everything the loop works on, set up by `prepare`."""

    config: Config
    vocab: Vocab
    engine: Engine                 # where the steps run; owns weights, optimizer, carried state
    batches: Batches
    val_ids: np.ndarray
    dropout_rng: np.random.Generator
    batch_rng: np.random.Generator
    progress: Progress
    out_dir: str = ""
    corpus: dict | None = None     # store/source.fingerprint of the ids, saved to check resumes
    removed: tuple = ()            # temporary files of interrupted writes cleaned from out_dir
    saved: dict = field(default_factory=dict)   # checkpoint name -> step, of this run's folder
    lock: FolderLock | None = None  # held while the run owns its folder
    created_dir: bool = False      # the run created its folder (and removes it if left empty)
    notes: list = field(default_factory=list)   # what changed on resume, for announce()
    corpus_notes: tuple = ()       # what reading the corpus found (files, documents, the split)
    text_figures: tuple = ()       # (characters, distinct characters) of the text itself
    init_from: str | None = None   # the checkpoint whose weights and vocabulary a new run takes
    train_ids: np.ndarray | None = None   # the training text's ids (batches cut from them)
    step_seconds: float | None = None     # quick timings of the start-of-run report
    eval_seconds: float | None = None
    size_note: str = ""            # what model.size auto chose and why

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    @property
    def lr(self) -> LearningRate:
        """The run's learning rate (train/lr.py), over its progress."""
        return LearningRate(self.config.train, self.progress, self.batches.batches_per_epoch)

    def close(self) -> None:
        """Stop the workers and give the folder up (one it created and never wrote to goes)."""
        if self.engine is not None:
            self.engine.close()
        if self.lock is not None:
            self.lock.close()
            self.lock = None
            if self.created_dir:
                remove_empty_folder(self.out_dir)

    def rng_states(self) -> dict:
        """The random generators' states, as a checkpoint stores them."""
        return {"dropout": self.dropout_rng.bit_generator.state,
                "batch": self.batch_rng.bit_generator.state}


LAST, BEST = RUN_CHECKPOINTS
RUNS_FOLDER = "runs"           # where `charrnn train --data FILE` puts a run with no out_dir
# the batchers' order as saved; 2: documents packed to cover the whole text (train/docbatch.py)
BATCH_ORDER = 2
OLD_DOCUMENT_ORDER = ("this documents-mode run was saved by an earlier charrnn, whose batches "
                      "left part of the text out; it goes on with batches that cover all of it, "
                      "so not exactly as it would have gone on then")


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


def load_corpus(cfg: Config, vocab: Vocab | None):
    """(vocab, train ids, val ids) of data.path; the given vocab (from a checkpoint) if any."""
    corpus = read_checked_corpus(cfg, vocab)
    return corpus.vocab, corpus.train_ids, corpus.val_ids


def read_checked_corpus(cfg: Config, vocab: Vocab | None) -> corpus_mod.Corpus:
    """The corpus of data.path (charrnn/store/corpus.py), checked to make a batch and a
    validation pass; the given vocab (from a checkpoint) if any."""
    try:
        corpus = corpus_mod.read_corpus(cfg.data, vocab)
    except DataError as e:
        if "is empty" not in str(e):
            raise
        need = data_mod.min_corpus_chars(cfg.data.val_fraction, cfg.train.batch_size,
                                         cfg.train.seq_len, cfg.data.batching)
        raise DataError(f"{str(e).removesuffix('some UTF-8 text')}a UTF-8 text "
                                 f"file of at least {need} characters") from None
    if not corpus.documents:       # documents mode: its batcher checks the pieces (docbatch.py)
        data_mod.validate_split(corpus.train_ids, corpus.val_ids, cfg.data.val_fraction,
                                cfg.train.batch_size, cfg.train.seq_len, cfg.data.batching)
    return corpus


def check_same_corpus(cfg: Config, state: TrainState, corpus: dict) -> None:
    """TrainingError when a resumed run's corpus is not the one it was saved with: its batches
    would be other text, so it would not continue the same run. (Older checkpoints: no check.)"""
    how = text_source.changed(state.corpus, corpus)
    if how is not None:
        raise TrainingError(
            f"the corpus {cfg.data.path} is not the one this run was trained on ({how}); "
            f"restore that file to resume, or start a new run from these weights with --init-from.")


def _located(cfg: Config, state: TrainState | None) -> Config:
    """cfg with data.path where a resumed run finds its text from this working directory
    (charrnn/store/source.py); the config itself keeps the path as given."""
    if state is None:
        return cfg
    fix = (f"charrnn train --resume {shell_path(cfg.train.out_dir)} --set data.path=NEW_PATH")
    place = text_source.locate(cfg.data.path, state.corpus, cfg.train.out_dir, fix)
    if place == cfg.data.path:
        return cfg
    located = copy.copy(cfg)
    located.data = dataclasses.replace(cfg.data, path=place)
    return located


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


def _with_architecture_of(cfg: Config, ckpt: Checkpoint) -> Config:
    """cfg with the checkpoint's architecture where the config file and --set give none (a
    new run from its weights trains its model; a size given that differs is refused)."""
    taken = {k: getattr(ckpt.config.model, k) for k in ARCHITECTURE_KEYS
             if f"model.{k}" not in cfg.given}
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **taken))


def _check_same_architecture(cfg: Config, ckpt: Checkpoint, what: str) -> None:
    for key in ARCHITECTURE_KEYS:
        mine, theirs = getattr(cfg.model, key), getattr(ckpt.config.model, key)
        if mine != theirs:
            # a resumed run's config is the checkpoint's, so only a --set can differ; for
            # --init-from, a size the config file or --set gives
            fix = ("remove that --set, or start a new run" if what == "resumed" else
                   f"leave model.{key} out (the checkpoint's is taken) or set it to {theirs!r}")
            raise ConfigError(f"model.{key} is {mine!r} but the {what} checkpoint has {theirs!r}; "
                              f"{fix}.")


def prepare(cfg: Config, resume: Checkpoint | None = None, init_from: Checkpoint | None = None,
            resumed_config: Config | None = None, dry_run: bool = False) -> Run:
    """Build the run: corpus, model, optimizer, batches and RNGs, restored from `resume` if given
    (resumed_config: its config before --set, to check what changed; default resume.config).

    Nothing is written until everything has been checked: then the run folder is created (if
    needed) and locked for this run (not for a dry run, which writes nothing). A new run (no
    `resume`) refuses a folder that holds one.
    """
    if resume is None:
        refuse_existing_run(cfg.train.out_dir)
    state = _train_state(resume) if resume is not None else None
    if resume is not None:
        refuse_changes(resumed_config or resume.config, cfg)
    choose_size = resume is None and autosize.wanted(cfg, init_from is not None)
    if init_from is not None:
        cfg = _with_architecture_of(cfg, init_from)
        _check_same_architecture(cfg, init_from, "--init-from")
    source = resume or init_from
    read_cfg = _located(cfg, state)
    try:
        text = read_checked_corpus(read_cfg, source.vocab if source else None)
    except DataError as e:
        if resume is None or cfg.data.path != "-" or "is empty" not in str(e):
            raise
        raise DataError(f"this run read its text from standard input and none came; "
                                 f"pipe the same text again (cat FILE | charrnn train --resume "
                                 f"{shell_path(cfg.train.out_dir)}) or add --set "
                                 f"data.path=FILE") from None
    vocab, train_ids, val_ids = text.vocab, text.train_ids, text.val_ids
    corpus = text_source.fingerprint(train_ids, val_ids)
    corpus.update(text_source.record(cfg.data.path, read_cfg.data.path, cfg.train.out_dir))
    if state is not None:
        check_same_corpus(cfg, state, corpus)
    check_prime(cfg, vocab)
    seeds = np.random.SeedSequence(cfg.train.seed).spawn(2)
    dropout_rng, batch_rng = (np.random.default_rng(s) for s in seeds)
    if vocab.eod_id is not None:
        batches = make_document_batches(train_ids, vocab.eod_id, cfg.train, cfg.data.batching,
                                        batch_rng)
    else:
        batches = data_mod.make_batches(train_ids, cfg.train, cfg.data.batching, batch_rng)
    size_note = ""
    if choose_size:
        cfg, size_note = autosize.resolve(cfg, len(vocab), train_ids, batches.batches_per_epoch)
    dtype = np.dtype(cfg.train.dtype)
    model = CharRNN(len(vocab), cfg.model, dtype=dtype, seed=cfg.train.seed)
    if source is not None:
        model.params.copy_from({k: v.astype(dtype) for k, v in source.params.items()})
    notes = []
    if resume is not None:
        notes = change_notes(resumed_config or resume.config, cfg, state.progress,
                             batches.batches_per_epoch, state.workers)
        if vocab.eod_id is not None and state.batch_order is None:
            notes.append(OLD_DOCUMENT_ORDER)
    engine = engines.get(cfg.train.engine)(model, cfg.train, state.workers if state else None)
    try:
        # under torchrun, the rank that writes owns the folder (engines/base.py's writer)
        lock, removed, created = ((None, (), False) if dry_run or not engine.writer else
                                  own_out_dir(cfg.train.out_dir, resume is None))
    except BaseException:
        engine.close()
        raise
    run = Run(cfg, vocab, engine, batches, val_ids, dropout_rng, batch_rng, Progress(),
              out_dir=cfg.train.out_dir, corpus=corpus, removed=removed, lock=lock, notes=notes,
              train_ids=train_ids, created_dir=created, corpus_notes=tuple(text.notes),
              text_figures=(text.chars, text.distinct), size_note=size_note)
    try:
        if resume is not None:
            _restore(run, resume, state)
            run.lr.resumed_from((resumed_config or resume.config).train)
    except BaseException:
        run.close()
        raise
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
        run.engine.restore(ckpt.optim, state.optim, ckpt.carry)
        run.dropout_rng.bit_generator.state = state.rng["dropout"]
        run.batch_rng.bit_generator.state = state.rng["batch"]
    except (KeyError, TypeError, ValueError) as e:
        raise _incomplete(e) from None
    run.progress = state.progress
    if run.progress.position > run.batches.batches_per_epoch:
        raise TrainingError("the resumed run's batch position is past the end of an epoch: "
                            "data.path, train.batch_size or train.seq_len changed since it was saved.")


def save(run: Run, name: str, rng_states: dict | None = None) -> None:
    """Write RUN/name (last or best) with everything needed to resume; rng_states: the random
    generators' states to store (default: as they are now).

    Diverged, and nothing written, when a weight is not finite: a checkpoint never holds NaN.
    """
    from charrnn.train.divergence import Diverged, weights_problem

    p = run.progress
    saved = run.engine.state()
    problem = weights_problem(saved.params)
    if problem is not None:
        raise Diverged(f"the run diverged by step {p.step}: {problem}; {run.path(name)} was not "
                       f"written. Lower train.lr or keep train.clip on.")
    state = TrainState(p, saved.optim_scalars, rng_states or run.rng_states(),
                       run.engine.workers, run.corpus, BATCH_ORDER)
    if not run.engine.writer:            # state() was every process's part; the writer writes
        run.saved[name] = p.step
        return
    try:
        save_config(run.config, run.path("config.yaml"))     # the settings of the newest checkpoint
        write_checkpoint(run.path(name), saved.params, run.vocab, run.config, saved.optim,
                         state.to_dict(), carry=saved.carry)
    except OSError as e:                 # disk full, folder removed, ...: the old file is intact
        before = (f"the previous {name} (step {run.saved[name]}) is intact"
                  if name in run.saved else f"no {name} had been written yet")
        raise TrainingError(f"could not write {run.path(name)} at step {p.step} "
                            f"({e.strerror or e}); {before}. Free some space (or fix the folder) "
                            f"and {way_on(run)}") from None
    run.saved[name] = p.step


def saved_list(run: Run, name_of=lambda name: name) -> str:
    """'last.safetensors (step 9) and best.safetensors (step 5)': the checkpoints this run's
    folder holds, or '' (name_of turns a checkpoint's name into how it is shown)."""
    return " and ".join(f"{name_of(name)} (step {run.saved[name]})" for name in (LAST, BEST)
                        if name in run.saved)


def way_on(run: Run) -> str:
    """How to go on after a failed write: resume if the folder holds a checkpoint, else start."""
    if run.saved:
        return f"resume with: {command_name()} train --resume {shell_path(run.out_dir)}"
    return "start the run again"


def resume_checkpoint(resume_dir: str) -> tuple[str, str | None]:
    """(checkpoint file, note) that `--resume resume_dir` continues: a .safetensors file itself,
    else the folder's last.safetensors, else its best.safetensors (with a note saying so: a run
    stopped before its first checkpoint_every, or whose last write failed, has only that).

    CheckpointError naming the way out when there is neither.
    """
    if resume_dir.endswith(".safetensors"):
        return resume_dir, None
    last, best = os.path.join(resume_dir, LAST), os.path.join(resume_dir, BEST)
    if os.path.isfile(last):
        return last, None
    if os.path.isfile(best):
        return best, (f"{resume_dir} has no {LAST}; resuming from {BEST}, the state of its "
                      f"best evaluation (later steps are trained again)")
    if not os.path.isdir(resume_dir):
        raise CheckpointError(f"there is no run folder {resume_dir} to resume; check the path")
    raise CheckpointError(f"{resume_dir} holds no checkpoint to resume (the run stopped before "
                          f"saving one); start it again: charrnn train ... --set "
                          f"train.out_dir={shell_path(resume_dir)}")


def open_run(cfg: Config | None, resume_dir: str | None = None, init_from: str | None = None,
             overrides=(), say=None, warn=None, dry_run: bool = False) -> Run:
    """The run of `charrnn train`: a new one from cfg, or the one in resume_dir, continued
    with `overrides` (--set) on top of its config. init_from: a checkpoint or a run folder.
    say(line) and warn(line), if given, hear the run's first lines (announce). dry_run: check
    and build everything, write nothing."""
    resume, before, note = None, None, None
    if resume_dir is not None:
        path, note = resume_checkpoint(resume_dir)
        resume = load_checkpoint(path)
        before = copy.deepcopy(resume.config)
        # the run goes on in the folder it is read from (which may have been moved or copied)
        before.train.out_dir = os.path.dirname(path) or os.curdir
        cfg = apply_overrides(before, overrides)
    init_path = resolve_checkpoint(init_from, say) if init_from else None
    init = load_checkpoint(init_path) if init_from else None
    run = prepare(cfg, resume=resume, init_from=init, resumed_config=before, dry_run=dry_run)
    run.init_from = init_path
    if note:
        run.notes.insert(0, note)
    if resume is not None:
        run.saved = saved_steps(run.out_dir)
    try:
        announce(run, resumed=resume is not None, say=say, warn=warn)
    except BaseException:
        run.close()
        raise
    return run


def announce(run: Run, resumed: bool, say=None, warn=None) -> None:
    """The first lines of a run: say() hears what it reads, where it goes and the command that
    samples; warn() (shown even with -q) what the user may not expect: what changed on resume,
    and a run with no limit."""
    data = run.config.data.path
    source = ", ".join(display_name(p) for p in ([data] if isinstance(data, str) else data))
    if not run.engine.writer:            # silent, but times a step as the writer does (torchrun)
        say, warn = say and (lambda line: None), (lambda line: None)
    if say is not None:
        if run.removed:
            say(f"removed {len(run.removed)} temporary file(s) of interrupted writes from "
                f"{run.out_dir}")
        if resumed:
            say(f"resuming the run in {run.out_dir} at step {run.progress.step} ({source})")
        else:
            chars, distinct = run.text_figures
            vocab = (f", encoded with the {len(run.vocab)}-symbol vocabulary of {run.init_from}"
                     if run.init_from else "")
            say(f"training on {source} ({chars:,} characters, {distinct} distinct{vocab}); "
                f"the run goes to {run.out_dir}")
            if run.corpus_notes:
                say("; ".join(run.corpus_notes))
        say(f"sample from it with: {command_name()} sample {shell_path(run.out_dir)}")
        if run.size_note:
            say(run.size_note)
        run.step_seconds, run.eval_seconds = quick_timing(run)
        for line in report_lines(run, run.step_seconds, run.eval_seconds):
            say(line)
    warn = warn or say or (lambda line: None)
    for line in run.notes:
        warn(line)
    t = run.config.train
    cores = available_cores()
    if run.engine.workers > cores:
        warn(f"train.threads is {t.threads} but this machine gives charrnn {cores} core"
             f"{'s' if cores > 1 else ''}: the workers take turns and every step is slower; "
             f"set train.threads={cores}, or leave it unset")
    if t.max_steps is None and t.max_epochs is None and t.max_minutes is None:
        warn("it trains until Ctrl-C, which saves it (or set train.max_minutes, max_steps)")
