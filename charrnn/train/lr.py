"""The learning rate: the rate of every update, and everything that decides it.

One object, LearningRate, built from the train config and the run's progress, answers "the rate
of step k". It owns

  the schedule    train.lr_schedule (auto: cosine when the run has a limit, else constant)
  the warmup      linear over train.warmup_steps (a decaying schedule: at most a tenth of it)
  the horizon     the step where a decaying schedule reaches min_lr and the run ends: the first
                  of max_steps, max_epochs x batches per epoch and, for max_minutes, an
                  estimate from timing the first steps (train/budget.py); fixed once per run
  the plateau     lr_schedule plateau: x plateau_factor once more than plateau_patience
                  evaluations bring no new best (PyTorch's ReduceLROnPlateau, mode min,
                  threshold 0, cooldown 0), never below min_lr

and writes its own lines: the start-of-run report's, the note of a resume that changes the
rate, and the plateau's cut. Its state is the progress's horizon, lr_scale and plateau_bad (and
lr, the rate of the last update), saved in every checkpoint, so a resumed run follows exactly
the same rates.
"""

from __future__ import annotations

import math

from charrnn.store.checkpoint import Progress
from charrnn.train.budget import TIMED_STEPS, WARMUP_STEPS, StepTimer, time_horizon

DECAYING = ("cosine", "linear")
LIMITS = ("max_steps", "max_epochs", "max_minutes")
HORIZON_KEYS = (*LIMITS, "lr_schedule")     # a change to any of these fixes the horizon again


def resolved_schedule(train_cfg) -> str:
    """train.lr_schedule, with `auto` = cosine when the run has a limit (max_steps, max_epochs
    or max_minutes) and constant when it trains until Ctrl-C."""
    if train_cfg.lr_schedule != "auto":
        return train_cfg.lr_schedule
    return "cosine" if any(getattr(train_cfg, k) is not None for k in LIMITS) else "constant"


