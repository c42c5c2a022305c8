"""The training loop: batches, updates, evaluation, checkpoints, progress and signals.

One step = forward and backward over a [B, T] batch (truncated BPTT, hidden state carried from
batch to batch and reset at each epoch), gradient clipping, one optimizer update at the
scheduled learning rate. Everything a step depends on (weights, optimizer moments, step, epoch,
batch position, carried state, RNG states) is in `last.safetensors`, so `--resume` continues
bit for bit where the run stopped.

Run folder: config.yaml (the resolved config), metrics.jsonl (one JSON object per logged
figure), last.safetensors (latest state), best.safetensors (lowest validation loss).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import zlib
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from charrnn.train import data as data_mod
from charrnn.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from charrnn.config import Config, ConfigError, config_to_dict, save_config
from charrnn.fileio import write_atomically
from charrnn.nn.model import CharRNN
from charrnn.train.optim import (clip_coefficient, clip_grad_norm, clip_grad_value, flatten_state, lr_at,
                           make_optimizer, unflatten_state)
from charrnn.fast.parallel import DataParallel, auto_workers
from charrnn.vocab import Vocab

ARCHITECTURE_KEYS = ("cell", "nonlinearity", "layers", "hidden_size", "embed_size")
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingError(Exception):
    """Training cannot go on (non-finite loss, unusable run folder, ...): exit status 1."""

    exit_code = 1


class TrainingInterrupted(Exception):
    """SIGINT / SIGTERM arrived; last.safetensors holds the state. exit_code is 128 + signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Progress:
    """Where training stands; all of it is saved in every checkpoint's train_state."""

    step: int = 0                 # updates done
    epoch: int = 0                # completed passes over the training text
    position: int = 0             # index of the next batch within the epoch
    chars: int = 0                # training characters seen
    best_val_loss: float = math.inf
    last_val_loss: float | None = None
    lr: float = 0.0               # the rate of the last update


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
    parallel: DataParallel | None = None   # the step's workers (None: all in this process)
    corpus: dict | None = None             # corpus_fingerprint of the ids, saved to check resumes

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)


# ------------------------------------------------------------------------------------------
# setting up
# ------------------------------------------------------------------------------------------

RUN_FILES = ("last.safetensors", "best.safetensors")


def refuse_existing_run(out_dir: str) -> None:
    """ConfigError when out_dir already holds a run's checkpoints: a new run would overwrite them
    and append to its metrics.jsonl. Called before anything in the folder is touched."""
    if any(os.path.exists(os.path.join(out_dir, name)) for name in RUN_FILES):
        raise ConfigError(f"the output folder {out_dir} already holds a run; continue it with "
                          f"`charrnn train --resume {out_dir}`, or set train.out_dir to another "
                          f"folder for a new run.")


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
    text = data_mod.read_text(cfg.data.path)
    if not text:
        need = data_mod.min_corpus_chars(cfg.data.val_fraction, cfg.train.batch_size,
                                         cfg.train.seq_len, cfg.data.batching)
        name = "standard input" if cfg.data.path == "-" else cfg.data.path
        raise data_mod.DataError(f"the corpus {name} is empty; give data.path a UTF-8 text "
                                 f"file of at least {need} characters")
    if vocab is None:
        vocab = Vocab.from_text(text)
    else:
        missing = sorted(set(text) - set(vocab.symbols))
        if missing:
            shown = "".join(missing[:20])
            raise data_mod.DataError(
                f"{cfg.data.path} has {len(missing)} characters that the checkpoint's vocabulary "
                f"lacks ({shown!r}); train a new model on this text instead.")
    ids = vocab.encode(text)
    del text
    train_ids, val_ids = data_mod.split_train_val(ids, cfg.data.val_fraction)
    data_mod.validate_split(train_ids, val_ids, cfg.data.val_fraction, cfg.train.batch_size,
                            cfg.train.seq_len, cfg.data.batching)
    return vocab, train_ids, val_ids


