"""Timing a run's first steps, for the horizon of a max_minutes run.

train/lr.py fixes that horizon (the step where a decaying schedule ends and the run stops) at
step + (budget left) / (time per step), with the time per step measured over TIMED_STEPS steps
after WARMUP_STEPS untimed ones, plus each evaluation's share (the final evaluation comes after
the budget, as it does when a run without a schedule stops).
"""

from __future__ import annotations

import math
import time

WARMUP_STEPS = 3     # first steps of a session run slower (allocation, caches): not timed
TIMED_STEPS = 20     # steps timed to fix a max_minutes horizon


def time_horizon(step: int, seconds_left: float, step_seconds: float, eval_seconds: float,
                 eval_every: int) -> int:
    """The step at which seconds_left runs out: at least step + 1.

    seconds_left: the budget not yet spent; step_seconds: one training step; eval_seconds: one
    evaluation, of which one comes every eval_every steps.
    """
    per_step = step_seconds + eval_seconds / eval_every
    steps = seconds_left / per_step
    return step + max(1, math.floor(steps))


class StepTimer:
    """Times the training steps of a session (train_step alone: evaluations and checkpoints are
    outside) and says when enough are timed to fix a max_minutes horizon."""

    def __init__(self):
        self.steps, self.seconds, self._start = 0, 0.0, None

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> None:
        if self.steps + 1 > WARMUP_STEPS:
            self.seconds += time.perf_counter() - self._start
        self.steps += 1

    @property
    def ready(self) -> bool:
        return self.steps >= WARMUP_STEPS + TIMED_STEPS

    @property
    def step_seconds(self) -> float:
        return self.seconds / max(self.steps - WARMUP_STEPS, 1)
