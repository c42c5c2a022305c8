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

from charrnn.fileio import command_name, shell_path
from charrnn.train import health
from charrnn.train.budget import StepTimer, step_horizon, time_horizon
from charrnn.store.checkpoint import Progress
from charrnn.train.errors import TrainingError, TrainingInterrupted
from charrnn.train.metrics import Metrics
from charrnn.train.optim import clip_coefficient, clip_grad_value
from charrnn.train.plateau import after_evaluation
from charrnn.train.report import time_eval
from charrnn.train.run import BEST, LAST, Run, open_run, save, way_on

# no tqdm monitor thread: validation forks a worker mid-run (charrnn/fast/pipeline.py), and a fork
# while another thread runs may deadlock the child (Python 3.12+ warns)
tqdm.monitor_interval = 0
from charrnn.train.schedule import DECAYING, lr_at, resolved_schedule

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

    if run.vocab.eod_id is not None:        # documents: each one from a zero state
        nll, counts = evaluate_documents(run.model, run.val_ids, run.vocab.eod_id,
                                         max_chars=run.config.train.eval_chars)
        return float(nll.sum() / counts.sum())
    # a run kept in one process (train.threads: 1) keeps its validation there too
    total, n = evaluate_ids(run.model, run.val_ids, max_chars=run.config.train.eval_chars,
                            pipeline=run.engine.workers > 1)
    return total / n


def _stop_reason(run: Run, started: float) -> str | None:
    t, p = run.config.train, run.progress
    if t.max_steps is not None and p.step >= t.max_steps:
        return f"reached train.max_steps={t.max_steps}"
    if t.max_epochs is not None and p.epoch >= t.max_epochs:
        return f"reached train.max_epochs={t.max_epochs}"
    if p.horizon is not None and p.step >= p.horizon and resolved_schedule(t) in DECAYING:
        return f"reached the end of the schedule (step {p.horizon}, from train.max_minutes)"
    if t.max_minutes is not None and time.perf_counter() - started >= 60 * t.max_minutes:
        return f"reached train.max_minutes={t.max_minutes:g}"
    return None


def fix_horizon(run: Run, started: float, timer: StepTimer) -> None:
    """Fix the step where a decaying schedule ends, once (train/budget.py): at the start from
    max_steps / max_epochs, or, with max_minutes, once the first steps have been timed."""
    t, p = run.config.train, run.progress
    if p.horizon is not None or resolved_schedule(t) not in DECAYING:
        return
    steps = step_horizon(t, run.batches.batches_per_epoch)
    if t.max_minutes is None:
        p.horizon = steps
        return
    if not timer.ready:
        return
    if run.eval_seconds is None:
        run.eval_seconds = time_eval(run)
    left = 60 * t.max_minutes - (time.perf_counter() - started)
    by_time = time_horizon(p.step, left, timer.step_seconds, run.eval_seconds, t.eval_every)
    p.horizon = by_time if steps is None else min(steps, by_time)


def reset_some_streams(carry: tuple | None, prob: float, seed: int, step: int) -> tuple | None:
    """The carried state ([L, B, H] arrays) with each stream zeroed with probability prob.

    The draw depends only on (seed, step), so a resumed run makes the same draws.
    """
    if carry is None or prob <= 0:
        return carry
    return zero_rows(carry, np.random.default_rng([seed, step]).random(carry[0].shape[1]) < prob)


def zero_rows(carry: tuple | None, rows: np.ndarray) -> tuple | None:
    """The carried state ([L, B, H] arrays) with the streams where rows is True zeroed."""
    if carry is None or not rows.any():
        return carry
    carry = tuple(part.copy() for part in carry)
    for part in carry:
        part[:, rows] = 0
    return carry


