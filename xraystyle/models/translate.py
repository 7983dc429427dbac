"""Latent- and reference-guided translation: x_fake = G(x_src, s_trg), beside the networks.

Images are [-1, 1] tensors [B, C, H, W]; ``y_trg`` is whatever the conditioning takes (domain
indices for single-domain models, finding sets [B, K] for multi-label ones). Rows in ``fixed``
use the deterministic normal style (models/style.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .style import style_code


@torch.no_grad()
def translate_latent(nets: Mapping[str, nn.Module], x_src: torch.Tensor, y_trg: torch.Tensor,
                     z_trg: torch.Tensor, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """G(x_src, F(z_trg, y_trg))."""
    return nets["G"](x_src, style_code(nets, y_trg, z=z_trg, fixed=fixed)).clamp(-1, 1)


@torch.no_grad()
def translate_reference(nets: Mapping[str, nn.Module], x_src: torch.Tensor, x_ref: torch.Tensor,
                        y_trg: torch.Tensor, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """G(x_src, E(x_ref, y_trg))."""
    return nets["G"](x_src, style_code(nets, y_trg, x_ref=x_ref, fixed=fixed)).clamp(-1, 1)
