"""Soft histogram equalisation: the style encoder's view of an image that no increasing
grey-level map can change (issue #16: exposure, contrast and gamma must not become style).

Each pixel becomes its share of the image's pixels that are darker (the empirical CDF at its
value), computed from a fine histogram with linear bin assignment so that it stays differentiable
in the pixel values: the style reconstruction loss ``|E(G(x, s)) - s|`` needs gradients through
E's input. Any strictly increasing map f leaves the exact ranks unchanged; the binned CDF moves by
at most the mass of the bins a pixel falls between. Cost O(pixels), whatever the number of bins.
Hand-written: skimage's ``equalize_hist`` and MONAI's ``HistogramNormalize`` are numpy, not
differentiable.
"""

from __future__ import annotations

import torch

BINS = 512


def soft_equalize(x: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> the per-image, per-channel equalised image in [-1, 1]."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w).float()
    t = (flat.clamp(-1, 1) + 1) * (0.5 * (bins - 1))  # position on the bin grid
    lo = t.detach().floor().clamp(max=bins - 2)
    frac = t - lo  # linear assignment: differentiable in the pixel value
    idx = lo.long()
    hist = torch.zeros(b * c, bins, device=x.device, dtype=flat.dtype)
    hist = hist.scatter_add(1, idx, 1 - frac).scatter_add(1, idx + 1, frac) / (h * w)
    cdf = hist.cumsum(1) - 0.5 * hist  # mid-bin CDF: a pixel's own bin counts half
    rank = cdf.gather(1, idx) * (1 - frac) + cdf.gather(1, idx + 1) * frac
    return (2 * rank - 1).reshape(b, c, h, w).to(x.dtype)
