"""Exponential moving average of G, F, E (beta 0.999), one foreach kernel per network."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(net: nn.Module) -> nn.Module:
    ema = copy.deepcopy(net).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * net, for every parameter; buffers copied."""
    e_params = list(ema.parameters())
    n_params = [p.detach() for p in net.parameters()]
    torch._foreach_lerp_(e_params, n_params, 1.0 - beta)
    for eb, nb in zip(ema.buffers(), net.buffers()):
        eb.copy_(nb)
