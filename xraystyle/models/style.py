"""Style codes: s = F(z, y) (latent-guided) or s = E(x_ref, y) (reference-guided).

With ``model.normal_style: fixed`` the "normal" target (the empty finding set) is one-directional:
every row marked ``fixed`` gets the deterministic style F(0, y) whatever its latent code or
reference, so removing a finding has one answer and no diversity to spend on exposure.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def style_code(nets: Mapping[str, nn.Module], y: torch.Tensor, *, z: torch.Tensor | None = None,
               x_ref: torch.Tensor | None = None, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """The style for target ``y`` from exactly one of ``z`` and ``x_ref``; rows where the bool
    (B,) mask ``fixed`` is True get F(0, y) instead."""
    if (z is None) == (x_ref is None):
        raise ValueError("give exactly one of z and x_ref")
    s = nets["F"](z, y) if z is not None else nets["E"](x_ref, y)
    if fixed is None:
        return s
    z0 = torch.zeros(len(s), nets["F"].latent_dim, device=s.device, dtype=z.dtype if z is not None else torch.float32)
    # torch.where, not indexing: no host sync and static shapes under torch.compile / CUDA graphs.
    return torch.where(fixed.to(s.device).view(-1, 1), nets["F"](z0, y).to(s.dtype), s)
