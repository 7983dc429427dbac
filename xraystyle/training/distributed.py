"""Data-parallel training under torchrun: process group setup and gradient averaging.

GAN training runs several forward/backward passes per network per step and a double
backward for R1, which ``DistributedDataParallel``'s one-forward-one-backward reducer does not
fit. As in NVIDIA's StyleGAN training code we keep plain modules and average the gradients of
the networks being updated ourselves, in one flattened all-reduce per update.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when launched by torchrun, else single-process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local)


def make_grad_sync(info: DistInfo):
    """A function averaging the given parameters' gradients over ranks (None when single)."""
    if info.world <= 1:
        return None

    def sync(params: Iterable[nn.Parameter]) -> None:
        params = [p for p in params if p.requires_grad]
        for p in params:
            if p.grad is None:  # a rank that did not touch p still has to join the reduction
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= info.world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    return sync


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if it is True on any rank (e.g. a stop signal seen by one process)."""
    if info.world <= 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def shutdown(info: DistInfo) -> None:
    if info.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