def corpus_fingerprint(train_ids: np.ndarray, val_ids: np.ndarray) -> dict:
    """{"chars": N, "crc32": checksum of the ids}: enough to tell a resumed run's corpus changed
    (0.1 s for 100 MB)."""
    crc = zlib.crc32(np.ascontiguousarray(val_ids).data, zlib.crc32(np.ascontiguousarray(train_ids).data))
    return {"chars": int(len(train_ids) + len(val_ids)), "crc32": int(crc)}


def check_same_corpus(cfg: Config, ckpt: Checkpoint, corpus: dict) -> None:
    """TrainingError when a resumed run's corpus is not the one it was saved with: its batches
    would be other text, so it would not continue the same run. (Older checkpoints: no check.)"""
    saved = ckpt.train_state.get("corpus") if isinstance(ckpt.train_state, dict) else None
    if isinstance(saved, dict) and saved != corpus:
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
    source = resume or init_from
    if source is not None:
        _check_same_architecture(cfg, source, "resumed" if resume else "--init-from")
    vocab, train_ids, val_ids = load_corpus(cfg, source.vocab if source else None)
    corpus = corpus_fingerprint(train_ids, val_ids)
    if resume is not None:
        check_same_corpus(cfg, resume, corpus)
    check_prime(cfg, vocab)
    dtype = np.dtype(cfg.train.dtype)
    model = CharRNN(len(vocab), cfg.model, dtype=dtype, seed=cfg.train.seed)
    if source is not None:
        model.params.copy_from({k: v.astype(dtype) for k, v in source.params.items()})
    optimizer = make_optimizer(None, model.params, cfg.train)
    seeds = np.random.SeedSequence(cfg.train.seed).spawn(2)
    dropout_rng, batch_rng = (np.random.default_rng(s) for s in seeds)
    batches = data_mod.make_batches(train_ids, cfg.train, cfg.data.batching, batch_rng)
    run = Run(cfg, vocab, model, optimizer, batches, val_ids, dropout_rng, batch_rng, Progress(),
              out_dir=cfg.train.out_dir,
              parallel=make_parallel(model, cfg.train, _saved_workers(resume), optimizer),
              corpus=corpus)
    if resume is not None:
        _restore(run, resume)
    return run


def _saved_workers(ckpt: Checkpoint | None) -> int | None:
    """The worker count a resumed run was saved with (None: new run, or an older checkpoint)."""
    state = ckpt.train_state if ckpt is not None else None
    workers = state.get("workers") if isinstance(state, dict) else None
    return workers if isinstance(workers, int) and workers >= 1 else None


def make_parallel(model: CharRNN, cfg, resumed_workers: int | None = None,
                  optimizer=None) -> DataParallel | None:
    """The workers of the training step (cfg: the train section), or None for one; they split
    `optimizer`'s updates too.

    With `train.threads: null`, a resumed run keeps the count it was saved with
    (`resumed_workers`): the shards, and so the dropout masks and the float sums, are then the
    same as if it had never stopped, even on a machine with another number of cores.
    """
    if cfg.threads is not None:
        workers = cfg.threads
    elif resumed_workers is not None:
        workers = resumed_workers
    else:
        workers = auto_workers(cfg.batch_size)
    workers = min(workers, cfg.batch_size)
    return DataParallel(model, workers, optimizer=optimizer) if workers > 1 else None


def _restore(run: Run, ckpt: Checkpoint) -> None:
    """Put optimizer, progress, carried state and RNGs back as they were saved."""
    ts = ckpt.train_state
    try:
        run.optimizer.load_state_dict(unflatten_state(ckpt.optim, ts["optim"]))
        run.progress = Progress(**ts["progress"])
        run.dropout_rng.bit_generator.state = ts["rng"]["dropout"]
        run.batch_rng.bit_generator.state = ts["rng"]["batch"]
    except (KeyError, TypeError, ValueError) as e:
        raise TrainingError(f"the checkpoint's training state is incomplete ({e}); "
                            f"use --init-from to start a new run from its weights.") from None
    dtype = run.model.dtype
    run.carry = tuple(np.asarray(c, dtype) for c in ckpt.carry) or None
    if run.progress.position > run.batches.batches_per_epoch:
        raise TrainingError("the resumed run's batch position is past the end of an epoch: "
                            "data.path, train.batch_size or train.seq_len changed since it was saved.")


