"""PNG and JPEG reader (Pillow), keeping 16-bit data exact.

Pillow opens a 16-bit greyscale PNG as mode ``I;16``; ``np.asarray`` of that is exact, while
``convert("L")`` would clip it to 8 bits, so we never convert grey modes. Pillow has no 16-bit
colour modes: it silently drops 16-bit RGB / grey+alpha PNGs to 8 bits, so those are refused
after reading the PNG header ourselves. The pixel count is checked from the header before
decoding (our ``max_pixels``, and Pillow's own decompression-bomb limit).
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError, UnsupportedImageError
from ._common import check_pixel_count, check_single_frame, grey_from_channels
from .meta import XrayMeta

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
_PNG_COLOUR_16 = {2: "RGB", 4: "grey+alpha", 6: "RGBA"}  # IHDR colour types Pillow truncates at 16 bits
_GREY_MODES = ("L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
_JPEG_CHANNEL_TOLERANCE = 3.0  # lossy JPEG may leave grey RGB channels a few levels apart
_EXIF_ORIENTATION = 0x0112


def _png_header(path: Path) -> tuple[int, int, int, int]:
    """(rows, columns, bit depth, colour type) from the IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise InputError(path, "truncated or corrupt PNG (no IHDR header)")
    columns, rows, depth, colour = struct.unpack(">IIBB", head[16:26])
    return rows, columns, depth, colour


def _bits(mode: str) -> int | None:
    """Bits per sample of a Pillow mode (None for float)."""
    return {"I": 32, "F": None}.get(mode, 16 if mode.startswith("I;16") else 8)


def _to_array(path: Path, im: Image.Image, tolerance: float) -> np.ndarray:
    mode = im.mode
    if mode in _GREY_MODES:
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("P", "PA"):  # palette: its entries are checked for grey like RGB pixels
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("LA", "La", "RGB", "RGBA", "RGBa", "RGBX"):
        alpha = mode in ("LA", "La", "RGBA", "RGBa")
        return grey_from_channels(path, np.asarray(im), alpha=alpha, tolerance=tolerance)
    raise UnsupportedImageError(path, f"colour or unusual pixel mode {mode}; xraystyle reads greyscale radiographs")


def read_raster(path: Path, fmt: str, *, max_pixels: int, frame: int | None) -> tuple[np.ndarray, XrayMeta]:
    """Read a PNG (``fmt="png"``) or JPEG (``fmt="jpeg"``) radiograph as float32, MONOCHROME2 assumed."""
    check_single_frame(path, frame)
    notes = ["no photometric interpretation in the file; MONOCHROME2 (bright bone) assumed"]
    bits = None
    if fmt == "png":
        rows, columns, bits, colour = _png_header(path)
        check_pixel_count(path, rows, columns, max_pixels)
        if bits == 16 and colour in _PNG_COLOUR_16:
            raise UnsupportedImageError(
                path,
                f"16-bit {_PNG_COLOUR_16[colour]} PNG: Pillow would truncate it to 8 bits; "
                "save the radiograph as 16-bit greyscale",
            )
    label = fmt.upper()
    try:
        with warnings.catch_warnings():
            # Our max_pixels check replaces Pillow's warning; its hard limit still raises below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=[label]) as im:
                columns, rows = im.size
                check_pixel_count(path, rows, columns, max_pixels)
                if getattr(im, "n_frames", 1) > 1:
                    raise UnsupportedImageError(path, f"animated {label} with {im.n_frames} frames")
                orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
                if orientation != 1:
                    notes.append(f"EXIF orientation {orientation} ignored: pixels kept as stored (never flipped)")
                im.load()
                depth = _bits(im.mode)
                arr = _to_array(path, im, _JPEG_CHANNEL_TOLERANCE if fmt == "jpeg" else 0.0)
    except Image.DecompressionBombError:
        raise UnsupportedImageError(
            path, f"image exceeds Pillow's decompression-bomb limit of {2 * Image.MAX_IMAGE_PIXELS} pixels"
        ) from None
    except UnidentifiedImageError:
        raise InputError(path, f"not a readable {label} file") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise InputError(path, f"truncated or corrupt {label} ({type(exc).__name__})") from None
    meta = XrayMeta(
        source_format=fmt,
        rows=rows,
        columns=columns,
        bits_allocated=depth,
        bits_stored=bits if bits is not None else depth,
        pixel_representation=0 if depth else None,
        notes=notes,
    )
    return arr.astype(np.float32), meta
