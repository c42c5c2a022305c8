"""The training loop: batches, updates, evaluation, checkpoints, progress and signals.

One step = forward and backward over a [B, T] batch (truncated BPTT, hidden state carried from
batch to batch and reset at each epoch), gradient clipping, one optimizer update at the
scheduled learning rate. Everything a step depends on (weights, optimizer moments, step, epoch,
batch position, carried state, RNG states) is in `last.safetensors`, so `--resume` continues
bit for bit where the run stopped.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time

import numpy as np
from tqdm import tqdm

from charrnn.engines.base import Clip, carried
from charrnn.fileio import command_name, shell_path
from charrnn.train.divergence import Divergence
from charrnn.train.budget import WARMUP_STEPS, Costs, RunClock, seconds_needed
from charrnn.store.checkpoint import Progress
from charrnn.train.errors import TrainingError, TrainingInterrupted
from charrnn.train.metrics import Metrics, NoMetrics
from charrnn.train.report import time_eval
from charrnn.train.run import BEST, LAST, Run, open_run, save, saved_list, way_on

# no tqdm monitor thread: validation forks a worker mid-run (charrnn/fast/pipeline.py), and a fork
# while another thread runs may deadlock the child (Python 3.12+ warns)
tqdm.monitor_interval = 0

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


@contextlib.contextmanager
def set_up_signals():
    """While a run is set up (before SignalCatcher), SIGTERM stops it as Ctrl-C does: an
    exception, so the folder it created is removed again (not a kill that leaves it)."""
    def stop(signum, frame):
        raise TrainingInterrupted("stopped before training began; nothing was saved.",
                                  SIGNAL_EXIT[signum])
    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:                      # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class SignalCatcher:
    """Turns the first SIGINT / SIGTERM into a flag the loop checks after each step.

    A second signal while the first is pending stops at once (the last checkpoint on disk
    stays whole: checkpoints are written atomically).
    """

    def __init__(self, kept=lambda: "the last saved checkpoint is intact"):
        self.received: int | None = None
        self.previous = {}
        self.kept = kept              # () -> the words for what is on disk

    def __enter__(self):
        for sig in SIGNAL_EXIT:
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:      # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            raise TrainingInterrupted(f"stopped at once by a second signal; {self.kept()}.",
                                      SIGNAL_EXIT[signum])
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def validation_loss(run: Run) -> float:
    """Mean nats/char over the validation text: the same protocol as `charrnn eval`."""
    from charrnn.infer.evaluate import evaluate_documents, evaluate_ids

    model = run.engine.inference_model()
    if run.vocab.eod_id is not None:        # documents: each one from a zero state
        nll, counts = evaluate_documents(model, run.val_ids, run.vocab.eod_id,
                                         max_chars=run.config.train.eval_chars)
        return float(nll.sum() / counts.sum())
    # a run kept in one process (train.threads: 1) keeps its validation there too
    total, n = evaluate_ids(model, run.val_ids, max_chars=run.config.train.eval_chars,
                            pipeline=run.engine.workers > 1)
    return total / n


def _stop_reason(run: Run, clock: RunClock) -> str | None:
    t, p = run.config.train, run.progress
    if t.max_steps is not None and p.step >= t.max_steps:
        return f"reached train.max_steps={t.max_steps}"
    if t.max_epochs is not None and p.epoch >= t.max_epochs:
        return f"reached train.max_epochs={t.max_epochs}"
    if (ended := run.lr.ended()) is not None:
        return ended
    if t.max_minutes is not None and clock.now() + seconds_to_end(run) > 60 * t.max_minutes:
        return f"reached train.max_minutes={t.max_minutes:g}"
    return None


def eval_guess(run: Run) -> float:
    """Seconds per evaluation before one is measured: the start-of-run report's quick timing
    (made here when the report was not printed), times how much slower the steps ran at the
    last estimate of the horizon than the report's quick timing of a step (the machine's load
    changes both)."""
    if run.eval_seconds is None:
        run.eval_seconds = time_eval(run)
    measured, quick = run.progress.step_seconds, run.step_seconds
    if not quick or measured is None:
        return run.eval_seconds
    return run.eval_seconds * measured / quick


def seconds_to_end(run: Run) -> float:
    """Seconds one more step and then the end (the evaluation at that step, regular or final,
    and the final checkpoint) will take, as last measured (before any evaluation: its quick
    timing), so a max_minutes run stops when they would no longer fit in its budget."""
    p, t = run.progress, run.config.train
    evaluation = p.eval_seconds if p.eval_seconds is not None else eval_guess(run)
    step = p.step_seconds    # the last estimate's, else (no estimate yet) the steps timed so far
    if step is None:
        step = p.timed_seconds / p.timed_steps if p.timed_steps else 0.0
    return seconds_needed(p.step, 1, Costs(step, evaluation, p.save_seconds or 0.0),
                          t.eval_every, t.checkpoint_every)


def fix_horizon(run: Run, clock: RunClock) -> None:
    """Fix or move the step where a decaying schedule ends (train/lr.py), at the run's clock."""
    run.progress.seconds = clock.now()
    run.lr.fix_horizon(run.progress.seconds, lambda: eval_guess(run))


