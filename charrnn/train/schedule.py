"""Learning-rate schedules: the rate of every update, from the step, the epoch and the horizon.

The horizon is the step at which a decaying schedule reaches its floor. It is fixed once per run
(train/budget.py: the first of max_steps, max_epochs x batches per epoch and, for max_minutes,
an estimate from timing the first steps) and saved in the checkpoint, so a resumed run follows
exactly the same rates.
"""

from __future__ import annotations

import math

DECAYING = ("cosine", "linear")


def resolved_schedule(train_cfg) -> str:
    """The schedule a run uses: train.lr_schedule, with `auto` = cosine when the run has a
    limit (max_steps, max_epochs or max_minutes) and constant when it trains until Ctrl-C."""
    kind = getattr(train_cfg, "lr_schedule", "constant")
    if kind != "auto":
        return kind
    limited = any(getattr(train_cfg, k, None) is not None
                  for k in ("max_steps", "max_epochs", "max_minutes"))
    return "cosine" if limited else "constant"


def warmup_steps(train_cfg, horizon: int | None = None) -> int:
    """train.warmup_steps; for a decaying schedule at most a tenth of its horizon (default
    train.max_steps), so a short run still spends most of its steps at and after the peak.
    Other schedules keep the full warmup: their rates must not depend on the run's limit, so
    that resuming with a later limit repeats the uninterrupted run."""
    warmup = int(getattr(train_cfg, "warmup_steps", 0) or 0)
    end = horizon if horizon is not None else getattr(train_cfg, "max_steps", None)
    if end is None or resolved_schedule(train_cfg) not in DECAYING:
        return warmup
    return min(warmup, end // 10)


def lr_at(train_cfg, step: int, epoch: float, horizon: int | None = None) -> float:
    """The learning rate for the update after `step` completed updates, at `epoch` (float).

    Stateless, so a resumed run gets exactly the same rates. With lr0 = train_cfg.lr and
    r = clamp((step - W) / (horizon - W), 0, 1) (horizon: default
    train_cfg.max_steps; None while it is not fixed yet, which holds r at 0):
      constant, plateau:  lr0 (plateau: times the scale the loop keeps, train/plateau.py)
      step:      lr0 * decay_rate ** floor(epoch / decay_every)            (char-rnn)
      cosine:    min_lr + (lr0 - min_lr) * (1 + cos(pi * r)) / 2            (nanoGPT)
      linear:    min_lr + (lr0 - min_lr) * (1 - r)
    and, for any schedule, a linear warmup while step < W = warmup_steps(train_cfg, horizon):
    the rate above times (step + 1) / (W + 1) (nanoGPT's form: lr0 / (W+1) first, reaching lr0
    at step W).
    """
    lr0 = float(train_cfg.lr)
    kind = resolved_schedule(train_cfg)
    warmup = warmup_steps(train_cfg, horizon)
    if kind in ("constant", "plateau"):
        lr = lr0
    elif kind == "step":
        if not train_cfg.decay_every or train_cfg.decay_every <= 0:
            raise ValueError("lr_schedule step needs train.decay_every > 0 (epochs between decays)")
        lr = lr0 * train_cfg.decay_rate ** math.floor(epoch / train_cfg.decay_every)
    elif kind in DECAYING:
        end = horizon if horizon is not None else train_cfg.max_steps
        r = 0.0 if end is None else min(max((step - warmup) / max(end - warmup, 1), 0.0), 1.0)
        min_lr = float(getattr(train_cfg, "min_lr", 0.0) or 0.0)
        shape = 0.5 * (1.0 + math.cos(math.pi * r)) if kind == "cosine" else 1.0 - r
        lr = min_lr + (lr0 - min_lr) * shape
    else:
        raise ValueError(f"unknown lr_schedule {kind!r}; choose one of constant, step, cosine, "
                         f"linear, plateau, auto")
    if step < warmup:
        lr *= (step + 1) / (warmup + 1)
    return lr
