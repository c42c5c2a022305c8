"""The engine interface: what the training loop may ask of the place where a step runs.

Shape key: B batch, T time, L layers, H hidden.

A step is two calls, so that the divergence rule (charrnn/train/) can judge the
figures of the current weights, and the checkpoint of those weights be written, before the
update replaces them:

    figures = engine.gradient(ids, targets, reset, rng, clip)   # loss, gradient norm
    engine.update(lr)                                           # clipped, one optimizer step

The loop never sees a gradient array; weights and optimizer state leave an engine only as
NumPy arrays under the checkpoint's names (state()), and come back on resume (restore()).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from charrnn.errors import UsageError
from charrnn.nn.model import CharRNN
from charrnn.nn.params import FlatParams
from charrnn.optim import clip_coefficient, clip_grad_value


@dataclass(frozen=True)
class Clip:
    """The gradient clipping rule: train.clip (norm | value | none) and train.clip_value."""

    kind: str = "none"
    value: float = math.inf

    @classmethod
    def of(cls, train_cfg) -> Clip:
        return cls(train_cfg.clip, train_cfg.clip_value)


@dataclass(frozen=True)
class StepFigures:
    """What a step's gradient says about the weights it was computed on.

    loss: mean nats/char of the batch; grad_norm: the gradient's L2 norm before clipping by norm
    (after clipping by value, as char-rnn reports it).
    """

    loss: float
    grad_norm: float


@dataclass
class EngineState:
    """A run's state as a checkpoint stores it: params {name: array}, optim
    {"optim.<slot>.<name>": array}, optim_scalars {"step": updates}, carry (one [L, B, H]
    array per name in the cell's STATE, or ()). The arrays may be views of the engine's
    buffers: write them out before the next update."""

    params: dict[str, np.ndarray]
    optim: dict[str, np.ndarray]
    optim_scalars: dict
    carry: tuple = ()


class Engine(Protocol):
    """Where a run's training steps are computed. Built by `ENGINE(model, train_cfg,
    saved_workers)` from a CharRNN holding the run's initial weights (the model's layout and
    dtype are the run's)."""

    workers: int                  # processes of a step (saved, so a resume keeps its shards)
    writer: bool                  # whether this process writes the run's folder and output
                                  # (False on the ranks other than 0 of a run under torchrun)

    def gradient(self, ids: np.ndarray, targets: np.ndarray, reset, rng: np.random.Generator,
                 clip: Clip) -> StepFigures:
        """The gradient of the loss of ids, targets [B, T] on the current weights, from the
        carried state with `reset` applied (True: zeros; a bool [B]: those streams zeroed;
        False: as carried), dropout masks from rng; clipped by `clip`. Nothing is updated."""

    def update(self, lr: float) -> None:
        """One optimizer step at rate lr with the last gradient; the state it ended in is
        carried to the next step."""

    def inference_model(self) -> CharRNN:
        """A CharRNN with the current weights, for validation and samples (not to be changed)."""

    def state(self) -> EngineState:
        """Weights, optimizer state and carried state, under the checkpoint's names."""

    def restore(self, optim: dict[str, np.ndarray], optim_scalars: dict, carry: tuple) -> None:
        """Put a checkpoint's optimizer state and carried state back (the weights came with the
        model the engine was built from). ValueError when they do not fit."""

    def agree(self, flag: bool) -> bool:
        """Whether flag is True in any process of the run (in one process: flag), so that every
        process of a run stops at the same step (a signal reaches each at its own moment)."""

    def close(self) -> None:
        """Release workers, if any (idempotent)."""


def missing_members(cls: type) -> list[str]:
    """The methods of Engine that an engine class lacks (the registry refuses such a class)."""
    return [name for name, member in vars(Engine).items()
            if callable(member) and not name.startswith("_") and not hasattr(cls, name)]


def refuse_torchrun(engine: str) -> None:
    """UsageError when an engine of one process is started by torchrun (WORLD_SIZE > 1): every
    rank would train the whole run and write the same folder."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError(f"train.engine {engine} runs in one process; under torchrun use "
                         f"--set train.engine=torch")


def carried(carry: tuple | None, reset) -> tuple | None:
    """The state a step starts from: None (zeros) when reset is True or nothing is carried,
    else carry with the streams where reset is True zeroed (a copy; carry is unchanged)."""
    if reset is True or carry is None:
        return None
    if reset is False or not reset.any():
        return carry
    carry = tuple(part.copy() for part in carry)
    for part in carry:
        part[:, reset] = 0
    return carry


def clip_in_place(grads: FlatParams, clip: Clip,
                  grad_norm: Callable[[], float] | None = None) -> tuple[float, float]:
    """(norm, coef) of a gradient under `clip`: by value, the elements are clamped here and the
    norm is that of the clamped gradient; by norm, coef = clip_value / (norm + 1e-6) is what
    the update scales it by when below 1 (torch.nn.utils.clip_grad_norm_). grad_norm(): the
    L2 norm of grads, where the engine knows it already (default grads.norm())."""
    if clip.kind == "value":
        clip_grad_value(grads, clip.value)
        return float(np.linalg.norm(grads.flat)), 1.0
    norm = grads.norm() if grad_norm is None else grad_norm()
    return norm, clip_coefficient(norm, clip.value if clip.kind == "norm" else math.inf)
