"""Identity preservation: how much of the patient survives translation, outside the finding.

SSIM (``skimage.metrics.structural_similarity``, full map, data range 2 for [-1, 1]) and mean
absolute difference between each output and its source, averaged over the pixels OUTSIDE the
finding region: the change a counterfactual is asked to make is not counted against it. The
region is the source's finding masks (``mask_<finding>``) and, where known, where the added
finding is expected (``region`` below); with neither, the whole image counts.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity


def identity_scores(outputs: torch.Tensor, sources: torch.Tensor,
                    keep: torch.Tensor | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-output (SSIM, L1) outside the finding region.

    ``outputs`` and ``sources``: (N, 1, S, S) in [-1, 1], paired row by row. ``keep``: bool
    (N, S, S) or (S, S), True where the pixel counts (outside the finding); None = all pixels.
    """
    out = outputs.detach().float().cpu().numpy()[:, 0]
    src = sources.detach().float().cpu().numpy()[:, 0]
    n, s = out.shape[0], out.shape[-1]
    if keep is None:
        keep_np = np.ones((n, s, s), bool)
    else:
        keep_np = np.broadcast_to(np.asarray(keep.cpu() if torch.is_tensor(keep) else keep, bool), (n, s, s))
    win = min(7, s if s % 2 else s - 1)
    ssim = np.empty(n)
    l1 = np.empty(n)
    for i in range(n):
        k = keep_np[i] if keep_np[i].any() else np.ones((s, s), bool)
        _, smap = structural_similarity(src[i], out[i], data_range=2.0, win_size=win, full=True)
        ssim[i] = float(smap[k].mean())
        l1[i] = float(np.abs(out[i] - src[i])[k].mean())
    return ssim, l1