# ------------------------------------------------------------------------------------------
# saving
# ------------------------------------------------------------------------------------------

def save(run: Run, name: str) -> None:
    """Write RUN/name (last or best) with everything needed to resume."""
    tensors, scalars = flatten_state(run.optimizer.state_dict())
    p = run.progress
    train_state = {
        "progress": {**p.__dict__, "best_val_loss": _json_float(p.best_val_loss)},
        "optim": scalars,
        "rng": {"dropout": run.dropout_rng.bit_generator.state,
                "batch": run.batch_rng.bit_generator.state},
        "workers": run.parallel.workers if run.parallel else 1,
        "corpus": run.corpus,
    }
    try:
        save_checkpoint(run.path(name), run.model, run.vocab, run.config, tensors, train_state,
                        carry=run.carry or ())
    except OSError as e:                 # disk full, folder removed, ...: the old file is intact
        raise TrainingError(f"could not write {run.path(name)} at step {p.step} "
                            f"({e.strerror or e}); the previous {name} is intact. Free some "
                            f"space (or fix the folder) and resume with: charrnn train "
                            f"--resume {run.out_dir}") from None


def _json_float(x: float):
    return x if math.isfinite(x) else 1e308


class Metrics:
    """Appends one JSON object per line to RUN/metrics.jsonl, flushed at once.

    A new run (`resumed_at` 0) starts the file afresh: what is there belongs to a run that never
    wrote a checkpoint (a folder with one is refused). A resumed run keeps the lines up to its
    checkpoint's step and drops later ones, which it is about to log again (the run may have
    gone on past its last checkpoint before it was killed), so every step appears once.
    """

    def __init__(self, path: str, resumed_at: int = 0):
        kept = []
        if resumed_at and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        if json.loads(line)["step"] <= resumed_at:
                            kept.append(line if line.endswith("\n") else line + "\n")
                    except (ValueError, KeyError, TypeError):
                        pass                     # a line cut short by a crash
        write_atomically(path, "".join(kept).encode("utf-8"))
        self.file = open(path, "a", encoding="utf-8")

    def log(self, **fields) -> None:
        self.file.write(json.dumps(fields) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


# ------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------

class SignalCatcher:
    """Turns the first SIGINT / SIGTERM into a flag the loop checks after each step.

    A second signal while the first is pending stops at once (the last checkpoint on disk
    stays whole: checkpoints are written atomically).
    """

    def __init__(self):
        self.received: int | None = None
        self.previous = {}

    def __enter__(self):
        for sig in SIGNAL_EXIT:
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:      # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            raise TrainingInterrupted("stopped at once by a second signal; the last saved "
                                      "checkpoint is intact.", SIGNAL_EXIT[signum])
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def validation_loss(run: Run) -> float:
    """Mean nats/char over the validation text: the same protocol as `charrnn eval`."""
    from charrnn.infer.evaluate import evaluate_ids

    # a run kept in one process (train.threads: 1) keeps its validation there too
    total, n = evaluate_ids(run.model, run.val_ids, max_chars=run.config.train.eval_chars,
                            pipeline=run.parallel is not None)
    return total / n


def _stop_reason(run: Run, started: float) -> str | None:
    t, p = run.config.train, run.progress
    if t.max_steps is not None and p.step >= t.max_steps:
        return f"reached train.max_steps={t.max_steps}"
    if t.max_epochs is not None and p.epoch >= t.max_epochs:
        return f"reached train.max_epochs={t.max_epochs}"
    if t.max_minutes is not None and time.perf_counter() - started >= 60 * t.max_minutes:
        return f"reached train.max_minutes={t.max_minutes:g}"
    return None


