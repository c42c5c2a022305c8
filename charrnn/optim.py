"""Optimizers and gradient clipping over flat parameter buffers.

Every optimizer updates `params.flat` in place from `grads.flat` (two `FlatParams` of one layout)
with a fixed sequence of in-place NumPy ufuncs over the whole buffer: no Python loop over
parameters, no allocation per step (scratch buffers are allocated once), and the gradients are
never written to. The state slots (`exp_avg`, `exp_avg_sq`, `momentum_buffer`, `sum`,
`square_avg`, named as in torch.optim) are `FlatParams` of the same layout, so `state_dict()`
hands out per-parameter arrays keyed by PyTorch parameter names.

The registry, OPTIMIZERS, is where `train.optimizer` takes its choices from: each class declares
its `name`, its `hyperparameters` (the train-config keys it reads, each with the interval it must
lie in: config.py checks them, and so does the constructor), and whether its update is
`elementwise` (DataParallel splits an update over processes by parts of the flat buffer, right
only for element-wise rules). On resume every hyperparameter may change (the run goes on with
another update: HYPERPARAMETER_ON_RESUME; a slot that only some values need, such as SGD's
momentum buffer, starts from zeros or is dropped: optional_slots) and the optimizer may not
(its slots are its own).
A new optimizer is one class here and its name in OPTIMIZERS.

Update rules are torch.optim's (defaults: no amsgrad / nesterov / dampening / centered / lr_decay).
g is the gradient, p the parameter, t the step count starting at 1, wd the weight decay.

Floating point: the fused forms are algebraically identical to torch's but may round in a
different order (Adam folds 1/sqrt(bc2) into eps and the step size); whole runs agree with
torch.optim to about 1e-13 in float64 (docs/performance.md). A resumed run is bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from charrnn.nn.params import FlatParams
from charrnn.ranges import NON_NEGATIVE, POSITIVE, UNIT_OPEN_RIGHT, Range

__all__ = [
    "Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "OPTIMIZERS", "make_optimizer",
    "hyperparameter_ranges", "flatten_state", "unflatten_state", "clip_grad_norm",
    "clip_grad_value", "clip_coefficient",
]

HYPERPARAMETER_ON_RESUME = "another update from now on"   # the resume rule of every one


def _divided_step(p, g, second, s, eps, lr) -> None:
    """p <- p - lr * g / (sqrt(second) + eps), element-wise, through the scratch buffer s
    (Adagrad's and RMSprop's last line)."""
    np.sqrt(second, out=s)
    np.add(s, eps, out=s)
    np.divide(g, s, out=s)
    np.multiply(s, lr, out=s)
    np.subtract(p, s, out=p)


class Optimizer:
    """Base class: step counting, lr override, weight decay, scratch buffers and state
    (de)serialisation.

    Subclasses set `name`, `hyperparameters` and `slot_names` and implement `_update(g, lr)`,
    which receives the gradient's flat buffer (with L2 weight decay already added where the
    optimizer couples it) and must update `self.params.flat` in place using only `self._tmp` as
    scratch. An update that reads whole tensors (a norm per tensor: LAMB, Muon) sets
    `elementwise = False`.
    """

    name = ""
    hyperparameters: dict[str, Range] = {"lr": POSITIVE, "weight_decay": NON_NEGATIVE}
    slot_names: tuple[str, ...] = ()
    # slots that only some hyperparameter values need (SGD's momentum_buffer, for momentum > 0):
    # the resume rule lets a change turn them on (from zeros, as torch's first step) or off
    optional_slots: tuple[str, ...] = ()
    elementwise = True          # each element's update reads only that element of each buffer
    couple_weight_decay = True  # add wd * p to the gradient before the update (torch's L2 form)

    def __init__(self, params: FlatParams, lr: float, weight_decay: float = 0.0):
        if not isinstance(params, FlatParams):
            raise TypeError(f"params must be a FlatParams, not {type(params).__name__}")
        self.check("lr", lr)
        self.check("weight_decay", weight_decay)
        self.params = params
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.step_count = 0  # number of updates applied so far (torch's state["step"])
        self.slots: dict[str, FlatParams] = {name: params.zeros_like() for name in self.slot_names}
        self._tmp = np.empty_like(params.flat)
        self._gwd: np.ndarray | None = None  # g + wd * p, allocated on first use

    def step(self, grads: FlatParams, lr: float | None = None) -> None:
        """Apply one update in place to `params`; `lr`, if given, is used for this step only.

        `grads` (anything with a `flat` buffer of the parameters' layout) is read, never
        written. ValueError when its buffer does not match the parameters'.
        """
        g = grads.flat
        p = self.params.flat
        if g.shape != p.shape or g.dtype != p.dtype:
            raise ValueError(
                f"gradient buffer ({g.shape[0]} x {g.dtype}) does not match the parameters "
                f"({p.shape[0]} x {p.dtype}); build both from the same FlatParams layout")
        self.step_count += 1
        if self.weight_decay and self.couple_weight_decay:
            if self._gwd is None:
                self._gwd = np.empty_like(p)
            np.multiply(p, self.weight_decay, out=self._gwd)
            np.add(self._gwd, g, out=self._gwd)
            g = self._gwd
        self._update(g, float(self.lr if lr is None else lr))

    def _update(self, g: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    @classmethod
    def check(cls, key: str, value: float) -> None:
        """ValueError when a hyperparameter is outside its declared interval."""
        if not cls.hyperparameters[key].contains(value):
            raise ValueError(f"{key} must be {cls.hyperparameters[key].describe()}, got {value}")

    @classmethod
    def build(cls, params: FlatParams, **hyper) -> Optimizer:
        """The optimizer from its hyperparameters by their config keys (those not given take
        the class's defaults)."""
        return cls(params, **hyper)

    def part(self, part: slice) -> Optimizer:
        """This optimizer over `part` of its flat buffers (parameters, slots, scratch), in the
        same memory: its step updates exactly that part, as the whole one's step would there.
        Only for an element-wise update; for stepping only (no state_dict)."""
        if not self.elementwise:
            raise ValueError(f"{self.name}'s update is not element-wise: it has no parts")
        view = copy.copy(self)
        view.params = _Part(self.params.flat[part])
        view.slots = {name: _Part(slot.flat[part]) for name, slot in self.slots.items()}
        view._tmp = self._tmp[part]
        view._gwd = None                      # its own scratch, of the part's size, on first use
        return view

    def state_dict(self) -> dict:
        """`{"step": int, "slots": {slot: {param name: array copy}}}`, sharing no memory."""
        return {"step": self.step_count,
                "slots": {name: slot.to_dict() for name, slot in self.slots.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()` exactly; a mismatch raises ValueError and changes nothing."""
        kind = type(self).__name__
        if not isinstance(state, dict) or set(state) != {"step", "slots"}:
            raise ValueError(f"{kind} state must be a dict with keys 'step' and 'slots'")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"{kind} state 'step' must be a non-negative integer, not {step!r}")
        slots = {name: arrays for name, arrays in state["slots"].items()
                 if name in self.slots or name not in self.optional_slots}
        fresh = set(self.slots) - set(slots)         # optional slots this state has not got
        if set(slots) - set(self.slots) or fresh - set(self.optional_slots):
            raise ValueError(
                f"{kind} state has slots {sorted(slots)} but {kind} needs {sorted(self.slots)}; "
                f"was it saved by a different optimizer or with different settings?")
        for slot_name, arrays in slots.items():
            shapes = self.slots[slot_name].shapes
            if set(arrays) != set(shapes):
                missing = sorted(set(shapes) - set(arrays))
                extra = sorted(set(arrays) - set(shapes))
                raise ValueError(f"{kind} slot {slot_name!r} parameter names differ from the "
                                 f"model's: missing {missing}, unexpected {extra}")
            for name, shape in shapes.items():
                got = tuple(np.shape(arrays[name]))
                if got != shape:
                    raise ValueError(f"{kind} slot {slot_name!r} has {name} of shape {got}, "
                                     f"but the model's {name} has shape {shape}")
        for slot_name, arrays in slots.items():
            self.slots[slot_name].copy_from(arrays)
        for slot_name in fresh:
            self.slots[slot_name].flat[...] = 0
        self.step_count = int(step)


class SGD(Optimizer):
    """Stochastic gradient descent with optional heavy-ball momentum (torch.optim.SGD).

        g   <- g + wd * p                      (if wd)
        buf <- momentum * buf + g              (if momentum; buf starts at 0, so step 1 gives g)
        p   <- p - lr * buf                    (p - lr * g without momentum)
    """

    name = "sgd"
    hyperparameters = {**Optimizer.hyperparameters, "momentum": UNIT_OPEN_RIGHT}
    optional_slots = ("momentum_buffer",)

    def __init__(self, params: FlatParams, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        self.check("momentum", momentum)
        self.momentum = float(momentum)
        self.slot_names = ("momentum_buffer",) if self.momentum else ()
        super().__init__(params, lr, weight_decay)

    def _update(self, g, lr):
        p, s = self.params.flat, self._tmp
        if self.momentum:
            buf = self.slots["momentum_buffer"].flat
            np.multiply(buf, self.momentum, out=buf)
            np.add(buf, g, out=buf)
            g = buf
        np.multiply(g, lr, out=s)
        np.subtract(p, s, out=p)


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad with lr_decay=0, initial_accumulator_value=0).

        g   <- g + wd * p                      (if wd)
        sum <- sum + g^2
        p   <- p - lr * g / (sqrt(sum) + eps)
    """

    name = "adagrad"
    hyperparameters = {**Optimizer.hyperparameters, "eps": POSITIVE}
    slot_names = ("sum",)

    def __init__(self, params: FlatParams, lr: float, eps: float = 1e-10,
                 weight_decay: float = 0.0):
        self.check("eps", eps)
        self.eps = float(eps)
        super().__init__(params, lr, weight_decay)

    def _update(self, g, lr):
        s, acc = self._tmp, self.slots["sum"].flat
        np.multiply(g, g, out=s)
        np.add(acc, s, out=acc)
        _divided_step(self.params.flat, g, acc, s, self.eps, lr)


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop, not centered, no momentum).

        g <- g + wd * p                        (if wd)
        v <- alpha * v + (1 - alpha) * g^2     (slot square_avg)
        p <- p - lr * g / (sqrt(v) + eps)
    """

    name = "rmsprop"
    hyperparameters = {**Optimizer.hyperparameters, "alpha": UNIT_OPEN_RIGHT, "eps": POSITIVE}
    slot_names = ("square_avg",)

    def __init__(self, params: FlatParams, lr: float, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.check("alpha", alpha)
        self.check("eps", eps)
        self.alpha, self.eps = float(alpha), float(eps)
        super().__init__(params, lr, weight_decay)

    def _update(self, g, lr):
        s, v = self._tmp, self.slots["square_avg"].flat
        np.multiply(g, g, out=s)
        np.multiply(s, 1.0 - self.alpha, out=s)
        np.multiply(v, self.alpha, out=v)
        np.add(v, s, out=v)
        _divided_step(self.params.flat, g, v, s, self.eps, lr)


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient (torch.optim.Adam, amsgrad=False).

        g   <- g + wd * p                      (if wd)
        m   <- b1 * m + (1 - b1) * g           (slot exp_avg; computed as m + (1-b1)(g - m))
        v   <- b2 * v + (1 - b2) * g^2         (slot exp_avg_sq)
        bc1 = 1 - b1^t,  bc2 = 1 - b2^t
        p   <- p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)

    The last line runs as p - (lr sqrt(bc2) / bc1) * m / (sqrt(v) + eps sqrt(bc2)): the same
    value (eps is still added to the bias-corrected sqrt(v_hat)), one pass fewer.
    """

    name = "adam"
    hyperparameters = {**Optimizer.hyperparameters, "beta1": UNIT_OPEN_RIGHT,
                       "beta2": UNIT_OPEN_RIGHT, "eps": POSITIVE}
    slot_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: FlatParams, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.check("beta1", betas[0])
        self.check("beta2", betas[1])
        self.check("eps", eps)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        super().__init__(params, lr, weight_decay)

    @classmethod
    def build(cls, params: FlatParams, beta1: float = 0.9, beta2: float = 0.999, **hyper) -> Adam:
        return cls(params, betas=(beta1, beta2), **hyper)

    def _update(self, g, lr):
        p, s = self.params.flat, self._tmp
        m, v = self.slots["exp_avg"].flat, self.slots["exp_avg_sq"].flat
        b1, b2 = self.betas
        t = self.step_count
        bc1 = 1.0 - b1 ** t
        bc2_sqrt = math.sqrt(1.0 - b2 ** t)
        np.subtract(g, m, out=s)             # m += (1 - b1) * (g - m)
        np.multiply(s, 1.0 - b1, out=s)
        np.add(m, s, out=m)
        np.multiply(g, g, out=s)             # v = b2 * v + (1 - b2) * g^2
        np.multiply(s, 1.0 - b2, out=s)
        np.multiply(v, b2, out=v)
        np.add(v, s, out=v)
        np.sqrt(v, out=s)                    # p -= step * m / (sqrt(v) + eps')
        np.add(s, self.eps * bc2_sqrt, out=s)
        np.divide(m, s, out=s)
        np.multiply(s, lr * bc2_sqrt / bc1, out=s)
        np.subtract(p, s, out=p)


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW).

        p <- p * (1 - lr * wd)                 (before the Adam update; g is left unchanged)
        then Adam's update above without the L2 term.
    """

    name = "adamw"
    couple_weight_decay = False

    def __init__(self, params: FlatParams, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)

    def _update(self, g, lr):
        if self.weight_decay:
            p = self.params.flat
            np.multiply(p, 1.0 - lr * self.weight_decay, out=p)
        super()._update(g, lr)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Adagrad, RMSprop, Adam, AdamW)}     # a new one: its class here


def make_optimizer(name: str | None, params: FlatParams, train_cfg) -> Optimizer:
    """Build the optimizer `name` (None: `train_cfg.optimizer`) from the train config's values
    of its hyperparameters; one that is missing or None takes the optimizer's own (torch)
    default. ValueError for an unknown name or a value outside its interval."""
    name = train_cfg.optimizer if name is None else name
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    hyper = {key: getattr(train_cfg, key, None) for key in cls.hyperparameters}
    return cls.build(params, **{key: v for key, v in hyper.items() if v is not None})


def hyperparameter_ranges() -> dict[str, Range]:
    """{config key: interval} of every registered optimizer's hyperparameters (config.py's
    checks). ValueError when two optimizers declare one key with different intervals."""
    ranges: dict[str, Range] = {}
    for cls in OPTIMIZERS.values():
        for key, rng in cls.hyperparameters.items():
            if ranges.setdefault(key, rng) != rng:
                raise ValueError(f"train.{key} has two intervals: {ranges[key]} and {rng}")
    return ranges


def flatten_state(state: dict) -> tuple[dict[str, np.ndarray], dict]:
    """Split `Optimizer.state_dict()` into checkpoint tensors `optim.<slot>.<param>` and scalars."""
    tensors = {f"optim.{slot}.{name}": array
               for slot, arrays in state["slots"].items() for name, array in arrays.items()}
    return tensors, {"step": int(state["step"])}


def unflatten_state(tensors: dict[str, np.ndarray], scalars: dict) -> dict:
    """Inverse of `flatten_state`; tensors whose names do not start with `optim.` are ignored."""
    if "step" not in scalars:
        raise ValueError("optimizer scalars lack 'step'; the checkpoint's state is incomplete")
    slots: dict[str, dict[str, np.ndarray]] = {}
    for key, array in tensors.items():
        if not key.startswith("optim."):
            continue
        parts = key.split(".", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise ValueError(f"optimizer tensor {key!r} is not named optim.<slot>.<param>")
        slots.setdefault(parts[1], {})[parts[2]] = array
    return {"step": int(scalars["step"]), "slots": slots}


def clip_grad_norm(grads: FlatParams, max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most `max_norm`.

    As torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when coef < 1.
    Returns the norm before clipping (inf / nan if the gradients are not finite; then they are
    scaled as torch would, and the caller should skip the step).
    """
    norm = grads.norm()
    coef = clip_coefficient(norm, max_norm)
    if coef < 1.0:
        np.multiply(grads.flat, coef, out=grads.flat)
    return norm


def clip_coefficient(norm: float, max_norm: float) -> float:
    """What clipping to `max_norm` scales a gradient of L2 norm `norm` by, when below 1 (as
    torch.nn.utils.clip_grad_norm_: max_norm / (norm + 1e-6))."""
    return max_norm / (norm + 1e-6)


def clip_grad_value(grads: FlatParams, value: float) -> None:
    """Clamp every gradient element to [-value, value] in place."""
    np.clip(grads.flat, -value, value, out=grads.flat)


class _Part:
    """A bare flat buffer: all that a step reads of a FlatParams (Optimizer.part)."""

    def __init__(self, flat: np.ndarray):
        self.flat = flat
