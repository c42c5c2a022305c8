"""Named arrays that are views into one contiguous 1-D buffer.

The model's parameters, its gradients and every optimizer slot (momentum, Adam moments, ...) share
one layout. Element-wise work such as clipping by global norm or an Adam update then runs as a few
NumPy calls over the whole flat buffer instead of a Python loop over a dozen arrays, while code
that cares about structure still sees `views["rnn.weight_hh_l0"]` with its PyTorch shape.
"""

from __future__ import annotations

import math

import numpy as np


class FlatParams:
    """An ordered set of named arrays backed by one flat buffer.

    `flat` is the 1-D buffer; `views[name]` is an array of `shapes[name]` sharing its memory, so
    writing either one changes the other. Never rebind a view (`views[k] = ...`); write into it
    (`views[k][...] = ...`).
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype=np.float32):
        self.shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
        self.dtype = np.dtype(dtype)
        self.size = sum(int(np.prod(s)) for s in self.shapes.values())
        self.rebind(np.zeros(self.size, self.dtype))

    def rebind(self, flat: np.ndarray) -> None:
        """Make `flat` (1-D, `size` elements of `dtype`) the buffer and every view a slice of it.
        Holders of the old `flat` or views keep the old memory; holders of this object follow."""
        if flat.shape != (self.size,) or flat.dtype != self.dtype:
            raise ValueError(f"a buffer of {self.size} x {self.dtype} is needed; got "
                             f"{flat.shape} x {flat.dtype}")
        self.flat = flat
        self.views: dict[str, np.ndarray] = {}
        offset = 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            self.views[name] = flat[offset:offset + size].reshape(shape)
            offset += size

    def zeros_like(self) -> FlatParams:
        """A new zero-filled set with the same names, shapes and dtype."""
        return FlatParams(self.shapes, self.dtype)

    def names(self) -> list[str]:
        return list(self.views)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.views[name]

    def __contains__(self, name: str) -> bool:
        return name in self.views

    def __len__(self) -> int:
        return len(self.views)

    def items(self):
        return self.views.items()

    def copy_from(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy same-named arrays in; names and shapes must match exactly."""
        if set(arrays) != set(self.views):
            missing = sorted(set(self.views) - set(arrays))
            extra = sorted(set(arrays) - set(self.views))
            raise ValueError(f"parameter names differ: missing {missing}, unexpected {extra}")
        for name, view in self.views.items():
            if tuple(arrays[name].shape) != view.shape:
                raise ValueError(f"{name} has shape {tuple(arrays[name].shape)}, expected {view.shape}")
            view[...] = arrays[name]

    def norm(self) -> float:
        """The L2 norm of the whole buffer (one BLAS dot: float32 sums for a float32 buffer)."""
        return math.sqrt(float(np.dot(self.flat, self.flat)))

    def to_dict(self) -> dict[str, np.ndarray]:
        """Independent copies of every array, by name."""
        return {name: view.copy() for name, view in self.views.items()}

