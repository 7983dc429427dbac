"""Robust intensity window to [-1, 1] over real (non-padding) pixels, and the 16-bit export map.

Percentiles rather than min/max because radiographs carry burned-in markers, collimator edges
and detector padding whose extreme values would otherwise squash the anatomy into a few grey
levels. Padding (``valid_mask`` False) and non-finite pixels never enter the statistics and
come out as -1 (air/black).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, Transform

from ._types import Array, as_tensor, like

log = logging.getLogger(__name__)

# Ranges narrower than this (relative to the values' magnitude, at least 1) count as constant.
_FLAT = 1e-6
# Above this many valid pixels the percentiles come from an even subsample: exact percentiles
# of a 2048x2048 image cost ~50 ms (most of the per-image budget) and 2**20 samples pin the
# 0.5th percentile's rank to about +-0.01 percentile points.
_MAX_SAMPLES = 2**20


def window_limits(image: Array, valid_mask: Array | None = None, lower: float = 0.5,
                  upper: float = 99.5) -> tuple[float, float] | None:
    """Intensities at the ``lower``/``upper`` percentiles of the valid, finite pixels.

    Images with more than 2**20 valid pixels use an evenly strided subsample of them.
    Falls back to min/max when the two percentiles coincide but the image is not flat (a small
    bright marker on a uniform field); returns None when the valid pixels are constant or absent.
    """
    a = _numpy(image)
    return _limits(a, _valid(a, valid_mask), lower, upper)


def apply_window(image: Array, limits: tuple[float, float] | None, valid_mask: Array | None = None) -> Array:
    """Map ``limits`` linearly to [-1, 1], clip, and set padding/non-finite pixels to -1.

    ``limits`` None (a constant image) gives all -1: no contrast means nothing to show, and
    -1 is also what padding becomes, so a blank frame looks like empty detector, never NaN.
    """
    return _window(image, limits, _valid(_numpy(image), valid_mask))


def robust_window(image: Array, valid_mask: Array | None = None, lower: float = 0.5,
                  upper: float = 99.5) -> tuple[Array, tuple[float, float] | None]:
    """Windowed image in [-1, 1] (same type and shape as ``image``) and the limits used."""
    a = _numpy(image)
    valid = _valid(a, valid_mask)
    limits = _limits(a, valid, lower, upper)
    if limits is None:
        log.warning("image has no contrast among its valid pixels: windowed to all -1")
    return _window(image, limits, valid), limits


def _numpy(image: Array) -> np.ndarray:
    return as_tensor(image).detach().cpu().numpy()  # zero-copy for numpy and CPU tensors


def _valid(a: np.ndarray, valid_mask: Array | None) -> np.ndarray | None:
    """Bool array of pixels that count (finite and not padding), or None when all count."""
    valid = np.isfinite(a)
    if valid_mask is not None:
        m = _numpy(valid_mask).astype(bool, copy=False)
        if not m.all():
            valid &= np.broadcast_to(m, a.shape)
    return None if valid.all() else valid


def _limits(a: np.ndarray, valid: np.ndarray | None, lower: float, upper: float) -> tuple[float, float] | None:
    values = a.ravel() if valid is None else a[valid]
    if values.size > _MAX_SAMPLES:
        values = values[::_stride(values.size, a.shape[-1])]
    if values.size == 0:
        return None
    lo, hi = (float(v) for v in np.percentile(values, [lower, upper]))
    if _flat(lo, hi):
        lo, hi = float(values.min()), float(values.max())
        if _flat(lo, hi):
            return None
    return lo, hi


def _window(image: Array, limits: tuple[float, float] | None, valid: np.ndarray | None) -> Array:
    x = as_tensor(image)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    if limits is None:
        return like(torch.full(x.shape, -1.0, dtype=dtype, device=x.device), image)
    lo, hi = limits
    # One allocation, then in place: this runs on full-resolution images in every worker.
    y = torch.sub(x.to(dtype), lo).mul_(2.0 / (hi - lo)).sub_(1.0).clamp_(-1.0, 1.0)
    if valid is not None:
        y.masked_fill_(~torch.from_numpy(valid).to(x.device), -1.0)
    return like(y, image)


def _stride(n: int, row: int) -> int:
    """Subsampling stride coprime with the row length, so successive rows are sampled at
    shifted columns and periodic vertical patterns (anti-scatter grid lines) cannot alias."""
    step = math.ceil(n / _MAX_SAMPLES)
    while math.gcd(step, row) != 1:
        step += 1
    return step


def _flat(lo: float, hi: float) -> bool:
    return hi - lo <= _FLAT * max(1.0, abs(lo), abs(hi))


class RobustWindow(Transform):
    """Percentile window to [-1, 1]; padding pixels (``valid_mask`` False) become -1."""

    def __init__(self, lower: float = 0.5, upper: float = 99.5):
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"need 0 <= lower < upper <= 100, got {lower} and {upper}")
        self.lower, self.upper = float(lower), float(upper)

    def __call__(self, img: Array, valid_mask: Array | None = None) -> Array:
        return robust_window(img, valid_mask, self.lower, self.upper)[0]


class RobustWindowd(MapTransform):
    """Dictionary form: windows ``keys`` using ``data[mask_key]`` when present.

    Records the modality-unit limits of the first key as ``data[window_key] = {"low", "high"}``
    (NaN for a constant image) so outputs can be mapped back to the original units.
    """

    def __init__(self, keys: Hashable | Sequence[Hashable] = "image", mask_key: str | None = "valid_mask",
                 lower: float = 0.5, upper: float = 99.5, window_key: str | None = "window",
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.window = RobustWindow(lower, upper)
        self.mask_key, self.window_key = mask_key, window_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        mask = d.get(self.mask_key) if self.mask_key else None
        for i, key in enumerate(self.key_iterator(d)):
            d[key], limits = robust_window(d[key], mask, self.window.lower, self.window.upper)
            if i == 0 and self.window_key:
                low, high = limits if limits is not None else (float("nan"), float("nan"))
                d[self.window_key] = {"low": low, "high": high}
        return d


def to_uint16(image: Array) -> np.ndarray:
    """[-1, 1] mapped linearly onto 0..65535 (air dark, bone bright), as written by ``convert``."""
    x = as_tensor(image).detach().cpu().numpy().astype(np.float64)
    return np.round((np.clip(x, -1.0, 1.0) + 1.0) * (65535.0 / 2.0)).astype(np.uint16)
