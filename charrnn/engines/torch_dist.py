"""The torch engine's processes under torchrun: which streams are this rank's, and the few
collective calls a run needs (torch.distributed; gloo on the CPU, nccl on CUDA).

Shape key: B batch (all ranks), b = B / W streams of this rank, W world size, L layers, H hidden.

torchrun (`torchrun --nproc-per-node W -m charrnn train CONFIG`) starts W processes with RANK,
WORLD_SIZE and LOCAL_RANK in their environment. Each reads the same corpus and makes the same
batches; rank r takes streams [r b, (r + 1) b) of each, with their carried state, and
DistributedDataParallel averages the gradients. Every rank then holds the same gradient, clips
it alike and applies the same update, so the weights stay equal without being sent again.
Without WORLD_SIZE (or with 1) this is one process and nothing here talks to another.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from charrnn.errors import UsageError

LEAVE_SECONDS = 30     # how long a leaving rank waits for the others (engines' close)


class Ranks:
    """This process's place in the run: rank, world (W) and the batch rows it owns."""

    def __init__(self, batch_size: int, max_minutes):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1 and batch_size % self.world:
            raise UsageError(f"train.batch_size {batch_size} does not split over {self.world} "
                             f"processes; make it a multiple of {self.world} (or change "
                             f"--nproc-per-node)")
        if self.world > 1 and max_minutes is not None:
            raise UsageError("train.max_minutes would stop each process at its own step under "
                             "torchrun; use train.max_steps or train.max_epochs")
        self.rows = slice(self.rank * batch_size // self.world,
                          (self.rank + 1) * batch_size // self.world)
        self.started, self.device = False, torch.device("cpu")

    @property
    def many(self) -> bool:
        return self.world > 1

    def start(self, device: torch.device) -> None:
        """Join the process group (nccl on CUDA, else gloo), once."""
        if self.many and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.started = True
        self.device = device

    def mine(self, array):
        """This rank's rows of a [B, ...] array (or a reset: True / False pass through)."""
        return array if not self.many or isinstance(array, bool) else array[self.rows]

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of value over the ranks."""
        if self.many:
            dist.all_reduce(value)
        return value

    def gather_streams(self, part: torch.Tensor) -> torch.Tensor:
        """Every rank's [L, b, H] carried state as one [L, B, H], in rank order."""
        if not self.many:
            return part
        parts = [torch.empty_like(part) for _ in range(self.world)]
        dist.all_gather(parts, part.contiguous())
        return torch.cat(parts, dim=1)

    def any(self, flag: bool) -> bool:
        """Whether flag is True on any rank."""
        if not self.many:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def close(self) -> None:
        """Leave the process group; with gloo, first wait (at most LEAVE_SECONDS) until every
        rank is leaving: a rank that tears gloo down while a peer still talks to it aborts."""
        if self.started and dist.is_initialized():
            if dist.get_backend() == "gloo":
                try:
                    dist.monitored_barrier(timeout=datetime.timedelta(seconds=LEAVE_SECONDS))
                except RuntimeError:          # a rank died or stopped early: leave anyway
                    pass
            dist.destroy_process_group()
            self.started = False
