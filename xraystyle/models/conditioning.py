"""How the label ``y`` reaches the mapping network, style encoder and discriminator.

StarGAN v2 gives each domain its own output head and picks one by index. That choice lives
here, behind one head interface ``head(h, y) -> out``, so the networks, losses and trainer
never look inside ``y``:

- ``single``: ``y`` is a LongTensor ``[B]`` of domain indices; one MLP head per domain.
- ``set-additive``: ``y`` is a FloatTensor ``[B, K]`` over K findings with 1 (present),
  0 (absent) or NaN (unknown). The output is a base head plus, per finding, a "present" or
  an "absent" component; unknown findings contribute nothing, so an unknown label is never
  read as a negative. Components add up, so a combination never seen in training is still
  defined (the sum of its parts). For the discriminator this is a real/fake head per finding.
- ``set-film``: the same ``y`` is embedded by an MLP into a set code that modulates the
  features (FiLM: ``h * (1 + gamma) + beta``) before a shared MLP head; interactions
  between findings can be learned, at the price of weaker compositional structure.

docs/multilabel.md compares the two set designs on the phantom (set-additive is the default).
"""

from __future__ import annotations

import math

import torch
from torch import nn

KINDS = ("single", "set-additive", "set-film")


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


def _parallel_mlp(n: int, in_features: int, out_features: int, hidden: int, width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = in_features
    for _ in range(hidden):
        layers += [ParallelLinear(n, dim, width), nn.ReLU()]
        dim = width
    layers.append(ParallelLinear(n, dim, out_features))
    return nn.Sequential(*layers)


def split_set(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(present, absent) indicator tensors of a finding set with NaN = unknown (both 0)."""
    known = ~torch.isnan(y)
    present = torch.where(known, y, torch.zeros_like(y))
    absent = torch.where(known, 1.0 - y, torch.zeros_like(y))
    return present, absent


class SingleDomainHead(nn.Module):
    """One MLP head per domain (``hidden`` ReLU layers, then a linear output); ``y`` picks one.

    All heads are evaluated together and the requested one gathered: with a handful of domains
    this costs little and keeps the graph free of data-dependent control flow (compilable).
    """

    def __init__(self, num_domains: int, in_features: int, out_features: int, hidden: int = 0,
                 width: int = 512):
        super().__init__()
        self.layers = _parallel_mlp(num_domains, in_features, out_features, hidden, width)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.layers(h)  # [B, num_domains, out]
        index = y.long().view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return out.gather(1, index).squeeze(1)


class AdditiveSetHead(nn.Module):
    """base(h) + sum_k [present_k * pos_k(h) + absent_k * neg_k(h)]; unknown findings add 0."""

    def __init__(self, num_findings: int, in_features: int, out_features: int, hidden: int = 0,
                 width: int = 512):
        super().__init__()
        self.layers = _parallel_mlp(1 + 2 * num_findings, in_features, out_features, hidden, width)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        present, absent = split_set(y.to(h.dtype))
        weights = torch.cat([torch.ones_like(present[:, :1]), present, absent], dim=1)
        return torch.einsum("bn,bno->bo", weights, self.layers(h))


class FiLMSetHead(nn.Module):
    """MLP(h * (1 + gamma(e)) + beta(e)) with e = embed(present, absent): a learned set code."""

    def __init__(self, num_findings: int, in_features: int, out_features: int, hidden: int = 0,
                 width: int = 512):
        super().__init__()
        emb = min(width, 256)
        self.embed = nn.Sequential(nn.Linear(2 * num_findings, emb), nn.ReLU(), nn.Linear(emb, emb), nn.ReLU())
        self.film = nn.Linear(emb, 2 * in_features)
        self.head = _parallel_mlp(1, in_features, out_features, hidden, width)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        present, absent = split_set(y.to(h.dtype))
        gamma, beta = self.film(self.embed(torch.cat([present, absent], dim=1))).chunk(2, dim=1)
        return self.head(h * (1 + gamma) + beta).squeeze(1)


def make_head(kind: str, num_conditions: int, in_features: int, out_features: int,
              hidden: int = 0, width: int = 512) -> nn.Module:
    """The conditioned output head for ``kind`` (see module docstring)."""
    heads = {"single": SingleDomainHead, "set-additive": AdditiveSetHead, "set-film": FiLMSetHead}
    if kind not in heads:
        raise ValueError(f"unknown conditioning kind {kind!r}; expected one of {KINDS}")
    return heads[kind](num_conditions, in_features, out_features, hidden, width)


def is_set_conditioning(kind: str) -> bool:
    return kind.startswith("set-")
