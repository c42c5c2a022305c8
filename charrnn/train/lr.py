"""The learning rate: the rate of every update, and everything that decides it.

One object, LearningRate, built from the train config and the run's progress, answers "the rate
of step k". It owns

  the schedule    train.lr_schedule (auto: cosine when the run has a limit, else constant)
  the warmup      linear over train.warmup_steps (a decaying schedule: at most a tenth of it)
  the horizon     the step where a decaying schedule reaches min_lr and the run ends: the first
                  of max_steps, max_epochs x batches per epoch and, for max_minutes, an
                  estimate from timing the first steps, made again after the first evaluation
                  and at fractions of the budget (train/budget.py)
  its moves       when an estimate moves the horizon, the schedule is re-mapped from the current
                  step: the fraction r of the schedule done so far stays, and what is left of it
                  (1 - r) is spread over the steps to the new horizon, so the rate never jumps;
                  a move at most divides the steps left by SHRINK, so the decay's slope at most
                  multiplies by SHRINK (a move that adds steps only flattens it). One step may
                  rise: a run so short that the first estimate caps its warmup (a tenth of the
                  horizon) below the current step goes to the peak there and decays from it
  the plateau     lr_schedule plateau: x plateau_factor once more than plateau_patience
                  evaluations bring no new best (PyTorch's ReduceLROnPlateau, mode min,
                  threshold 0, cooldown 0), never below min_lr

and writes its own lines: the start-of-run report's, the note of a resume that changes the
rate, and the plateau's cut. Its state is the progress's horizon, horizon_anchor, lr_scale and
plateau_bad (and lr, the rate of the last update; the budget's figures, train/budget.py), saved
in every checkpoint, so a resumed run follows exactly the same rates.
"""

from __future__ import annotations

import math

from charrnn.store.checkpoint import Progress
from charrnn.train.budget import (CHECKS, TIMED_STEPS, WARMUP_STEPS, Costs, checks_passed,
                                  time_horizon)

DECAYING = ("cosine", "linear")
LIMITS = ("max_steps", "max_epochs", "max_minutes")
HORIZON_KEYS = (*LIMITS, "lr_schedule")     # a change to any of these fixes the horizon again
SHRINK = 4.0        # an estimate divides the steps left to the horizon by at most this


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


def schedule_fraction(step: int, warmup: int, end: int | None, anchor=None) -> float:
    """r, the fraction of a decaying schedule done before the update after `step` updates:
    clamp(r_a + (1 - r_a) * (step - a) / (end - a), 0, 1) with the anchor (a, r_a) where the
    horizon last moved, or (warmup, 0) when it never did; 0 while end is None."""
    if end is None:
        return 0.0
    a, r_a = anchor if anchor is not None else (warmup, 0.0)
    return min(max(r_a + (1.0 - r_a) * (step - a) / max(end - a, 1), 0.0), 1.0)


