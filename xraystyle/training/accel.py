"""Execution settings: what "reference" and "fast" mean on a given device.

``reference`` is the paper's arithmetic as written: fp32, eager, plain Adam. ``fast`` keeps the
same losses and update rule but runs forward passes under bf16 autocast, in channels_last
memory layout, with torch.compile'd generator / style encoder / mapping network and fused
Adam; the discriminator's real-image pass (which carries the R1 double backward) stays eager
and in fp32, so R1 is exact. ``auto`` = fast on CUDA, reference elsewhere.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Accel:
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False
    fused_optim: bool = False
    prefetch: int = 0

    @property
    def name(self) -> str:
        return "fast" if (self.amp_dtype or self.compile or self.channels_last) else "reference"

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import ConfigError

        raise ConfigError("--device cuda: CUDA is not available on this machine")
    return torch.device(name)


def make_accel(mode: str, device: torch.device) -> Accel:
    if mode == "auto":
        mode = "fast" if device.type == "cuda" else "reference"
    if mode == "reference":
        return Accel(device, prefetch=2 if device.type == "cuda" else 0)
    cuda = device.type == "cuda"
    # On CPU, "fast" keeps to what helps there (compile); bf16 autocast is slower on most CPUs.
    return Accel(device, amp_dtype=torch.bfloat16 if cuda else None, channels_last=cuda,
                 compile=True, fused_optim=cuda, prefetch=2 if cuda else 0)


def compiled(net: nn.Module, accel: Accel) -> nn.Module:
    return torch.compile(net, dynamic=False) if accel.compile else net