def timed(clock: RunClock, work) -> tuple[object, float]:
    """(work(), the seconds it took on the run's clock)."""
    start = clock.now()
    out = work()
    return out, clock.now() - start


def count_step(progress: Progress, seconds: float) -> None:
    """Add a step's seconds to the ones timed for the horizon (not the run's first steps)."""
    if progress.step > WARMUP_STEPS:
        progress.timed_steps += 1
        progress.timed_seconds += seconds


def random_resets(prob: float, seed: int, step: int, streams: int) -> np.ndarray | bool:
    """bool [streams]: each stream zeroed with probability prob (False when prob is 0).

    The draw depends only on (seed, step), so a resumed run makes the same draws.
    """
    if prob <= 0:
        return False
    return np.random.default_rng([seed, step]).random(streams) < prob


def reset_some_streams(carry: tuple | None, prob: float, seed: int, step: int) -> tuple | None:
    """The carried state ([L, B, H] arrays) with each stream zeroed with probability prob."""
    if carry is None:
        return None
    return carried(carry, random_resets(prob, seed, step, carry[0].shape[1]))


def stream_resets(run: Run) -> np.ndarray | bool:
    """Which streams start the next batch from zeros (engines/base.py's reset): all at a new
    epoch and with random windows; documents: the rows whose document starts; else a random
    few (data.reset_prob)."""
    p, b = run.progress, run.batches
    if p.position == 0 or not b.stateful:
        return True
    if b.by_document:
        return b.resets(p.position)
    return random_resets(run.config.data.reset_prob, run.config.train.seed, p.step,
                         run.config.train.batch_size)


def train_step(run: Run, rule: Divergence | None = None) -> tuple[float, float]:
    """One update on the next batch -> (loss, gradient norm before clipping).

    Diverged (nothing changed) when the step's figures show the current weights diverged
    (train/divergence.py, the loop's `rule`); when the rule says so, last.safetensors of the
    current state is written before the update (with the random states as the previous step
    left them, so the file is the one that step would have written).
    """
    rule = rule or Divergence(run)
    cfg, p, b = run.config.train, run.progress, run.batches
    rng_states = run.rng_states()           # as the previous step left them
    reset = stream_resets(run)
    x, y = b.get(p.position)
    lr = run.lr.next()
    figures = run.engine.gradient(x, y, reset, run.dropout_rng, Clip.of(cfg))
    verdict = rule.judge_step(figures.loss, figures.grad_norm)
    if rule.save_before_update(verdict):
        save(run, LAST, rng_states)
    run.engine.update(lr)
    rule.updated(verdict)
    p.lr = lr
    p.step += 1
    p.chars += x.size
    p.position += 1
    if p.position == b.batches_per_epoch:
        p.epoch, p.position = p.epoch + 1, 0
    return figures.loss, figures.grad_norm


def kept_words(run: Run) -> str:
    """What a stopped run leaves: its checkpoints and their steps, or that there is none."""
    kept = saved_list(run, run.path)
    if not kept:
        return "no checkpoint was saved"
    return f"{kept} {'are' if ' and ' in kept else 'is'} intact"


def cannot_write(run: Run, name: str, error: OSError) -> TrainingError:
    return TrainingError(f"could not write {run.path(name)} ({error.strerror or error}); free "
                         f"some space (or fix the folder), then {way_on(run)}.")


def train(run: Run, quiet: bool = False, log=None) -> Progress:
    """Train until a limit; checkpoint, evaluate and log along the way. Returns the progress."""
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    cfg = run.config.train
    if not run.engine.writer:                # another process writes the run and its output
        quiet, log = True, (lambda msg: None)
    try:
        metrics = (Metrics(run.path("metrics.jsonl"), resumed_at=run.progress.step)
                   if run.engine.writer else NoMetrics())
    except OSError as e:
        raise cannot_write(run, "metrics.jsonl", e) from None
    started = time.perf_counter()
    clock = RunClock(run.progress.seconds)
    steps = 0                 # steps of this session
    bar = tqdm(total=cfg.max_steps, initial=run.progress.step, unit="step", file=sys.stderr,
               disable=True if quiet else None, dynamic_ncols=True, leave=False)
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    rule = Divergence(run)
    early = None              # the reason patience gave to stop, if it did
    try:
        # overflow on the way to a divergence is reported by the divergence rule, in one line
        with SignalCatcher(lambda: kept_words(run)) as signals, \
                np.errstate(over="ignore", invalid="ignore"):
            fix_horizon(run, clock)
            while (reason := early or _stop_reason(run, clock)) is None:
                (loss, norm), seconds = timed(clock, lambda: train_step(run, rule=rule))
                count_step(run.progress, seconds)
                steps += 1
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
                    bar.set_postfix(loss=f"{window_loss / window_steps:.3f}",   # val: a log line
                                    lr=f"{p.lr:.2e}", cps=f"{speed:,.0f}")
                    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
                if p.step % cfg.eval_every == 0:
                    early, p.eval_seconds = timed(
                        clock, lambda: evaluate_and_keep_best(run, rule, metrics, started, log))
                if p.step % cfg.checkpoint_every == 0 and rule.save_when_due():
                    p.seconds = clock.now()
                    _, p.save_seconds = timed(clock, lambda: save(run, LAST))
                fix_horizon(run, clock)          # also the clock the next save records
                if run.engine.agree(signals.received is not None):     # every process stops here
                    raise TrainingInterrupted(f"interrupted at step {p.step}; {on_interrupt(run, rule)}. "
                                              f"Resume with: {command_name()} train --resume {shell_path(run.out_dir)}",
                                              SIGNAL_EXIT.get(signals.received, 143))
            if steps == 0 and run.saved:
                pass                         # nothing changed since the checkpoint it resumed
            else:
                if run.progress.step % cfg.eval_every != 0 or run.progress.last_val_loss is None:
                    evaluate_and_keep_best(run, rule, metrics, started, log)
                rule.check_final()
                run.progress.seconds = clock.now()
                save(run, LAST)
    except OSError as e:                     # metrics.jsonl (checkpoints say so themselves)
        raise cannot_write(run, "metrics.jsonl", e) from None
    finally:
        bar.close()
        metrics.close()
    log(f"done: {reason} at step {run.progress.step}; best validation loss "
        f"{run.progress.best_val_loss:.4f} nats/char; checkpoints in {run.out_dir}")
    return run.progress


