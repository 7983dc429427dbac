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

import math
from typing import Any

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


# --- style codes against known acquisition parameters (phantom cohorts) -----------------------

# Manifest columns of the phantom's drawn physics that survive pre-processing as intensity changes.
PHYSICS_COLUMNS = ("phys_exposure", "phys_contrast", "phys_gamma")


def cv_r2(features: np.ndarray, target: np.ndarray, folds: int = 5, alpha: float = 0.1, seed: int = 0) -> float:
    """Cross-validated R^2 of a ridge regression of ``target`` (N,) on ``features`` (N, D).

    Standardised features (train-fold statistics), a fixed ``alpha`` on the mean squared error
    scale, out-of-fold predictions: a code carrying nothing about the target scores ~0 (or
    below), not the in-sample fit a 64-dim code would always get. Rows with a missing target are
    left out. Hand-written: a dozen lines of numpy instead of scikit-learn's cross_val_predict +
    Ridge as a dependency.
    """
    x, t = np.asarray(features, np.float64), np.asarray(target, np.float64)
    x, t = x[np.isfinite(t)], t[np.isfinite(t)]
    n = len(t)
    if n < 2 * folds or np.ptp(t) == 0:
        return float("nan")
    order = np.random.default_rng(seed).permutation(n)
    pred = np.empty(n)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
        a, b = (x[train] - mu) / sd, (x[test] - mu) / sd
        ty = t[train].mean()
        w = np.linalg.solve(a.T @ a / len(train) + alpha * np.eye(a.shape[1]), a.T @ (t[train] - ty) / len(train))
        pred[test] = b @ w + ty
    return float(1.0 - ((t - pred) ** 2).sum() / ((t - t.mean()) ** 2).sum())


def image_descriptors(images: torch.Tensor) -> np.ndarray:
    """(N, 7) global intensity descriptors: mean, std and five percentiles of each image. What a
    regression can recover of the physics from the pre-processed image itself (the ceiling)."""
    x = images.detach().double().cpu().flatten(1)
    q = torch.quantile(x, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=x.dtype), dim=1).T
    return torch.cat([x.mean(1, keepdim=True), x.std(1, keepdim=True), q], dim=1).numpy()


def style_physics_leakage(styles: np.ndarray, descriptors: np.ndarray, physics: dict[str, np.ndarray]
                          ) -> dict[str, float]:
    """Per physics parameter: cross-validated R^2 from the style codes (``style_r2/<name>``) and
    from the images' intensity descriptors (``image_r2/<name>``, what is there to leak)."""
    out: dict[str, float] = {}
    for name, values in physics.items():
        short = name.removeprefix("phys_")
        out[f"style_r2/{short}"] = cv_r2(styles, values)
        out[f"image_r2/{short}"] = cv_r2(descriptors, values)
    return out


@torch.no_grad()
def style_physics_report(model, pools: dict, batch_size: int) -> dict[str, Any]:
    """Does the style encoder read the acquisition? :func:`style_physics_leakage` of E's style
    codes of real images (``pools``: domain -> ImageSet), per domain of a TrainedModel.
    Domains with the deterministic style are skipped: their codes are never used."""
    out: dict[str, Any] = {}
    dev = model.device
    for d, pool in pools.items():
        df = pool.manifest.df
        if len(pool) < 10 or not all(c in df.columns for c in PHYSICS_COLUMNS):
            continue
        y = torch.full((len(pool),), model.domains.index(d), dtype=torch.long)
        fixed = model.fixed(y[:1])
        if fixed is not None and bool(fixed.all()):
            out[d] = {"skipped": "deterministic style"}
            continue
        codes, desc = [], []
        for i in range(0, len(pool), batch_size):
            x = pool.batch(np.arange(i, min(i + batch_size, len(pool))))
            codes.append(model.nets["E"](x.to(dev), y[i:i + len(x)].to(dev)).float().cpu().numpy())
            desc.append(image_descriptors(x))
        phys = {c: df[c].to_numpy(np.float64) for c in PHYSICS_COLUMNS}
        out[d] = style_physics_leakage(np.concatenate(codes), np.concatenate(desc), phys)
    per = [v for v in out.values() if "skipped" not in v]
    if per:
        for kind in ("style_r2", "image_r2"):
            vals = [r[k] for r in per for k in r if k.startswith(kind + "/") and math.isfinite(r[k])]
            out[f"mean_{kind}"] = float(np.mean(vals)) if vals else float("nan")
    return out
