"""When a run has diverged: the one rule that keeps a diverged state out of every checkpoint and
stops the run. The loop asks it about each step and each evaluation, and before each write of
last.safetensors; the weights are checked once more as a checkpoint is written (run.save), and
every load refuses a file holding NaN or inf (charrnn/store/checkpoint.py).

A state (weights and optimizer after some update) is judged by its figures: the training loss
and gradient norm of the next step, computed on its weights, and its validation loss.

  not finite      a loss, the gradient norm or a weight is NaN or infinite: the run stops at once
  exploded        its loss exceeds EXPLOSION_FACTOR * max(first training loss of the run, ln V):
                  the state is never saved, and the run stops once the training loss has stayed
                  above that ceiling for EXPLODED_STEPS steps in a row (or ends on such a state)

char-rnn's rule is `loss > 3 * first loss`, stopping at once (train.lua). The ln V floor (the loss
of a uniform guess over V characters) keeps a fine-tuned run, whose first loss is already low,
from stopping on one hard batch; the EXPLODED_STEPS of grace let a run recover from a burst, as
an identity-initialised ReLU RNN (configs/irnn.yaml) does in its first hundred steps while its
carried state grows, without ever saving a state from inside the burst.

The figures of the state after step k are known only when step k+1 computes its loss on its
weights (or an evaluation at step k does), so last.safetensors of a state is written as soon as
they show it healthy: at once after a healthy evaluation, else just before step k+1's update.
The checkpoints a diverged run leaves are the last ones whose figures were healthy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from charrnn.fileio import shell_path
from charrnn.store.checkpoint import nonfinite_tensor
from charrnn.train.errors import TrainingError
from charrnn.train.run import saved_list

if TYPE_CHECKING:
    from charrnn.train.run import Run

EXPLOSION_FACTOR = 3.0
EXPLODED_STEPS = 100      # steps in a row above the ceiling before an exploded run stops


class Diverged(TrainingError):
    """A figure of the run was not finite or exploded; nothing from that state was written."""


def loss_ceiling(first_loss: float | None, vocab_size: int) -> float:
    """The loss above which a state counts as diverged (nats/char); see the module docstring."""
    floor = math.log(max(vocab_size, 2))
    return EXPLOSION_FACTOR * max(first_loss if first_loss is not None else floor, floor)


def _describe(x: float) -> str:
    return "not a number" if x != x else ("infinite" if math.isinf(x) else f"{x:.4g}")


def step_problem(loss: float, grad_norm: float) -> str | None:
    """What is fatally wrong with a training step's figures (not finite), or None."""
    if not math.isfinite(loss):
        return f"the training loss became {_describe(loss)}"
    if not math.isfinite(grad_norm):
        return f"the gradient norm became {_describe(grad_norm)}"
    return None


def val_problem(val_loss: float) -> str | None:
    """What is fatally wrong with a validation loss (not finite), or None."""
    if not math.isfinite(val_loss):
        return f"the validation loss became {_describe(val_loss)}"
    return None


def explosion(what: str, loss: float, ceiling: float) -> str:
    """The words for a loss above the ceiling."""
    return (f"the {what} loss reached {loss:.4g} nats/char, over {ceiling:.3g} "
            f"({EXPLOSION_FACTOR:g}x the first training loss or that of a uniform guess)")


def weights_problem(params: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a model's weights ({name: array}), or None when all are finite."""
    if all(np.isfinite(v.sum()) for v in params.values()):   # NaN or inf makes a sum so
        return None
    name = nonfinite_tensor(params.items())
    return None if name is None else f"the weights hold NaN or inf (in {name})"


@dataclass(frozen=True)
class StepVerdict:
    """A step's figures judged: the run's first loss and the steps in a row above the ceiling,
    both counting this step (the progress takes them once the step's update is done)."""

    first_loss: float
    exploded_steps: int


class Divergence:
    """The rule applied to one session of a run: judges its figures and says when the current
    state may be written to last.safetensors.

    The current state's figures are known healthy (after a healthy evaluation), known exploded
    (after an exploded one), or not known yet (`known`: True, False, None); a last.safetensors
    that fell due while they were not known is written once the next step's loss shows them
    healthy (`owed`).
    """

    def __init__(self, run: Run):
        self.run = run
        self.known: bool | None = None
        self.owed = False

    def ceiling(self, first_loss: float | None) -> float:
        return loss_ceiling(first_loss, len(self.run.vocab))

    def judge_step(self, loss: float, grad_norm: float) -> StepVerdict:
        """Diverged when the figures of a step on the current weights are not finite, or its loss
        has been over the ceiling EXPLODED_STEPS steps in a row."""
        p = self.run.progress
        first = p.first_loss if p.first_loss is not None else loss
        problem = step_problem(loss, grad_norm)
        if problem is not None:
            raise diverged(self.run, problem, p.step + 1)
        ceiling = self.ceiling(first)
        exploded = p.exploded_steps + 1 if loss > ceiling else 0
        if exploded >= EXPLODED_STEPS:
            raise diverged(self.run, f"{explosion('training', loss, ceiling)}, {exploded} steps "
                                     f"in a row", p.step + 1)
        return StepVerdict(first, exploded)

    def save_before_update(self, verdict: StepVerdict) -> bool:
        """Whether to write the current state now, before the update: owed, and shown healthy by
        this step's loss (and not exploded by its evaluation)."""
        if self.owed and not verdict.exploded_steps and self.known is not False:
            self.owed = False
            return True
        return False

    def updated(self, verdict: StepVerdict) -> None:
        """The step's update is done: a new state, whose figures are not known yet."""
        p = self.run.progress
        p.first_loss, p.exploded_steps = verdict.first_loss, verdict.exploded_steps
        self.known = None

    def judge_evaluation(self, val_loss: float) -> bool:
        """Whether the current state is healthy by its validation loss (under the ceiling);
        Diverged when that loss is not finite."""
        problem = val_problem(val_loss)
        if problem is not None:
            raise diverged(self.run, problem, self.run.progress.step)
        self.known = val_loss <= self.ceiling(self.run.progress.first_loss)
        return self.known

    def save_when_due(self) -> bool:
        """last.safetensors is due: whether to write it now (known healthy); otherwise it is
        owed until the next step's loss shows the state healthy."""
        self.owed = not self.known
        return bool(self.known)

    def may_save_on_interrupt(self) -> bool:
        """Whether an interrupted run may write its current state: nothing says it diverged."""
        return self.known is not False and not self.run.progress.exploded_steps

    def check_final(self) -> None:
        """Diverged when the run ends on a state its evaluation found exploded."""
        if self.known is False:
            p = self.run.progress
            raise diverged(self.run, explosion("validation", p.last_val_loss,
                                               self.ceiling(p.first_loss)), p.step)


def diverged(run: Run, problem: str, step: int) -> Diverged:
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
    return Diverged(f"the run diverged at step {step}: {problem}; nothing from that state "
                    f"was saved and {on_disk}. {way[0].upper()}{way[1:]}.")