def on_interrupt(run: Run, rule: Divergence) -> str:
    """Save the current state if nothing says it diverged; the words for what was done."""
    if not rule.may_save_on_interrupt():
        kept = run.saved.get(LAST)
        return ("the current state had exploded, so it was not saved" +
                (f" ({run.path(LAST)} of step {kept} is kept)" if kept else ""))
    save(run, LAST)
    return f"saved {run.path(LAST)}"


def evaluate_and_keep_best(run: Run, rule: Divergence, metrics: Metrics, started: float,
                           log) -> str | None:
    """Validation pass, judged by the divergence rule; best.safetensors when it improves (and is
    healthy); optional sample. Returns the reason to stop early (train.patience) or None."""
    p = run.progress
    val = validation_loss(run)
    metrics.log(step=p.step, chars=p.chars, time=round(time.perf_counter() - started, 3),
                val_loss=val, val_bpc=val / math.log(2))
    healthy = rule.judge_evaluation(val)
    p.last_val_loss = val
    improved = healthy and val < p.best_val_loss
    stop = patience_ran_out(run.config.train, p, improved)
    cut = run.lr.after_evaluation(improved)
    if improved:
        p.best_val_loss = val
        save(run, BEST)
    # every evaluation a line that stays: above the bar (tqdm.write), in a log file alike
    log(f"step {p.step}: val loss {val:.4f} ({val / math.log(2):.3f} bits/char)"
        + (" *best*" if improved else "") + ("" if healthy else " (exploded: not saved)"))
    if cut:
        log(cut)
    if run.config.train.sample_every and p.step % run.config.train.sample_every == 0:
        log(f"--- sample at step {p.step} ---\n{sample_text(run)}\n---")
    return stop


def patience_ran_out(train_cfg, progress: Progress, improved: bool) -> str | None:
    """Count an evaluation without a new best; the reason to stop once train.patience of them
    came in a row (Keras's EarlyStopping, monitor val_loss; the best checkpoint is the result)."""
    p = progress
    p.evals_since_best = 0 if improved else p.evals_since_best + 1
    if train_cfg.patience is not None and p.evals_since_best >= train_cfg.patience:
        return (f"stopped early: {p.evals_since_best} evaluations without a new best "
                f"(train.patience={train_cfg.patience})")
    return None


def sample_text(run: Run) -> str:
    from charrnn.infer.sample import generate

    opts, vocab = run.config.sample, run.vocab   # the settings `charrnn sample` will default to
    prime = opts.prime
    if vocab.eod is not None:                  # documents: from the start symbol, one per line
        prime = [vocab.eod_id, *vocab.encode(prime).tolist()]
    chars = generate(run.engine.inference_model(), vocab, length=run.config.train.sample_chars,
                     prime=prime, temperature=opts.temperature, top_k=opts.top_k,
                     top_p=opts.top_p, seed=run.progress.step)
    text = "".join(chars)
    return text if vocab.eod is None else opts.prime + text.replace(vocab.eod, "\n" + opts.prime)


def run_training(cfg, resume_dir: str | None = None, init_from: str | None = None,
                 overrides=(), quiet: bool = False, say=None, warn=None):
    """`charrnn train`: a new run from cfg, or the run in resume_dir continued. Returns the
    progress at the end. say(line) and warn(line) hear the run's first lines (open_run)."""
    with set_up_signals():
        run = open_run(cfg, resume_dir, init_from, overrides, say=say, warn=warn)
    try:
        return train(run, quiet=quiet)
    finally:
        run.close()
