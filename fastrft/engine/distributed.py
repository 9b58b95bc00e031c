"""DDP when launched by torchrun (RANK and WORLD_SIZE set), a single process otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fastrft.lifetime import die_with_parent


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_rank() -> int:
    """This process's rank as torchrun set it (RANK), 0 when not launched by torchrun."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device: str) -> Dist:
    """Join the process group torchrun set up (nccl on CUDA, gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if "TORCHELASTIC_RUN_ID" in os.environ:  # a torchrun worker: it dies with torchrun
        die_with_parent(os.getppid())
    rank, local = launched_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
    return Dist(rank, world, local)


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_state(module: torch.nn.Module, d: Dist) -> None:
    """Give every rank rank 0's parameters and buffers, in place."""
    if d.enabled:
        for t in module.state_dict().values():
            dist.broadcast(t, src=0)


def close_distributed(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
