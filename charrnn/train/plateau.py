"""What an evaluation decides beyond the best checkpoint: early stopping and the plateau schedule.

Both count evaluations without a new best validation loss, in the run's progress (so a resumed
run decides exactly as an uninterrupted one):

  train.patience = P         stop once P evaluations in a row bring no new best; the best
                             checkpoint is the result (Keras's EarlyStopping, monitor val_loss)
  lr_schedule: plateau       multiply the rate by plateau_factor once more than plateau_patience
                             evaluations bring no new best, then count afresh (PyTorch's
                             ReduceLROnPlateau, mode min, threshold 0, cooldown 0), never below
                             train.min_lr
"""

from __future__ import annotations

from charrnn.train.schedule import resolved_schedule


def after_evaluation(train_cfg, progress, improved: bool) -> str | None:
    """Update progress's counters and plateau scale after an evaluation; the stop reason when
    patience has run out, else None."""
    p = progress
    p.evals_since_best = 0 if improved else p.evals_since_best + 1
    if resolved_schedule(train_cfg) == "plateau":
        p.plateau_bad = 0 if improved else p.plateau_bad + 1
        if p.plateau_bad > train_cfg.plateau_patience:
            floor = train_cfg.min_lr / train_cfg.lr
            p.lr_scale = max(p.lr_scale * train_cfg.plateau_factor, floor)
            p.plateau_bad = 0
    if train_cfg.patience is not None and p.evals_since_best >= train_cfg.patience:
        return (f"stopped early: {p.evals_since_best} evaluations without a new best "
                f"(train.patience={train_cfg.patience})")
    return None
