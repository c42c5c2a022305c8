"""The torch engine: a run's steps computed by PyTorch (CPU, CUDA or MPS), behind
engines/base.py's Engine, so the loop, the checkpoints and every command are the numpy engine's.

Shape key: B batch, T time, V vocabulary, L layers, H hidden.

The model is engines/torch_model.py's (torch.nn.Embedding + RNN / GRU / LSTM + Linear, or one
module a layer with the optional blocks and for the min cells). The optimizer is torch.optim's
class of the same name as charrnn's (charrnn/optim.py: SGD, Adagrad, RMSprop, Adam, AdamW),
with the hyperparameters charrnn resolves from the config; clipping is
torch.nn.utils.clip_grad_norm_ / clip_grad_value_; the rate of each update comes from the loop.
Weights and optimizer state leave as NumPy arrays under the checkpoint's names (state()), so a
run may be resumed on either engine: float64 runs on both agree to about 1e-12 relative
(tests/test_torch_engine.py).

Dropout masks are torch's (torch.nn.LSTM(dropout=p), torch.nn.Dropout), seeded at each step
from the run's dropout generator: a resumed run on the CPU draws the same masks; they are not
the numpy engine's masks.

Under torchrun the B streams of a batch are split over the processes (engines/torch_dist.py):
DistributedDataParallel averages the gradients, rank 0 alone writes (`writer`), and every rank
stops at the same step (`agree`).

PyTorch is imported here (and in torch_model.py and torch_dist.py, which only this module
imports): the numpy engine and `charrnn --help` never load it.
"""

from __future__ import annotations

import os

import numpy as np

from charrnn.engines.base import Clip, EngineState, StepFigures
from charrnn.errors import UsageError
from charrnn.nn.model import CharRNN
from charrnn.nn.params import FlatParams
from charrnn.optim import Optimizer, make_optimizer, unflatten_state

# PyTorch's OpenMP threads spin while they wait for each other; on a CPU shared with other
# work (or another run) a spinning thread holds the core its partner needs, and a step took
# ten times longer (docs/torch.md). Passive waiting unless the user chose otherwise; read by
# the OpenMP runtime when torch loads, so it is set before.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch
except ImportError:
    raise UsageError("train.engine torch needs PyTorch, which is not installed here; "
                     "pip install 'charrnn[torch]', or use train.engine numpy") from None

from charrnn.engines.torch_dist import Ranks  # noqa: E402
from charrnn.engines.torch_model import STACKED, TorchCharRNN  # noqa: E402

CELLS = (*STACKED, "mingru", "minlstm")     # the cells torch_model.py has a module for


def resolve_device(name: str) -> torch.device:
    """train.device as a torch.device: auto is cuda when PyTorch sees one, else cpu.
    UsageError for a device this machine lacks."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name[5:] or 0)
        if index >= count:
            raise UsageError(f"train.device {name}: PyTorch sees {count} CUDA device(s) here; "
                             f"use train.device cpu (or auto)")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UsageError("train.device mps: PyTorch has no MPS device here; use train.device cpu")
    return torch.device(name)


def resolved_optimizer(train_cfg) -> Optimizer:
    """charrnn's optimizer of train_cfg over one dummy parameter: its hyperparameters, resolved
    and range-checked as the numpy engine's are."""
    return make_optimizer(None, FlatParams({"x": (1,)}, np.float64), train_cfg)


def torch_optimizer(spec: Optimizer, params) -> torch.optim.Optimizer:
    """torch.optim's optimizer of the same name as spec's class, with its hyperparameters
    (torch's defaults for the rest: no amsgrad, nesterov, dampening, centered or lr_decay)."""
    kind = type(spec).__name__
    if kind not in ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW"):
        raise UsageError(f"train.engine torch has no torch.optim counterpart of optimizer "
                         f"{kind}; use train.engine numpy")
    kw = {"lr": spec.lr, "weight_decay": spec.weight_decay}
    if kind == "SGD":
        kw["momentum"] = spec.momentum
    elif kind == "RMSprop":
        kw.update(alpha=spec.alpha, eps=spec.eps)
    elif kind == "Adagrad":
        kw["eps"] = spec.eps
    else:
        kw.update(betas=spec.betas, eps=spec.eps)
    return getattr(torch.optim, kind)(params, **kw)


def total_norm(grads) -> float:
    """The L2 norm of all gradients together (torch.nn.utils.clip_grad_norm_'s)."""
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                       for g in grads])))


