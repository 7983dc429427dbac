"""Physics leakage: does a style change the acquisition (exposure, contrast) instead of, or on
top of, the finding?

Global exposure is the mean and global contrast the standard deviation of an image's pixels
(outside the finding region when one is known, so the finding's own brightening is not
counted). For one source and its K styles we take the spread (standard deviation) of each
statistic across the styles, and the change from source to output; both are reported next to
the same statistic's spread across real images of the target domain, the variation the data
itself has. A style spread close to the real spread means the style code carries exposure.
"""

from __future__ import annotations

import numpy as np
import torch


def global_stats(images: torch.Tensor, keep: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
    """(N, 2): mean and std of each image (N, 1, S, S), over ``keep`` pixels ((N|1, S, S) bool)."""
    x = images.detach().double().cpu()[:, 0]
    if keep is None:
        w = torch.ones_like(x)
    else:
        k = torch.as_tensor(np.asarray(keep.cpu() if torch.is_tensor(keep) else keep, bool))
        w = k.expand_as(x).double()
        empty = w.sum(dim=(1, 2)) == 0
        w[empty] = 1.0
    n = w.sum(dim=(1, 2))
    mean = (x * w).sum(dim=(1, 2)) / n
    var = (((x - mean[:, None, None]) ** 2) * w).sum(dim=(1, 2)) / n
    return torch.stack([mean, var.sqrt()], dim=1).numpy()


def style_spread(stats: np.ndarray) -> np.ndarray:
    """stats (N, K, 2) -> (N, 2): std across the K styles of each source."""
    return stats.std(axis=1)


def leakage_summary(out_stats: np.ndarray, src_stats: np.ndarray, real_stats: np.ndarray | None) -> dict[str, float]:
    """out_stats (N, K, 2), src_stats (N, 2), real_stats (M, 2) of the target domain."""
    spread = style_spread(out_stats).mean(axis=0)
    delta = out_stats - src_stats[:, None, :]
    res = {
        "exposure_style_spread": float(spread[0]),
        "contrast_style_spread": float(spread[1]),
        "exposure_shift": float(delta[..., 0].mean()),
        "exposure_shift_abs": float(np.abs(delta[..., 0]).mean()),
        "contrast_shift": float(delta[..., 1].mean()),
        "contrast_shift_abs": float(np.abs(delta[..., 1]).mean()),
    }
    if real_stats is not None and len(real_stats) >= 2:
        real = real_stats.std(axis=0)
        res["exposure_real_spread"] = float(real[0])
        res["contrast_real_spread"] = float(real[1])
        res["exposure_spread_ratio"] = float(spread[0] / real[0]) if real[0] > 0 else float("nan")
        res["contrast_spread_ratio"] = float(spread[1] / real[1]) if real[1] > 0 else float("nan")
    return res
