"""Where a training step runs: the engines, behind one declared interface (engines/base.py).

An engine owns a run's parameters, gradients, optimizer state and carried state; the training
loop asks it for a step's gradient and figures, then for the update, and gets weights and
optimizer state out of it (as NumPy arrays under the checkpoint's names) for validation,
samples and checkpoints. Registered by name below, chosen by `train.engine`.

A new engine is its module here (defining ENGINE, a class that implements base.Engine) and its
line in ENGINES. Modules load when first asked for, so reading the names (the config's choices)
imports no engine, and an engine's heavy dependencies load only when it is chosen.
"""

from __future__ import annotations

import importlib

from charrnn.engines import base

ENGINES = {                # train.engine value -> its module under charrnn/engines
    "numpy": "numpy_engine",       # this process, or the batch over worker processes (fast/)
    "reference": "reference",      # nn/reference.py's textbook model: slow, float64, a yardstick
    "torch": "torch_engine",       # PyTorch on cpu, cuda or mps (train.device); optional extra
}

NAMES = tuple(ENGINES)


def get(name: str) -> type:
    """The engine class registered as `name`; ValueError naming the known ones otherwise,
    TypeError when the class lacks a method of the interface (base.Engine)."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    cls = importlib.import_module(f"{__name__}.{ENGINES[name]}").ENGINE
    missing = base.missing_members(cls)
    if missing:
        raise TypeError(f"engine {name!r} lacks {', '.join(missing)} of charrnn/engines/base.py's "
                        f"Engine")
    return cls
