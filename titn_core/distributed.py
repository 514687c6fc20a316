"""Data-parallel training across processes with PyTorch DDP, launched by `torchrun` (no launcher of our own).

    torchrun --nproc_per_node=8 -m titn_core train --dataset cifar10 --profile paper --teacher resnet18
    torchrun --nproc_per_node=2 -m titn_core train --dataset mnist --profile smoke   # CPU, gloo backend

Every process draws the same global batch (same seeded generator) and trains on its contiguous slice of it, so
N processes see exactly the images one process would, and DDP's gradient average over equal slices equals the
one-process gradient of the global batch. Evaluation splits the images across processes and sums the hit counts.
Only rank 0 writes checkpoints and results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import TITNError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, t: Tensor) -> Tensor:
        """This process's contiguous slice of a global batch (the whole batch when running alone)."""
        if not self.active:
            return t
        return t.tensor_split(self.world_size)[self.rank]

    def spread(self, t: Tensor) -> Tensor:
        """Every world_size-th row, for evaluation sets that need not divide evenly."""
        return t[self.rank :: self.world_size] if self.active else t

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Sum scalar statistics (loss sums, hit counts) over processes."""
        if not self.active or not values:
            return values
        keys = sorted(values)
        buf = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(buf)
        return dict(zip(keys, buf.tolist(), strict=True))

    def all_finite(self, loss: Tensor) -> bool:
        """True only if the loss is finite on every process, so all of them stop together, none hangs."""
        finite = torch.isfinite(loss.detach()).all()
        if not self.active:
            return bool(finite)
        flag = finite.to(torch.int32).cpu()
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        if not self.active:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world), device


def check_batch(ctx: Context, batch_size: int) -> None:
    if batch_size % ctx.world_size:
        raise TITNError(
            f"batch size {batch_size} does not split over {ctx.world_size} processes; "
            f"use --set train.batch_size=<multiple of {ctx.world_size}>"
        )
