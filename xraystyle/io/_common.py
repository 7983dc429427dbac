"""Checks every reader shares: image size against ``max_pixels``, frame selection, grey channels,
and the pixel values of the decoded image (``check_pixel_values``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, UnsupportedImageError
from .meta import XrayMeta

DEFAULT_MAX_PIXELS = 100_000_000
# Value ranges narrower than this, relative to the values' magnitude (at least 1), count as
# constant: the same test the training window (transforms.intensity) applies before it maps
# an image to all -1, so what is refused here is exactly what would train as a black image.
_FLAT = 1e-6


def check_pixel_count(path: Path, rows: int, columns: int, max_pixels: int) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` pixels, before decoding."""
    if rows <= 0 or columns <= 0:
        raise InputError(path, f"invalid image size {rows} x {columns}")
    if rows * columns > max_pixels:
        raise UnsupportedImageError(
            path,
            f"image is {rows} x {columns} = {rows * columns} pixels, above max_pixels={max_pixels} "
            "(raise max_pixels if the file is trusted)",
        )


def check_single_frame(path: Path, frame: int | None) -> None:
    """Formats with one image accept ``frame=None`` or ``frame=0`` only."""
    if frame not in (None, 0):
        raise InputError(path, f"frame {frame} requested but the file holds a single image")


def grey_from_channels(path: Path, arr: np.ndarray, *, alpha: bool, tolerance: float) -> np.ndarray:
    """Collapse an (H, W, C) array of a grey radiograph to (H, W); refuse true colour.

    A radiograph saved as RGB has equal channels (``tolerance`` allows the few levels lossy
    JPEG can add). An alpha channel is accepted only when fully opaque: transparent pixels
    have no radiographic meaning we could guess.
    """
    if alpha:
        opaque = np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else 1.0
        if not np.all(arr[..., -1] == opaque):
            raise UnsupportedImageError(
                path, "image has transparent pixels (alpha channel); save it without transparency"
            )
        arr = arr[..., :-1]
    if arr.shape[-1] == 1:
        return arr[..., 0]
    colour = arr.astype(np.float32)
    spread = float(np.max(np.abs(colour - colour[..., :1]))) if colour.size else 0.0
    if spread > tolerance:
        raise UnsupportedImageError(
            path, f"colour image (channels differ by up to {spread:g} levels); xraystyle reads greyscale radiographs"
        )
    return colour.mean(axis=-1)


def check_pixel_values(path: Path, arr: np.ndarray, meta: XrayMeta) -> np.ndarray:
    """Refuse an image with nothing to learn from; replace a few non-finite pixels.

    No finite pixel (all NaN / infinite), every pixel padding, or constant valid pixels: a
    one-line ``InputError``, so ``cohort check`` and the tensor cache count the file as
    unreadable instead of training on a black image. Some non-finite pixels (NaN padding of
    float NIfTI/MHA exports): set to the minimum finite value, marked invalid in
    ``meta.valid_mask`` (like DICOM padding) and noted.
    """
    finite = np.isfinite(arr)
    if not finite.all():
        if not finite.any():
            raise InputError(path, "no finite pixel value (every pixel is NaN or infinite)")
        fill = arr[finite].min()
        bad = int(arr.size - np.count_nonzero(finite))
        arr = np.where(finite, arr, fill).astype(arr.dtype, copy=False)
        meta.valid_mask = finite if meta.valid_mask is None else meta.valid_mask & finite
        meta.notes.append(
            f"{bad} non-finite pixel(s) (NaN or infinite) set to the minimum finite value {float(fill):g} "
            "and treated as padding"
        )
    values = arr if meta.valid_mask is None else arr[meta.valid_mask]
    if values.size == 0:
        raise InputError(path, "every pixel is padding (PixelPaddingValue); no image content")
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= _FLAT * max(1.0, abs(lo), abs(hi)):
        where = " after the VOI LUT/window" if meta.voi_applied in ("lut", "window") else ""
        raise InputError(path, f"constant image{where} (every pixel {lo:g}): no contrast, nothing to learn from")
    return arr