def train_step(run: Run, before_update=None) -> tuple[float, float]:
    """One update on the next batch -> (loss, gradient norm before clipping).

    Diverged (nothing changed) when the step's figures show the current weights diverged
    (train/health.py); otherwise, when its loss is under the explosion ceiling,
    before_update(rng_states), if given, runs while the weights, optimizer, progress and carried
    state are still those of the previous step: the loop saves a checkpoint there, once that
    state's figures are known to be healthy.
    """
    cfg, p, b = run.config.train, run.progress, run.batches
    rng_states = run.rng_states()           # as the previous step left them
    if p.position == 0 or not b.stateful:
        carry = None                        # new epoch (or random windows): start from zeros
    elif hasattr(b, "resets"):              # documents: zero the rows whose document starts
        carry = zero_rows(run.carry, b.resets(p.position))
    else:
        carry = reset_some_streams(run.carry, run.config.data.reset_prob, cfg.seed, p.step)
    x, y = b.get(p.position)
    lr = lr_at(cfg, p.step, p.epoch + p.position / b.batches_per_epoch, p.horizon) * p.lr_scale
    loss, carry, _ = run.engine.loss_and_grad(x, y, carry, train=True, rng=run.dropout_rng)
    coef = 1.0                              # what the update scales the gradient by first
    if cfg.clip == "value":
        clip_grad_value(run.model.grads, cfg.clip_value)
        norm = float(np.linalg.norm(run.model.grads.flat))
    else:
        norm = run.engine.grad_norm()
        coef = clip_coefficient(norm, cfg.clip_value if cfg.clip == "norm" else math.inf)
    first = p.first_loss if p.first_loss is not None else loss
    problem = health.step_problem(loss, norm)
    if problem is not None:
        raise diverged(run, problem, p.step + 1)
    ceiling = health.loss_ceiling(first, len(run.vocab))
    exploded = p.exploded_steps + 1 if loss > ceiling else 0     # steps in a row
    if exploded >= health.EXPLODED_STEPS:
        raise diverged(run, f"{health.explosion('training', loss, ceiling)}, {exploded} steps "
                            f"in a row", p.step + 1)
    if before_update is not None and not exploded:
        before_update(rng_states)
    run.engine.update(lr, coef)
    p.first_loss, p.lr, p.exploded_steps, run.carry = first, lr, exploded, carry
    p.step += 1
    p.chars += x.size
    p.position += 1
    if p.position == b.batches_per_epoch:
        p.epoch, p.position = p.epoch + 1, 0
    return loss, norm


def saved_list(run: Run, name_of=lambda name: name) -> str:
    """'last.safetensors (step 9) and best.safetensors (step 5)': the checkpoints this run's
    folder holds, or '' (name_of turns a checkpoint's name into how it is shown)."""
    return " and ".join(f"{name_of(name)} (step {run.saved[name]})" for name in (LAST, BEST)
                        if name in run.saved)


def kept_words(run: Run) -> str:
    """What a stopped run leaves: its checkpoints and their steps, or that there is none."""
    kept = saved_list(run, run.path)
    if not kept:
        return "no checkpoint was saved"
    return f"{kept} {'are' if ' and ' in kept else 'is'} intact"


def cannot_write(run: Run, name: str, error: OSError) -> TrainingError:
    return TrainingError(f"could not write {run.path(name)} ({error.strerror or error}); free "
                         f"some space (or fix the folder), then {way_on(run)}.")


def diverged(run: Run, problem: str, step: int) -> health.Diverged:
    """The error that stops a diverged run: what went wrong, what is on disk, the way out."""
    kept = saved_list(run)
    on_disk = (f"{run.out_dir} keeps {kept}, the last states whose figures were healthy"
               if kept else "no checkpoint was written")
    t = run.config.train
    lower = f"--set train.lr={t.lr / 10:g}" + (" --set train.clip=norm" if t.clip == "none" else "")
    limits = "".join(f" --set train.{k}={getattr(t, k):g}" for k in ("max_steps", "max_epochs",
                                                                      "max_minutes")
                     if getattr(t, k) is not None)     # the limits this invocation was given
    way = (f"resume with a lower rate: charrnn train --resume {shell_path(run.out_dir)} {lower}"
           f"{limits}"
           if kept else f"start again with a lower rate ({lower})")
    return health.Diverged(f"the run diverged at step {step}: {problem}; nothing from that state "
                           f"was saved and {on_disk}. {way[0].upper()}{way[1:]}.")


def train(run: Run, quiet: bool = False, log=None) -> Progress:
    """Train until a limit; checkpoint, evaluate and log along the way. Returns the progress."""
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    cfg = run.config.train
    try:
        metrics = Metrics(run.path("metrics.jsonl"), resumed_at=run.progress.step)
    except OSError as e:
        raise cannot_write(run, "metrics.jsonl", e) from None
    started = time.perf_counter()
    bar = tqdm(total=cfg.max_steps, initial=run.progress.step, unit="step", file=sys.stderr,
               disable=True if quiet else None, dynamic_ncols=True, leave=False)
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    last = LastCheckpoint(run)
    early = None              # the reason patience gave to stop, if it did
    timer = StepTimer()
    try:
        # overflow on the way to a divergence is reported by the health checks, in one line
        with SignalCatcher(lambda: kept_words(run)) as signals, \
                np.errstate(over="ignore", invalid="ignore"):
            fix_horizon(run, started, timer)
            while (reason := early or _stop_reason(run, started)) is None:
                timer.start()
                loss, norm = train_step(run, before_update=last.before_update)
                timer.stop()
                last.stepped()
                fix_horizon(run, started, timer)
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
                healthy = None
                if p.step % cfg.eval_every == 0:
                    early, healthy = evaluate_and_keep_best(run, metrics, started, log)
                last.judged(healthy)
                if p.step % cfg.checkpoint_every == 0:
                    last.due()
                if signals.received is not None:
                    raise TrainingInterrupted(f"interrupted at step {p.step}; {last.on_interrupt()}. "
                                              f"Resume with: {command_name()} train --resume {shell_path(run.out_dir)}",
                                              SIGNAL_EXIT[signals.received])
            if timer.steps == 0 and run.saved:
                pass                         # nothing changed since the checkpoint it resumed
            else:
                if run.progress.step % cfg.eval_every != 0 or run.progress.last_val_loss is None:
                    last.judged(evaluate_and_keep_best(run, metrics, started, log)[1])
                last.final()
    except OSError as e:                     # metrics.jsonl (checkpoints say so themselves)
        raise cannot_write(run, "metrics.jsonl", e) from None
    finally:
        bar.close()
        metrics.close()
    log(f"done: {reason} at step {run.progress.step}; best validation loss "
        f"{run.progress.best_val_loss:.4f} nats/char; checkpoints in {run.out_dir}")
    return run.progress


