"""Checks every reader shares: image size against ``max_pixels``, frame selection, grey channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, UnsupportedImageError

DEFAULT_MAX_PIXELS = 100_000_000


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
