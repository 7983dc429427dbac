"""Aspect-preserving resize to a square canvas, padded with air (-1), and its exact undo.

Chest radiographs come in many aspect ratios (35x43 cm cassettes, portrait and landscape
detectors); stretching them to a square would distort the cardiothoracic ratio, so the long
side is scaled to ``size`` and the short side is padded symmetrically. Resampling uses
``torch.nn.functional.interpolate`` (bilinear, ``antialias=True``) rather than MONAI's
``Resize(anti_aliasing=True)``: MONAI pre-smooths with a large Gaussian and returns a
MetaTensor, measured at ~340 ms against ~4 ms for 2048x1700 -> 256 on one CPU thread, and this
runs per image in DataLoader workers. The triangle filter has non-negative weights, so [-1, 1]
inputs stay in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, Transform

from ._types import Array, as_tensor, like

PAD_VALUE = -1.0  # air / black in the pipeline's [-1, 1] units


def resize_pad_geometry(shape: Sequence[int], size: int) -> dict[str, Any]:
    """Where an ``(H, W)`` image lands on a ``size`` x ``size`` canvas.

    ``scale`` is ``size / max(H, W)``; ``resized_shape`` is the rounded size actually used
    (per-axis scales differ from ``scale`` by the rounding); ``pad`` is
    ``(top, bottom, left, right)`` in canvas pixels.
    """
    h, w = int(shape[-2]), int(shape[-1])
    if h < 1 or w < 1:
        raise ValueError(f"cannot resize an empty image of shape {tuple(shape)}")
    scale = size / max(h, w)
    rh, rw = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
    top, left = (size - rh) // 2, (size - rw) // 2
    return {
        "original_shape": (h, w),
        "resized_shape": (rh, rw),
        "scale": float(scale),
        "pad": (top, size - rh - top, left, size - rw - left),
        "size": int(size),
    }


def _resample(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear resample of the last two axes, anti-aliased when shrinking."""
    if tuple(x.shape[-2:]) == shape:
        return x
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    dtype = flat.dtype if flat.is_floating_point() else torch.float32
    out = F.interpolate(flat.to(dtype), size=shape, mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*lead, *shape)


def resize_pad(image: Array, size: int, *, mask: bool = False) -> tuple[Array, dict[str, Any]]:
    """Resize ``(..., H, W)`` so the long side is ``size`` and pad to ``size`` x ``size``.

    Images pad with -1; with ``mask=True`` the input is a bool valid-mask, resampled as a
    fraction and thresholded at 0.5, padded with False.
    """
    x = as_tensor(image)
    geometry = resize_pad_geometry(x.shape, size)
    top, bottom, left, right = geometry["pad"]
    if mask:
        if bool(x.all()):  # the usual case (no DICOM padding): nothing to resample
            y = torch.ones((*x.shape[:-2], *geometry["resized_shape"]), dtype=torch.bool, device=x.device)
        else:
            y = _resample(x.float(), geometry["resized_shape"]) >= 0.5
        y = F.pad(y, (left, right, top, bottom), value=False)
    else:
        y = _resample(x, geometry["resized_shape"])
        y = F.pad(y, (left, right, top, bottom), value=PAD_VALUE)
    return like(y, image), geometry


def undo_resize_pad(image: Array, geometry: Mapping[str, Any]) -> Array:
    """Crop the padding and resample back to ``geometry["original_shape"]``."""
    x = as_tensor(image)
    top, _, left, _ = (int(v) for v in geometry["pad"])
    rh, rw = (int(v) for v in geometry["resized_shape"])
    h, w = (int(v) for v in geometry["original_shape"])
    crop = x[..., top:top + rh, left:left + rw]
    return like(_resample(crop, (h, w)), image)


class ResizePad(Transform):
    """Aspect-preserving resize of a channel-first ``(C, H, W)`` image to ``(C, size, size)``."""

    def __init__(self, size: int = 256):
        if not 1 <= int(size):
            raise ValueError(f"size must be positive, got {size}")
        self.size = int(size)

    def __call__(self, img: Array) -> Array:
        return resize_pad(img, self.size)[0]


class ResizePadd(MapTransform):
    """Dictionary form: resizes ``keys`` (pad -1) and ``data[mask_key]`` (pad False) alike;
    image pixels whose resized mask is False are exactly -1.

    Records the geometry of the first key as ``data[geometry_key]`` (see
    :func:`resize_pad_geometry`) so :func:`undo_resize_pad` can map outputs back.
    """

    def __init__(self, keys: Hashable | Sequence[Hashable] = "image", size: int = 256,
                 mask_key: str | None = "valid_mask", geometry_key: str | None = "geometry",
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.size = ResizePad(size).size
        self.mask_key, self.geometry_key = mask_key, geometry_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        mask = None
        if self.mask_key and d.get(self.mask_key) is not None:
            d[self.mask_key] = resize_pad(d[self.mask_key], self.size, mask=True)[0]
            mask = as_tensor(d[self.mask_key])
        for i, key in enumerate(self.key_iterator(d)):
            d[key], geometry = resize_pad(d[key], self.size)
            if mask is not None and not bool(mask.all()):
                # Resampling blends padding into its neighbours; pixels that are padding after
                # the resize are set back to exactly -1 so "invalid" always means "air".
                x = as_tensor(d[key])
                d[key] = like(x.masked_fill(~mask.to(x.device), PAD_VALUE), d[key])
            if i == 0 and self.geometry_key:
                d[self.geometry_key] = geometry
        return d