def reset_some_streams(carry: tuple | None, prob: float, seed: int, step: int) -> tuple | None:
    """The carried state ([L, B, H] arrays) with each stream zeroed with probability prob.

    The draw depends only on (seed, step), so a resumed run makes the same draws.
    """
    if carry is None or prob <= 0:
        return carry
    chosen = np.random.default_rng([seed, step]).random(carry[0].shape[1]) < prob
    if not chosen.any():
        return carry
    carry = tuple(part.copy() for part in carry)
    for part in carry:
        part[:, chosen] = 0
    return carry


def train_step(run: Run) -> tuple[float, float]:
    """One update on the next batch -> (loss, gradient norm before clipping)."""
    cfg, p, b = run.config.train, run.progress, run.batches
    if p.position == 0 or not b.stateful:
        run.carry = None                    # new epoch (or random windows): start from zeros
    else:
        run.carry = reset_some_streams(run.carry, run.config.data.reset_prob, cfg.seed, p.step)
    x, y = b.get(p.position)
    p.lr = lr_at(cfg, p.step, p.epoch + p.position / b.batches_per_epoch)
    loss_and_grad = run.parallel.loss_and_grad if run.parallel else run.model.loss_and_grad
    loss, carry, _ = loss_and_grad(x, y, run.carry, train=True, rng=run.dropout_rng)
    coef = 1.0                              # what the gradient is scaled by before the update
    if cfg.clip == "value":
        clip_grad_value(run.model.grads, cfg.clip_value)
        norm = float(np.linalg.norm(run.model.grads.flat))
    elif run.parallel:                      # the workers scale their parts in step_optimizer
        norm = run.parallel.grad_norm()
        coef = clip_coefficient(norm, cfg.clip_value if cfg.clip == "norm" else math.inf)
    else:
        norm = clip_grad_norm(run.model.grads, cfg.clip_value if cfg.clip == "norm" else math.inf)
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise TrainingError(
            f"the loss became {'not a number' if loss != loss else 'infinite'} at step {p.step + 1} "
            f"(gradient norm {norm:.3g}); the last good checkpoint is untouched. Lower train.lr "
            f"or keep train.clip on.")
    if run.parallel:
        run.parallel.step_optimizer(run.optimizer, p.lr, coef)
    else:
        run.optimizer.step(run.model.grads, p.lr)
    run.carry = carry
    p.step += 1
    p.chars += x.size
    p.position += 1
    if p.position == b.batches_per_epoch:
        p.epoch, p.position = p.epoch + 1, 0
    return loss, norm


def train(run: Run, quiet: bool = False, log=None) -> Progress:
    """Train until a limit; checkpoint, evaluate and log along the way. Returns the progress."""
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    cfg = run.config.train
    save_config(run.config, run.path("config.yaml"))
    metrics = Metrics(run.path("metrics.jsonl"), resumed_at=run.progress.step)
    started = time.perf_counter()
    bar = tqdm(total=cfg.max_steps, initial=run.progress.step, unit="step", file=sys.stderr,
               disable=True if quiet else None, dynamic_ncols=True, leave=False)
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    try:
        with SignalCatcher() as signals:
            while (reason := _stop_reason(run, started)) is None:
                loss, norm = train_step(run)
                window_loss, window_steps = window_loss + loss, window_steps + 1
                p = run.progress
                bar.update(1)
                if p.step % cfg.log_every == 0:
                    elapsed = time.perf_counter() - window_start
                    speed = window_steps * cfg.batch_size * cfg.seq_len / max(elapsed, 1e-9)
                    metrics.log(step=p.step, epoch=round(p.epoch + p.position / run.batches.batches_per_epoch, 4),
                                chars=p.chars, time=round(time.perf_counter() - started, 3),
                                train_loss=window_loss / window_steps, lr=p.lr,
                                chars_per_s=round(speed), grad_norm=norm)
                    bar.set_postfix(loss=f"{window_loss / window_steps:.3f}", val=_fmt(p.last_val_loss),
                                    lr=f"{p.lr:.2e}", cps=f"{speed:,.0f}")
                    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
                if p.step % cfg.eval_every == 0:
                    evaluate_and_keep_best(run, metrics, started, log, bar.disable)
                if p.step % cfg.checkpoint_every == 0:
                    save(run, "last.safetensors")
                if signals.received is not None:
                    save(run, "last.safetensors")
                    raise TrainingInterrupted(
                        f"interrupted at step {p.step}; saved {run.path('last.safetensors')}. "
                        f"Resume with: charrnn train --resume {run.out_dir}",
                        SIGNAL_EXIT[signals.received])
            if run.progress.step % cfg.eval_every != 0 or run.progress.last_val_loss is None:
                evaluate_and_keep_best(run, metrics, started, log, bar.disable)
            save(run, "last.safetensors")
    finally:
        bar.close()
        metrics.close()
    log(f"done: {reason} at step {run.progress.step}; best validation loss "
        f"{run.progress.best_val_loss:.4f} nats/char; checkpoints in {run.out_dir}")
    return run.progress


