"""The time a max_minutes run has: its clock, what its steps cost, and how many it can afford.

train/lr.py estimates the horizon (the step where a decaying schedule ends and the run stops)
from these: first once TIMED_STEPS steps are timed (after the run's first WARMUP_STEPS, which run
slower), then again after the first evaluation and when the run has done each of CHECKS of its
budget (of its time or of its schedule, whichever is further: a machine that slows down reaches
the first, one that speeds up the second), each time from the steps timed since the last
estimate, so the end moves with the machine's speed. The estimate counts the evaluations and
checkpoints still to come and the final evaluation and checkpoint, so the run ends, all of them
included, at the budget. Every figure here is kept in the run's Progress (saved in every
checkpoint), so a resumed run makes the same estimates from the same timings.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

WARMUP_STEPS = 3     # the run's first steps run slower (allocation, caches): not timed
TIMED_STEPS = 20     # steps timed before the first estimate
CHECKS = (0.25, 0.5, 0.75, 0.9)   # fractions of the budget spent at which it is estimated again


@dataclass
class Costs:
    """Seconds per training step, per evaluation (with its best-checkpoint write) and per write
    of last.safetensors."""

    step: float
    evaluation: float
    save: float


def seconds_needed(step: int, n: int, costs: Costs, eval_every: int,
                   checkpoint_every: int) -> float:
    """Seconds from `step` to the end of a run that stops after n more steps: the steps, the
    evaluations and checkpoints due on the way, the final evaluation (unless one fell on the
    last step) and the final checkpoint."""
    end = step + n
    evaluations = end // eval_every - step // eval_every + (end % eval_every != 0)
    saves = end // checkpoint_every - step // checkpoint_every + 1
    return n * costs.step + evaluations * costs.evaluation + saves * costs.save


def time_horizon(step: int, seconds_left: float, costs: Costs, eval_every: int,
                 checkpoint_every: int) -> int:
    """The last step at which the run, its final evaluation and checkpoint included, still ends
    within seconds_left (the budget not yet spent): at least step + 1."""
    low, high = 1, max(2, math.ceil(seconds_left / max(costs.step, 1e-9)) + 1)
    while high - low > 1:                       # seconds_needed grows with n: bisect
        mid = (low + high) // 2
        fits = seconds_needed(step, mid, costs, eval_every, checkpoint_every) <= seconds_left
        low, high = (mid, high) if fits else (low, mid)
    return step + low


def checks_passed(done: float) -> int:
    """How many of CHECKS a run that has done the fraction `done` of its budget has passed."""
    return sum(done >= f for f in CHECKS)


class RunClock:
    """Seconds of training a run has spent: `spent` saved before this session, plus this
    session's time since the clock was made (time.perf_counter)."""

    def __init__(self, spent: float = 0.0):
        self.spent, self.start = spent, time.perf_counter()

    def now(self) -> float:
        return self.spent + (time.perf_counter() - self.start)