def warmup_steps(train_cfg, horizon: int | None = None) -> int:
    """train.warmup_steps; for a decaying schedule at most a tenth of its horizon (default
    train.max_steps), so a short run still spends most of its steps at and after the peak.
    Other schedules keep the full warmup: their rates must not depend on the run's limit, so
    that resuming with a later limit repeats the uninterrupted run."""
    end = horizon if horizon is not None else train_cfg.max_steps
    if end is None or resolved_schedule(train_cfg) not in DECAYING:
        return train_cfg.warmup_steps
    return min(train_cfg.warmup_steps, end // 10)


def lr_at(train_cfg, step: int, epoch: float, horizon: int | None = None) -> float:
    """The learning rate for the update after `step` completed updates, at `epoch` (float).

    With lr0 = train.lr, W = warmup_steps(train_cfg, horizon) and
    r = clamp((step - W) / (horizon - W), 0, 1) (horizon: default train.max_steps; None while
    it is not fixed yet, which holds r at 0):
      constant, plateau:  lr0 (plateau: times the scale LearningRate keeps)
      step:      lr0 * decay_rate ** floor(epoch / decay_every)            (char-rnn)
      cosine:    min_lr + (lr0 - min_lr) * (1 + cos(pi * r)) / 2            (nanoGPT)
      linear:    min_lr + (lr0 - min_lr) * (1 - r)
    and, for any schedule, times (step + 1) / (W + 1) while step < W (nanoGPT's warmup: lr0 /
    (W+1) first, lr0 at step W). ValueError for an unknown schedule.
    """
    lr0, kind = float(train_cfg.lr), resolved_schedule(train_cfg)
    warmup = warmup_steps(train_cfg, horizon)
    if kind in ("constant", "plateau"):
        lr = lr0
    elif kind == "step":
        lr = lr0 * train_cfg.decay_rate ** math.floor(epoch / train_cfg.decay_every)
    elif kind in DECAYING:
        end = horizon if horizon is not None else train_cfg.max_steps
        r = 0.0 if end is None else min(max((step - warmup) / max(end - warmup, 1), 0.0), 1.0)
        shape = 0.5 * (1.0 + math.cos(math.pi * r)) if kind == "cosine" else 1.0 - r
        lr = train_cfg.min_lr + (lr0 - train_cfg.min_lr) * shape
    else:
        raise ValueError(f"unknown lr_schedule {kind!r}; choose one of constant, step, cosine, "
                         f"linear, plateau, auto")
    if step < warmup:
        lr *= (step + 1) / (warmup + 1)
    return lr


def step_horizon(train_cfg, batches_per_epoch: int) -> int | None:
    """The first of max_steps and max_epochs x batches_per_epoch, in steps (None: neither)."""
    limits = [train_cfg.max_steps] if train_cfg.max_steps is not None else []
    if train_cfg.max_epochs is not None:
        limits.append(train_cfg.max_epochs * batches_per_epoch)
    return min(limits) if limits else None


def horizon_kept(old_train, new_train) -> bool:
    """Whether a resumed run keeps its saved horizon: no limit and no schedule changed (else it
    is fixed again from the new settings)."""
    return all(getattr(old_train, k) == getattr(new_train, k) for k in HORIZON_KEYS)


class LearningRate:
    """The rate of a run (see the module docstring): train_cfg, the run's progress (whose
    horizon, lr_scale and plateau_bad it reads and writes) and its batches per epoch."""

    def __init__(self, train_cfg, progress: Progress, batches_per_epoch: int):
        self.cfg, self.progress, self.batches_per_epoch = train_cfg, progress, batches_per_epoch
        self.kind = resolved_schedule(train_cfg)

    def at(self, step: int, epoch: float = 0.0) -> float:
        """The rate of the update after `step` updates, at `epoch` (with the fraction done)."""
        return lr_at(self.cfg, step, epoch, self.progress.horizon) * self.progress.lr_scale

    def next(self) -> float:
        """The rate of the next update."""
        p = self.progress
        return self.at(p.step, p.epoch + p.position / self.batches_per_epoch)

    # -- the horizon --------------------------------------------------------------------------

    def fix_horizon(self, timer: StepTimer, time_left) -> None:
        """Fix the step where a decaying schedule ends, once: at the start from max_steps /
        max_epochs, or, with max_minutes, once `timer` has timed enough steps. time_left() ->
        (seconds per evaluation, seconds of the budget left), asked in that order."""
        t, p = self.cfg, self.progress
        if p.horizon is not None or self.kind not in DECAYING:
            return
        steps = step_horizon(t, self.batches_per_epoch)
        if t.max_minutes is None:
            p.horizon = steps
            return
        if not timer.ready:
            return
        eval_seconds, left = time_left()
        by_time = time_horizon(p.step, left, timer.step_seconds, eval_seconds, t.eval_every)
        p.horizon = by_time if steps is None else min(steps, by_time)

    def resumed_from(self, old_train) -> None:
        """A resumed run whose limits or schedule changed fixes its horizon again."""
        if not horizon_kept(old_train, self.cfg):
            self.progress.horizon = None

    def ended(self) -> str | None:
        """The reason to stop when a max_minutes horizon is reached, else None."""
        p = self.progress
        if p.horizon is not None and p.step >= p.horizon and self.kind in DECAYING:
            return f"reached the end of the schedule (step {p.horizon}, from train.max_minutes)"
        return None

    def already_ended(self) -> bool:
        """Whether a resumed run's max_minutes schedule (its horizon kept) has nothing left."""
        p = self.progress
        return (self.cfg.max_minutes is not None and p.horizon is not None
                and p.step >= p.horizon and self.kind in DECAYING)

    # -- the plateau --------------------------------------------------------------------------

    def after_evaluation(self, improved: bool) -> str | None:
        """Count an evaluation for the plateau schedule; the line to log when it cut the rate."""
        t, p = self.cfg, self.progress
        if self.kind != "plateau":
            return None
        p.plateau_bad = 0 if improved else p.plateau_bad + 1
        if p.plateau_bad <= t.plateau_patience:
            return None
        scale = p.lr_scale
        p.lr_scale = max(scale * t.plateau_factor, t.min_lr / t.lr)
        p.plateau_bad = 0
        if p.lr_scale == scale:                  # already at min_lr
            return None
        return f"step {p.step}: validation stalled; the rate is now {t.lr * p.lr_scale:.3g}"

    # -- its lines ----------------------------------------------------------------------------

    def report_line(self) -> str | None:
        """How the rate will go, for the start-of-run report (a decaying schedule only)."""
        t = self.cfg
        if self.kind not in DECAYING:
            return None
        end = self.progress.horizon or step_horizon(t, self.batches_per_epoch)
        timed = t.max_minutes is not None and not self.progress.horizon
        until = f"step {end:,}" if end else ""
        if timed:
            until += (" or sooner: " if end else "") + (
                f"the step where train.max_minutes runs out, fixed after timing the first "
                f"{WARMUP_STEPS + TIMED_STEPS} steps")
        return f"schedule: {self.kind} from {t.lr:g} to {t.min_lr:g} at {until}"

    def resume_note(self, old_train) -> str | None:
        """A note when a resume's new settings give the next update another rate than the
        saved settings (old_train) would have (a cosine run extended with a larger max_steps
        goes back up from its floor). Call before the horizon is fixed again."""
        p = self.progress
        epoch = p.epoch + p.position / self.batches_per_epoch
        horizon = (p.horizon if horizon_kept(old_train, self.cfg)
                   else step_horizon(self.cfg, self.batches_per_epoch))
        was = lr_at(old_train, p.step, epoch, p.horizon) * p.lr_scale
        now = lr_at(self.cfg, p.step, epoch, horizon) * p.lr_scale
        if was == now:
            return None
        why = ""
        if (resolved_schedule(old_train) == self.kind == "cosine"
                and p.horizon != horizon and horizon is not None):
            why = (f"; the cosine schedule now ends at step {horizon} instead of "
                   f"{p.horizon}, so the rate {'rises again' if now > was else 'falls faster'}")
        return (f"the learning rate of step {p.step + 1} is {now:.3g} (it would have been "
                f"{was:.3g}){why}")