def lr_at(train_cfg, step: int, epoch: float, horizon: int | None = None, anchor=None) -> float:
    """The learning rate for the update after `step` completed updates, at `epoch` (float).

    With lr0 = train.lr, W = warmup_steps(train_cfg, horizon) and
    r = schedule_fraction(step, W, horizon, anchor) (horizon: default train.max_steps; None
    while it is not fixed yet, which holds r at 0; anchor: [step, r] where it last moved):
      constant, plateau:  lr0 (plateau: times the scale LearningRate keeps)
      step:      lr0 * decay_rate ** floor(epoch / decay_every)            (char-rnn)
      cosine:    min_lr + (lr0 - min_lr) * (1 + cos(pi * r)) / 2            (nanoGPT)
      linear:    min_lr + (lr0 - min_lr) * (1 - r)
    and, for any schedule, times (step + 1) / (W + 1) while step < W (nanoGPT's warmup: lr0 /
    (W+1) first, lr0 at step W), never from an anchor on (the horizon moves only after the
    warmup). ValueError for an unknown schedule.
    """
    lr0, kind = float(train_cfg.lr), resolved_schedule(train_cfg)
    warmup = warmup_steps(train_cfg, horizon)
    if kind in ("constant", "plateau"):
        lr = lr0
    elif kind == "step":
        lr = lr0 * train_cfg.decay_rate ** math.floor(epoch / train_cfg.decay_every)
    elif kind in DECAYING:
        end = horizon if horizon is not None else train_cfg.max_steps
        r = schedule_fraction(step, warmup, end, anchor)
        shape = 0.5 * (1.0 + math.cos(math.pi * r)) if kind == "cosine" else 1.0 - r
        lr = train_cfg.min_lr + (lr0 - train_cfg.min_lr) * shape
    else:
        raise ValueError(f"unknown lr_schedule {kind!r}; choose one of constant, step, cosine, "
                         f"linear, plateau, auto")
    if step < warmup and (anchor is None or step < anchor[0]):
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
        p = self.progress
        return lr_at(self.cfg, step, epoch, p.horizon, p.horizon_anchor) * p.lr_scale

    def next(self) -> float:
        """The rate of the next update."""
        p = self.progress
        return self.at(p.step, p.epoch + p.position / self.batches_per_epoch)

    # -- the horizon --------------------------------------------------------------------------

    def fix_horizon(self, spent: float, eval_guess) -> None:
        """Fix or move the step where a decaying schedule ends: at the start from max_steps /
        max_epochs; with max_minutes, once TIMED_STEPS steps are timed, and again after the
        first evaluation and at each of CHECKS of the budget (train/budget.py). spent: seconds
        of the budget spent; eval_guess() -> seconds per evaluation before one is measured."""
        t, p = self.cfg, self.progress
        if self.kind not in DECAYING:
            return
        if t.max_minutes is None:
            if p.horizon is None:
                p.horizon = step_horizon(t, self.batches_per_epoch)
            return
        budget = 60.0 * t.max_minutes
        if p.horizon is None:
            if p.timed_steps < TIMED_STEPS:
                return
            p.horizon = self._estimate(budget - spent, eval_guess)
            if p.step > warmup_steps(t, p.horizon):   # the warmup, capped, is over: decay
                p.horizon_anchor = [p.step, 0.0]      # from the peak, from here on
        elif self._estimate_due(spent / budget):
            self.move_horizon(self._bounded(self._estimate(budget - spent, eval_guess)))
        else:
            return
        p.horizon_checks = checks_passed(self._done(spent / budget))
        p.eval_timed = p.eval_seconds is not None
        p.timed_steps, p.timed_seconds = 0, 0.0

    def _done(self, time_done: float) -> float:
        """The fraction of the budget done: of its time or of its schedule, the further."""
        p = self.progress
        return max(time_done, schedule_fraction(p.step, warmup_steps(self.cfg, p.horizon),
                                                p.horizon, p.horizon_anchor))

    def _estimate_due(self, time_done: float) -> bool:
        """Whether the horizon is to be estimated again now: after the first evaluation or a new
        one of CHECKS, once the warmup is over, before the horizon, with steps timed."""
        p = self.progress
        due = (not p.eval_timed and p.eval_seconds is not None
               or checks_passed(self._done(time_done)) > p.horizon_checks)
        return (due and not p.horizon_fixed and p.timed_steps > 0 and p.step < p.horizon
                and p.step >= warmup_steps(self.cfg, p.horizon))

    def _estimate(self, seconds_left: float, eval_guess) -> int:
        """The horizon seconds_left affords at the costs measured (the first of it and the
        step limits)."""
        t, p = self.cfg, self.progress
        p.step_seconds = p.timed_seconds / max(p.timed_steps, 1)
        evaluation = p.eval_seconds if p.eval_seconds is not None else eval_guess()
        costs = Costs(p.step_seconds, evaluation, p.save_seconds or 0.0)
        by_time = time_horizon(p.step, seconds_left, costs, t.eval_every, t.checkpoint_every)
        steps = step_horizon(t, self.batches_per_epoch)
        return by_time if steps is None else min(steps, by_time)

    def _bounded(self, horizon: int) -> int:
        """horizon, with at least 1 / SHRINK of the steps left now still left to it."""
        p = self.progress
        return max(horizon, p.step + math.ceil((p.horizon - p.step) / SHRINK))

    def move_horizon(self, horizon: int) -> None:
        """Make `horizon` the schedule's end from the current step on, re-mapping what is left of
        the schedule onto the steps to it: the next update's rate stays exactly what it was."""
        p = self.progress
        if horizon == p.horizon:
            return
        r = schedule_fraction(p.step, warmup_steps(self.cfg, p.horizon), p.horizon,
                              p.horizon_anchor)
        p.horizon, p.horizon_anchor = horizon, [p.step, r]

    def resumed_from(self, old_train) -> None:
        """A resumed run whose limits or schedule changed fixes its horizon again, with a new
        budget: train.max_minutes counts from here."""
        p = self.progress
        if not horizon_kept(old_train, self.cfg):
            p.horizon, p.horizon_anchor, p.horizon_checks, p.eval_timed = None, None, 0, False
            p.seconds, p.horizon_fixed = 0.0, False

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
            checks = ", ".join(f"{f:.0%}" for f in CHECKS)
            until += (" or sooner: " if end else "") + (
                f"the step where train.max_minutes runs out (its final evaluation included), "
                f"estimated after timing the first {WARMUP_STEPS + TIMED_STEPS} steps and again "
                f"after the first evaluation and at {checks} of the budget")
        elif t.max_minutes is not None and not self.progress.horizon_fixed:
            until += (" as estimated so far from what is left of train.max_minutes (estimated "
                      "again as the run goes)")
        return f"schedule: {self.kind} from {t.lr:g} to {t.min_lr:g} at {until}"

    def resume_note(self, old_train) -> str | None:
        """A note when a resume's new settings give the next update another rate than the
        saved settings (old_train) would have (a cosine run extended with a larger max_steps
        goes back up from its floor). Call before the horizon is fixed again."""
        p = self.progress
        epoch = p.epoch + p.position / self.batches_per_epoch
        horizon = (p.horizon if horizon_kept(old_train, self.cfg)
                   else step_horizon(self.cfg, self.batches_per_epoch))
        anchor = p.horizon_anchor if horizon_kept(old_train, self.cfg) else None
        was = lr_at(old_train, p.step, epoch, p.horizon, p.horizon_anchor) * p.lr_scale
        now = lr_at(self.cfg, p.step, epoch, horizon, anchor) * p.lr_scale
        if was == now:
            return None
        why = ""
        if (resolved_schedule(old_train) == self.kind == "cosine"
                and p.horizon != horizon and horizon is not None):
            why = (f"; the cosine schedule now ends at step {horizon} instead of "
                   f"{p.horizon}, so the rate {'rises again' if now > was else 'falls faster'}")
        return (f"the learning rate of step {p.step + 1} is {now:.3g} (it would have been "
                f"{was:.3g}){why}")
