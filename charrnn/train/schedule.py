"""Learning-rate schedules: the rate of every update, from the step and epoch alone."""

from __future__ import annotations

import math


def lr_at(train_cfg, step: int, epoch: float) -> float:
    """The learning rate for the update after `step` completed updates, at `epoch` (float).

    Stateless, so a resumed run gets exactly the same rates. With lr0 = train_cfg.lr:
      constant:  lr0
      step:      lr0 * decay_rate ** floor(epoch / decay_every)            (char-rnn)
      cosine:    min_lr + (lr0 - min_lr) * (1 + cos(pi * r)) / 2, with
                 r = clamp((step - warmup_steps) / (max_steps - warmup_steps), 0, 1)  (nanoGPT)
    and, for any schedule, a linear warmup while step < warmup_steps: the rate above times
    (step + 1) / (warmup_steps + 1) (nanoGPT's form: lr0 / (W+1) first, reaching lr0 at step W).
    """
    lr0 = float(train_cfg.lr)
    kind = getattr(train_cfg, "lr_schedule", "constant")
    warmup = int(getattr(train_cfg, "warmup_steps", 0) or 0)
    if kind == "constant":
        lr = lr0
    elif kind == "step":
        if not train_cfg.decay_every or train_cfg.decay_every <= 0:
            raise ValueError("lr_schedule step needs train.decay_every > 0 (epochs between decays)")
        lr = lr0 * train_cfg.decay_rate ** math.floor(epoch / train_cfg.decay_every)
    elif kind == "cosine":
        if train_cfg.max_steps is None:
            raise ValueError("lr_schedule cosine needs train.max_steps (the step where the "
                             "rate reaches min_lr); set it or use another schedule")
        min_lr = float(getattr(train_cfg, "min_lr", 0.0) or 0.0)
        r = min(max((step - warmup) / max(train_cfg.max_steps - warmup, 1), 0.0), 1.0)
        lr = min_lr + (lr0 - min_lr) * 0.5 * (1.0 + math.cos(math.pi * r))
    else:
        raise ValueError(f"unknown lr_schedule {kind!r}; choose one of constant, step, cosine")
    if step < warmup:
        lr *= (step + 1) / (warmup + 1)
    return lr
