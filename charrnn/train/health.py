"""When a run has diverged: the one rule that stops training before a diverged state is written.

A state (weights and optimizer after some update) has diverged when any of its figures is not
finite (training loss, gradient norm, validation loss, a weight) or its loss explodes:

    loss > EXPLOSION_FACTOR * max(first training loss of the run, ln V)

char-rnn's rule is `loss > 3 * first loss` (train.lua); the ln V floor (the loss of a uniform
guess over V characters) keeps a fine-tuned run, whose first loss is already low, from stopping
on one hard batch. The loop checks every state's figures before anything from it is written
(train/loop.py), so the checkpoints a diverged run leaves are the last ones whose figures were
finite.
"""

from __future__ import annotations

import math

import numpy as np

from charrnn.train.errors import TrainingError

EXPLOSION_FACTOR = 3.0


class Diverged(TrainingError):
    """A figure of the run was not finite or exploded; nothing from that state was written."""


def loss_ceiling(first_loss: float | None, vocab_size: int) -> float:
    """The loss above which a state counts as diverged (nats/char); see the module docstring."""
    floor = math.log(max(vocab_size, 2))
    return EXPLOSION_FACTOR * max(first_loss if first_loss is not None else floor, floor)


def _describe(x: float) -> str:
    return "not a number" if x != x else ("infinite" if math.isinf(x) else f"{x:.4g}")


def step_problem(loss: float, grad_norm: float, ceiling: float) -> str | None:
    """What is wrong with a training step's figures, or None when they are healthy."""
    if not math.isfinite(loss):
        return f"the training loss became {_describe(loss)}"
    if not math.isfinite(grad_norm):
        return f"the gradient norm became {_describe(grad_norm)}"
    if loss > ceiling:
        return (f"the training loss reached {loss:.4g} nats/char, over {ceiling:.3g} "
                f"({EXPLOSION_FACTOR:g}x its first value or of a uniform guess)")
    return None


def val_problem(val_loss: float, ceiling: float) -> str | None:
    """What is wrong with a validation loss, or None when it is healthy."""
    if not math.isfinite(val_loss):
        return f"the validation loss became {_describe(val_loss)}"
    if val_loss > ceiling:
        return (f"the validation loss reached {val_loss:.4g} nats/char, over {ceiling:.3g} "
                f"({EXPLOSION_FACTOR:g}x the first training loss or of a uniform guess)")
    return None


def nonfinite_tensor(tensors) -> str | None:
    """The name of the first tensor of `tensors` (name -> array) holding NaN or inf, or None."""
    for name, value in tensors:
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return name
    return None


def weights_problem(params) -> str | None:
    """What is wrong with a model's weights (FlatParams), or None when all are finite."""
    if np.isfinite(params.flat.sum()):        # one pass; NaN or inf anywhere makes the sum so
        return None
    name = nonfinite_tensor(params.items())
    return None if name is None else f"the weights hold NaN or inf (in {name})"