def _fmt(x):
    return "-" if x is None else f"{x:.3f}"


def evaluate_and_keep_best(run: Run, metrics: Metrics, started: float, log, quiet_bar: bool) -> None:
    """Validation pass; best.safetensors when it improves; optional sample."""
    p = run.progress
    val = validation_loss(run)
    p.last_val_loss = val
    metrics.log(step=p.step, chars=p.chars, time=round(time.perf_counter() - started, 3),
                val_loss=val, val_bpc=val / math.log(2))
    improved = val < p.best_val_loss
    if improved:
        p.best_val_loss = val
        save(run, "best.safetensors")
    if quiet_bar:   # no progress bar (not a terminal): a plain log line instead
        log(f"step {p.step}: val loss {val:.4f} ({val / math.log(2):.3f} bits/char)"
            + (" *best*" if improved else ""))
    if run.config.train.sample_every and p.step % run.config.train.sample_every == 0:
        log(f"--- sample at step {p.step} ---\n{sample_text(run)}\n---")


def sample_text(run: Run) -> str:
    from charrnn.infer.sample import generate

    opts = run.config.sample                   # the settings `charrnn sample` will default to
    chars = generate(run.model, run.vocab, length=run.config.train.sample_chars,
                     prime=opts.prime, temperature=opts.temperature, top_k=opts.top_k,
                     top_p=opts.top_p, seed=run.progress.step)
    return "".join(chars)


# ------------------------------------------------------------------------------------------
# entry point for the CLI
# ------------------------------------------------------------------------------------------

def run_training(cfg: Config | None, resume_dir: str | None = None, init_from: str | None = None,
                 overrides=(), quiet: bool = False) -> Progress:
    """`charrnn train`: a new run from cfg, or the run in resume_dir continued."""
    resume = None
    if resume_dir is not None:
        path = resume_dir if resume_dir.endswith(".safetensors") else os.path.join(resume_dir, "last.safetensors")
        resume = load_checkpoint(path)
        cfg = _apply_overrides(resume.config, overrides)
        if not resume_dir.endswith(".safetensors"):
            cfg.train.out_dir = resume_dir     # the run folder may have been moved
    init = load_checkpoint(init_from) if init_from else None
    run = prepare(cfg, resume=resume, init_from=init)
    try:
        return train(run, quiet=quiet)
    finally:
        if run.parallel is not None:
            run.parallel.close()


def _apply_overrides(cfg: Config, overrides) -> Config:
    """The checkpoint's config with `--set` overrides on top (e.g. a larger train.max_steps)."""
    from charrnn.config import config_from_dict, parse_override

    d = config_to_dict(cfg)
    for text in overrides:
        section, key, value = parse_override(text)
        d[section][key] = value
    return config_from_dict(d)
