"""Latent- and reference-guided translation with (EMA) networks.

Images are [-1, 1] tensors [B, C, H, W]; ``y_trg`` is whatever the conditioning takes
(domain indices for single-domain models).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


@torch.no_grad()
def translate_latent(nets: Mapping[str, nn.Module], x_src: torch.Tensor, y_trg: torch.Tensor,
                     z_trg: torch.Tensor) -> torch.Tensor:
    """G(x_src, F(z_trg, y_trg))."""
    return nets["G"](x_src, nets["F"](z_trg, y_trg)).clamp(-1, 1)


@torch.no_grad()
def translate_reference(nets: Mapping[str, nn.Module], x_src: torch.Tensor, x_ref: torch.Tensor,
                        y_trg: torch.Tensor) -> torch.Tensor:
    """G(x_src, E(x_ref, y_trg))."""
    return nets["G"](x_src, nets["E"](x_ref, y_trg)).clamp(-1, 1)