class LastCheckpoint:
    """When last.safetensors is written (train/health.py): a state that its evaluation just found
    healthy, at once; any other once the next step's loss, computed on its weights, shows it
    healthy (train_step's before_update); a state whose figures exploded, never."""

    def __init__(self, run: Run):
        self.run = run
        self.pending = False          # due, for a state whose figures are not known yet
        self.healthy = None           # the current state's evaluation: None (none), True, False

    def judged(self, healthy: bool | None) -> None:
        self.healthy = healthy

    def due(self) -> None:
        self.pending = not self.healthy
        if self.healthy:
            save(self.run, LAST)

    def before_update(self, rng_states: dict) -> None:
        if self.pending and self.healthy is not False:
            save(self.run, LAST, rng_states)
            self.pending = False

    def stepped(self) -> None:
        self.healthy = None

    def on_interrupt(self) -> str:
        """Save the current state if nothing says it diverged; the words for what was done."""
        if self.healthy is False or self.run.progress.exploded_steps:
            kept = self.run.saved.get(LAST)
            return ("the current state had exploded, so it was not saved" +
                    (f" ({self.run.path(LAST)} of step {kept} is kept)" if kept else ""))
        save(self.run, LAST)
        return f"saved {self.run.path(LAST)}"

    def final(self) -> None:
        """Save the run's last state, or raise Diverged when its evaluation found it exploded."""
        if self.healthy is False:
            p = self.run.progress
            ceiling = health.loss_ceiling(p.first_loss, len(self.run.vocab))
            raise diverged(self.run, health.explosion("validation", p.last_val_loss, ceiling),
                           p.step)
        save(self.run, LAST)


def evaluate_and_keep_best(run: Run, metrics: Metrics, started: float, log
                           ) -> tuple[str | None, bool]:
    """Validation pass; best.safetensors when it improves; optional sample. Returns (the reason
    to stop early (train.patience) or None, whether the state is healthy: its loss under the
    explosion ceiling). Diverged for a loss that is not finite."""
    p = run.progress
    val = validation_loss(run)
    metrics.log(step=p.step, chars=p.chars, time=round(time.perf_counter() - started, 3),
                val_loss=val, val_bpc=val / math.log(2))
    problem = health.val_problem(val)
    if problem is not None:
        raise diverged(run, problem, p.step)
    p.last_val_loss = val
    healthy = val <= health.loss_ceiling(p.first_loss, len(run.vocab))
    improved = healthy and val < p.best_val_loss
    scale = p.lr_scale
    stop = after_evaluation(run.config.train, p, improved)
    if improved:
        p.best_val_loss = val
        save(run, BEST)
    # every evaluation a line that stays: above the bar (tqdm.write), in a log file alike
    log(f"step {p.step}: val loss {val:.4f} ({val / math.log(2):.3f} bits/char)"
        + (" *best*" if improved else "") + ("" if healthy else " (exploded: not saved)"))
    if p.lr_scale != scale:
        log(f"step {p.step}: validation stalled; the rate is now {run.config.train.lr * p.lr_scale:.3g}")
    if run.config.train.sample_every and p.step % run.config.train.sample_every == 0:
        log(f"--- sample at step {p.step} ---\n{sample_text(run)}\n---")
    return stop, healthy


def sample_text(run: Run) -> str:
    from charrnn.infer.sample import generate

    opts, vocab = run.config.sample, run.vocab   # the settings `charrnn sample` will default to
    prime = opts.prime
    if vocab.eod is not None:                  # documents: from the start symbol, one per line
        prime = [vocab.eod_id, *vocab.encode(prime).tolist()]
    chars = generate(run.model, vocab, length=run.config.train.sample_chars,
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
