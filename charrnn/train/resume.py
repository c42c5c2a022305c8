"""What `charrnn train --resume RUN --set key=value` may change, setting by setting.

Every setting of the config has one rule here (tests/test_resume_rules.py checks none is
missing), so a resumed run either takes a change, saying what it does to exactness, or refuses it
with one sentence naming the setting:

  EXACT    the run goes on exactly as if it had never stopped: limits, logging, evaluation and
           checkpoint cadence, sampling, and where the corpus is and which files it skips (its
           contents are checked). A new limit moves the end of a decaying schedule: the note on
           the learning rate says what that does to the next update
  CHANGES  taken, with a note: the run goes on from the same state but no longer equals an
           uninterrupted run with the old value (learning rate and optimizer settings, clipping,
           dropout, stream resets, worker count)
  REFUSED  refused: the saved state depends on it (batch shape, the split, the architecture, the
           optimizer's moments) or it only acts when a run starts (init); --init-from starts a new
           run from the weights instead
"""

from __future__ import annotations

import dataclasses
import os

from charrnn.config import SECTIONS, Config, ConfigError
from charrnn.optim import HYPERPARAMETER_ON_RESUME, hyperparameter_ranges
from charrnn.train.lr import LearningRate, horizon_kept

EXACT, CHANGES, REFUSED = "exact", "changes", "refused"

_START_ONLY = "it acts only when a run starts (on the initial weights)"
_SHAPE = "the saved batch position and carried state depend on it"
_ARCH = "the saved weights have this shape"

REFUSED_WHY: dict[str, str] = {
    "data.val_fraction": "it moves the boundary between training and validation text",
    "data.batching": _SHAPE,
    "data.documents": "the vocabulary and the batches depend on it",
    "model.cell": _ARCH, "model.nonlinearity": "the saved weights were trained with it",
    "model.layers": _ARCH, "model.hidden_size": _ARCH, "model.embed_size": _ARCH,
    "model.ffn_mult": _ARCH, "model.residual": "the saved weights were trained with it",
    "model.size": "it chooses a new run's sizes",
    "model.init": _START_ONLY, "model.identity_scale": _START_ONLY,
    "model.forget_bias": _START_ONLY,
    "train.batch_size": _SHAPE, "train.seq_len": _SHAPE,
    "train.optimizer": "the saved optimizer state (its moments) belongs to the old optimizer",
    "train.dtype": "the saved weights and optimizer state have this precision",
    "train.seed": "the random generators continue from their saved states",
    "train.out_dir": "the run lives in its folder (copy the folder to continue it elsewhere: "
                     "cp -r RUN NEW && charrnn train --resume NEW)",
}

# changes a new run from the same weights (--init-from) cannot take either
NEW_RUN_ONLY = ({k for k, why in REFUSED_WHY.items() if why == _ARCH}
                | {"data.documents", "model.residual", "model.size"})

CHANGES_WHAT: dict[str, str] = {
    "data.reset_prob": "other streams are reset from now on",
    "model.dropout": "other dropout masks from now on",
    "train.threads": "another split of the batch over workers: other dropout masks and "
                     "float sums",
    "train.engine": "another engine computes the steps: other float sums",
    "train.device": "another device computes the steps: other float sums",
    **{f"train.{k}": HYPERPARAMETER_ON_RESUME for k in hyperparameter_ranges()},
    **{f"train.{k}": "another update from now on" for k in (
        "clip", "clip_value", "lr_schedule", "warmup_steps", "min_lr", "decay_rate",
        "decay_every", "plateau_factor", "plateau_patience")},
}

EXACT_KEYS = {"data.path", "data.skip_invalid"} | {f"train.{k}" for k in (
    "max_steps", "max_epochs", "max_minutes", "patience", "eval_every", "eval_chars",
    "checkpoint_every", "sample_every", "sample_chars", "log_every")} | {
    f"sample.{f.name}" for f in dataclasses.fields(Config().sample)}


def rule(key: str) -> str:
    """EXACT, CHANGES or REFUSED for a `section.key`."""
    if key in REFUSED_WHY:
        return REFUSED
    if key in CHANGES_WHAT:
        return CHANGES
    if key in EXACT_KEYS:
        return EXACT
    raise KeyError(f"{key} has no resume rule in charrnn/train/resume.py")


def differences(old: Config, new: Config) -> list[tuple[str, object, object]]:
    """[(section.key, old value, new value)] for every setting that differs."""
    out = []
    for section in SECTIONS:
        a, b = getattr(old, section), getattr(new, section)
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if x != y:
                out.append((f"{section}.{f.name}", x, y))
    return out


def same_folder(a: str, b: str) -> bool:
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def refuse_changes(old: Config, new: Config) -> None:
    """ConfigError naming the first setting that cannot change on resume (old: the saved
    config, new: with the --set values)."""
    for key, was, now in differences(old, new):
        if rule(key) == REFUSED and not (key == "train.out_dir" and same_folder(was, now)):
            way = ("start a new run" if key in NEW_RUN_ONLY else
                   "start a new run from these weights with --init-from")
            raise ConfigError(f"{key} cannot change when a run resumes ({REFUSED_WHY[key]}); "
                              f"remove that --set, or {way}")


def change_notes(old: Config, new: Config, progress, batches_per_epoch: int,
                 saved_workers: int | None = None) -> list[str]:
    """Notes for the user on what the allowed changes from old to new do; ConfigError when the
    run has already reached its new limits. saved_workers: the run's worker count so far (a
    train.threads equal to it changes nothing)."""
    notes = [f"{key} changes from {_show(was)} to {_show(now)}: the run goes on from the saved "
             f"state, not as it would have ({CHANGES_WHAT[key]})"
             for key, was, now in differences(old, new) if rule(key) == CHANGES
             and not (key == "train.threads" and now is not None
                      and min(now, new.train.batch_size) == saved_workers)]
    lr = LearningRate(new.train, progress, batches_per_epoch)
    lr_note = lr.resume_note(old.train)
    if lr_note:
        notes.append(lr_note)
    _check_limits(new.train, progress, horizon_kept(old.train, new.train) and lr.already_ended())
    return notes


def _show(value) -> str:
    return "null" if value is None else str(value)


def _check_limits(t, progress, schedule_ended: bool) -> None:
    """ConfigError when the resumed run has nothing left to do."""
    for key, limit, reached in (("max_steps", t.max_steps, progress.step),
                                ("max_epochs", t.max_epochs, progress.epoch)):
        if limit is not None and reached >= limit:
            raise ConfigError(f"the run is at {key.removeprefix('max_').rstrip('s')} {reached}, "
                              f"which already meets train.{key}={limit}; raise it to train on, "
                              f"e.g. --set train.{key}={2 * max(reached, 1)}")
    if schedule_ended:
        raise ConfigError(f"the run's schedule already ended at step {progress.horizon} (fixed "
                          f"from train.max_minutes={t.max_minutes:g}); give it more time to "
                          f"train on, e.g. --set train.max_minutes={2 * (t.max_minutes or 1):g}")