class TorchEngine:
    """engines/base.py's Engine on PyTorch. UsageError (before anything is written) for a cell
    without a torch module, a device this machine lacks, or float64 on MPS."""

    workers = 1

    def __init__(self, model: CharRNN, train_cfg, saved_workers: int | None = None):
        if model.cell not in CELLS:
            raise UsageError(f"train.engine torch has no module for model.cell {model.cell}; "
                             f"use train.engine numpy (torch runs {', '.join(CELLS)})")
        self.ranks = Ranks(train_cfg.batch_size, train_cfg.max_minutes)
        self.writer = self.ranks.rank == 0
        self.device = resolve_device(train_cfg.device)
        if self.ranks.many and self.device.type == "cuda" and train_cfg.device in ("auto", "cuda"):
            self.device = torch.device("cuda", self.ranks.local)       # torchrun: one GPU a rank
        if self.device.type == "mps" and model.dtype == np.float64:
            raise UsageError("train.device mps has no float64; set train.dtype=float32")
        if self.device.type == "cpu" and train_cfg.threads is not None:
            torch.set_num_threads(train_cfg.threads)
        self.model, self.dtype = model, getattr(torch, model.dtype.name)
        self.net = TorchCharRNN(model.vocab_size, model.spec).to(self.device, self.dtype)
        self.params = self._named(self.net.checkpoint_params())
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(torch.from_numpy(model.params[name]))
        self.ranks.start(self.device)
        self.step_net = (torch.nn.parallel.DistributedDataParallel(
            self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.ranks.many else self.net)
        self.train_cfg, self.spec = train_cfg, resolved_optimizer(train_cfg)
        self.optimizer = torch_optimizer(self.spec, list(self.params.values()))
        self.updates = 0                      # optimizer steps so far (the checkpoint's "step")
        self.carry: tuple | None = None       # [L, B, H] tensors the last update left
        self._next = None
        self._synced = True                   # self.model holds the current weights

    def _named(self, params: dict) -> dict:
        """params in the checkpoint's order (model.params'); ValueError if the names differ."""
        if set(params) != set(self.model.params.names()):
            raise ValueError(f"the torch model's parameters {sorted(params)} are not charrnn's "
                             f"{sorted(self.model.params.names())}")
        return {name: params[name] for name in self.model.params.names()}

    # -- a step ------------------------------------------------------------------------------

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def _start_state(self, reset, batch: int) -> tuple:
        """The carried state with `reset` applied (engines/base.py's carried), as tensors."""
        if reset is True or self.carry is None:
            shape = (self.model.layers, batch, self.model.hidden_size)
            return tuple(torch.zeros(shape, dtype=self.dtype, device=self.device)
                         for _ in self.model.cell_module.STATE)
        if reset is False or not reset.any():
            return self.carry
        keep = self._tensor(~reset).to(self.dtype)[None, :, None]
        return tuple(part * keep for part in self.carry)

    def gradient(self, ids, targets, reset, rng, clip: Clip) -> StepFigures:
        self.net.train()
        if self.net.p > 0:                    # masks from the run's generator: resumes exactly
            torch.manual_seed(int(rng.integers(2 ** 62)) + self.ranks.rank)
        scored = max(int(np.count_nonzero(targets >= 0)), 1)   # documents: PAD (-1) is not
        ids, targets, reset = (self.ranks.mine(a) for a in (ids, targets, reset))
        state = self._start_state(reset, ids.shape[0])
        self.optimizer.zero_grad(set_to_none=False)
        logits, final = self.step_net(self._tensor(ids.T), state)
        total = torch.nn.functional.cross_entropy(      # this rank's share of the batch's sum
            logits.reshape(-1, logits.shape[-1]), self._tensor(targets.T).reshape(-1),
            ignore_index=-1, reduction="sum")
        (total * (self.ranks.world / scored)).backward()   # DDP averages over the W ranks
        self._next = tuple(part.detach() for part in final)
        loss = self.ranks.total(total.detach()) / scored
        return StepFigures(loss.item(), self._clip(clip))

    def _clip(self, clip: Clip) -> float:
        """Clip the gradients as clip says -> their norm (by value: of the clamped ones)."""
        params = list(self.params.values())
        if clip.kind == "value":
            torch.nn.utils.clip_grad_value_(params, clip.value)
        if clip.kind == "norm":
            return float(torch.nn.utils.clip_grad_norm_(params, clip.value))
        return total_norm([p.grad for p in params])

    def update(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.updates += 1
        self.carry, self._synced = self._next, False

    # -- the run's state as NumPy ------------------------------------------------------------

    def inference_model(self) -> CharRNN:
        if not self._synced:
            self.model.params.copy_from({name: p.detach().cpu().numpy()
                                         for name, p in self.params.items()})
            self._synced = True
        return self.model

    def state(self) -> EngineState:
        params = dict(self.inference_model().params.items())
        optim = {}
        for slot in self.spec.slot_names:
            for name, p in self.params.items():
                saved = self.optimizer.state.get(p, {}).get(slot)
                optim[f"optim.{slot}.{name}"] = (np.zeros_like(params[name]) if saved is None
                                                 else saved.detach().cpu().numpy().copy())
        carry = tuple(self.ranks.gather_streams(part).cpu().numpy() for part in self.carry or ())
        return EngineState(params, optim, {"step": self.updates}, carry)

    def restore(self, optim, optim_scalars, carry) -> None:
        saved = self._checked(unflatten_state(optim, optim_scalars))
        step = saved["step"]
        for name, p in self.params.items():
            entry = {slot: self._tensor(np.asarray(arrays[name])).to(self.dtype)
                     for slot, arrays in saved["slots"].items()}
            if type(self.spec).__name__ != "SGD":          # torch.optim's count, on the CPU
                entry["step"] = torch.tensor(float(step), dtype=torch.float32)
            self.optimizer.state[p] = entry
        self.updates = step
        self.carry = tuple(self._tensor(np.asarray(c)[:, self.ranks.rows]).to(self.dtype)
                           for c in carry) or None

    def _checked(self, state: dict) -> dict:
        """A checkpoint's optimizer state as charrnn's optimizer takes it (charrnn/optim.py's
        load_state_dict: the same ValueError for what does not fit, an optional slot the
        state lacks as zeros, one this optimizer lacks dropped)."""
        numpy_optimizer = make_optimizer(None, self.model.params, self.train_cfg)
        numpy_optimizer.load_state_dict(state)
        return numpy_optimizer.state_dict()

    def worker_memory_mb(self) -> list:
        """No worker processes (charrnn bench asks)."""
        return []

    def agree(self, flag: bool) -> bool:
        return self.ranks.any(flag)

    def close(self) -> None:
        self.ranks.close()


ENGINE = TorchEngine
