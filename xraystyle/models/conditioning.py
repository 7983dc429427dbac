"""How the domain label ``y`` reaches the mapping network, style encoder and discriminator.

StarGAN v2 gives each domain its own output head and picks one by index. That choice lives
here, behind :class:`ConditionedHead`, so the networks, losses and trainer never look inside
``y``: a single-domain run passes domain indices (LongTensor ``[B]``); the finding-set variant
passes multi-hot sets (FloatTensor ``[B, K]``) through another head with the same signature.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ParallelLinear(nn.Module):
    """``n`` independent linear layers applied to the same (or per-branch) input in one einsum.

    Equivalent to ``n`` separate ``nn.Linear`` modules, but one kernel launch instead of ``n``.
    """

    def __init__(self, n: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(n, out_features))
        # He (fan_in) init, as for every layer of the networks.
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / in_features))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # h: [B, in] (shared input) or [B, n, in] (per-branch input) -> [B, n, out]
        if h.dim() == 2:
            return torch.einsum("bi,nio->bno", h, self.weight) + self.bias
        return torch.einsum("bni,nio->bno", h, self.weight) + self.bias


class SingleDomainHead(nn.Module):
    """One MLP head per domain (``hidden`` ReLU layers, then a linear output); ``y`` picks one.

    All heads are evaluated together and the requested one gathered: with a handful of domains
    this costs little and keeps the graph free of data-dependent control flow (compilable).
    """

    def __init__(self, num_domains: int, in_features: int, out_features: int, hidden: int = 0,
                 width: int = 512):
        super().__init__()
        self.num_domains = num_domains
        layers: list[nn.Module] = []
        dim = in_features
        for _ in range(hidden):
            layers += [ParallelLinear(num_domains, dim, width), nn.ReLU()]
            dim = width
        layers.append(ParallelLinear(num_domains, dim, out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.layers(h)  # [B, num_domains, out]
        index = y.long().view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return out.gather(1, index).squeeze(1)


def make_head(kind: str, num_conditions: int, in_features: int, out_features: int,
              hidden: int = 0, width: int = 512) -> nn.Module:
    """Build the conditioned output head for ``kind`` ("single")."""
    if kind == "single":
        return SingleDomainHead(num_conditions, in_features, out_features, hidden, width)
    raise ValueError(f"unknown conditioning kind {kind!r}")
