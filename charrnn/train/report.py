"""The start-of-run report: what the run reads and builds, and how long it will take.

Printed on stderr before step 1 (and by `charrnn train --dry-run`, which then stops). The
timings come from a quick measurement: a few forward/backward passes on training text and the
validation of a slice, neither of which touches the run's weights, random states or batches.
"""

from __future__ import annotations

import time

import numpy as np

from charrnn.engines.base import Clip

TIMED = 3               # forward/backward passes timed (after one untimed)
# validation characters timed: two slices, so that a pass's fixed cost (the pipeline's fork
# and set-up, ~0.1 s) and its cost per character come apart; one slice scaled up counted the
# fixed cost ~14 times and guessed a 5 s pass at 7 s (docs/performance.md#the-budget-exactly).
# Both are pipelined (more than PIPELINE_MIN_CHUNKS chunks of 1024), as the real pass is
EVAL_SLICES = (6144, 12288)

# char-rnn's rule of thumb (its README): parameters and training characters should be of the
# same order of magnitude; far more parameters overfit, far fewer underfit
OVERFIT_RATIO, UNDERFIT_RATIO = 10.0, 0.1


def quick_timing(run) -> tuple[float, float]:
    """(seconds per training step, seconds per validation pass), measured on this machine."""
    return time_step(run), time_eval(run)


def time_step(run) -> float:
    """Seconds per forward/backward pass of a batch: the median of TIMED after an untimed one."""
    t = run.config.train
    x, y = timing_batch(run.train_ids, t.batch_size, t.seq_len)
    scratch = np.random.default_rng(0)          # dropout masks of these passes only
    return median_seconds(lambda: run.engine.gradient(x, y, True, scratch, Clip()), TIMED)


def timing_batch(ids: np.ndarray, rows: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) [rows, seq_len] of a pass timed on the text `ids` (repeated if short)."""
    x = np.resize(ids, rows * seq_len + 1).astype(np.int64)
    return x[:-1].reshape(rows, seq_len), x[1:].reshape(rows, seq_len)


def median_seconds(work, timed: int) -> float:
    """The median seconds of `timed` calls of work() after an untimed one (allocations, caches)."""
    times = []
    for _ in range(timed + 1):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def time_eval(run) -> float:
    """Seconds per validation pass: a fixed cost plus a cost per character, fitted to the times
    of the two EVAL_SLICES (the whole text, timed, when it is no longer than the second)."""
    t = run.config.train
    ids = len(run.val_ids) if t.eval_chars is None else min(t.eval_chars, len(run.val_ids))
    val_chars = ids - 1                           # the characters a pass scores
    short, long = EVAL_SLICES
    if val_chars <= long:
        return _time_slice(run, val_chars)
    t_short, t_long = _time_slice(run, short), _time_slice(run, long)
    per_char = (t_long - t_short) / (long - short)
    if per_char <= 0:                             # noise: the longer slice scaled, as a bound
        return t_long * val_chars / long
    return max(t_short - short * per_char, 0.0) + per_char * val_chars


def _time_slice(run, chars: int) -> float:
    """Seconds to evaluate the first `chars` scored characters of the validation text."""
    from charrnn.infer.evaluate import evaluate_ids

    start = time.perf_counter()
    evaluate_ids(run.engine.inference_model(), run.val_ids[:chars + 1],
                 pipeline=run.engine.workers > 1)          # as validation_loss does
    return time.perf_counter() - start


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def report_lines(run, step_seconds: float, eval_seconds: float) -> list[str]:
    """The report: corpus, model, parameters per character with the rule of thumb, times."""
    t, m = run.config.train, run.config.model
    n_train, n_val = len(run.train_ids), len(run.val_ids)
    params = run.engine.inference_model().params.flat.size
    ratio = params / max(n_train, 1)
    if ratio > OVERFIT_RATIO:
        advice = "far more than characters: expect overfitting (more text, dropout, or a smaller model)"
    elif ratio < UNDERFIT_RATIO:
        advice = "far fewer than characters: a larger model would likely fit better"
    else:
        advice = "the same order as the characters, as char-rnn's rule of thumb advises"
    bpe = run.batches.batches_per_epoch
    lines = [
        f"corpus: {n_train:,} training + {n_val:,} validation characters, "
        f"vocabulary of {len(run.vocab)}",
        f"model: {m.cell} {m.layers}x{m.hidden_size} (embedding {m.embed_size}"
        f"{', residual' if m.residual else ''}"
        f"{f', feed-forward x{m.ffn_mult}' if m.ffn_mult else ''}), "
        f"{params:,} parameters = {ratio:.2g} per training character: {advice}",
        f"time: {step_seconds * 1e3:.0f} ms per step (batch {t.batch_size} x {t.seq_len}), "
        f"{_duration(bpe * step_seconds)} per epoch of {bpe:,} steps, "
        f"{_duration(t.eval_every * step_seconds)} per {t.eval_every} steps "
        f"+ {_duration(eval_seconds)} per evaluation",
    ]
    line = run.batches.describe()      # the packing, its padding, what is left out
    if line:
        lines.append(line)
    schedule = run.lr.report_line()
    if schedule:
        lines.append(schedule)
    return lines
