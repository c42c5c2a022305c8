"""When a run has diverged: the one rule that keeps a diverged state out of every checkpoint and
stops the run.

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
carried state grows, without ever saving a state from inside the burst. The loop checks each
state's figures before anything from it is written (train/loop.py), so the checkpoints a
diverged run leaves are the last ones whose figures were healthy.
"""

from __future__ import annotations

import math

import numpy as np

from charrnn.store.checkpoint import nonfinite_tensor
from charrnn.train.errors import TrainingError

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


def weights_problem(params) -> str | None:
    """What is wrong with a model's weights (FlatParams), or None when all are finite."""
    if np.isfinite(params.flat.sum()):        # one pass; NaN or inf anywhere makes the sum so
        return None
    name = nonfinite_tensor(params.items())
    return None if name is None else f"the weights hold NaN or inf (in {name})"
