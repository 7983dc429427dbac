"""``read_xray``: one entry point for every radiograph format.

The format is sniffed from the content first (DICOM 'DICM' marker, PNG and JPEG signatures,
NRRD and NIfTI magic), then from the extension, so a PNG named ``.dcm`` or a DICOM without an
extension is still read by the right reader.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from ..errors import InputError, UnsupportedImageError
from ._common import DEFAULT_MAX_PIXELS, check_pixel_values
from .dicom import read_dicom
from .meta import XrayMeta
from .raster import JPEG_SIGNATURE, PNG_SIGNATURE, read_raster
from .sitk import read_sitk

_EXTENSIONS = (
    (".nii.gz", "nifti"),
    (".nii", "nifti"),
    (".mha", "mha"),
    (".mhd", "mha"),
    (".nrrd", "nrrd"),
    (".nhdr", "nrrd"),
    (".dcm", "dicom"),
    (".dicom", "dicom"),
    (".dic", "dicom"),
    (".png", "png"),
    (".jpg", "jpeg"),
    (".jpeg", "jpeg"),
)
_SUPPORTED = "DICOM, PNG, JPEG, NIfTI, MHA/MHD and NRRD"


def _looks_like_bare_dicom(head: bytes) -> bool:
    """A dataset written without preamble starts with a group 0002 or 0008 element tag."""
    return len(head) >= 8 and int.from_bytes(head[:2], "little") in (0x0002, 0x0008)


def sniff_format(path: Path) -> str:
    """Return "dicom", "png", "jpeg", "nifti", "mha" or "nrrd"; refuse anything else."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as exc:
        raise InputError(path, exc.strerror or "cannot access the file") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(path, "not a regular file")
    if info.st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as f:
            head = f.read(352)
    except OSError as exc:
        raise InputError(path, exc.strerror or "cannot read the file") from None
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if head.startswith(b"NRRD"):
        return "nrrd"
    if head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    name = path.name.lower()
    for suffix, fmt in _EXTENSIONS:
        if name.endswith(suffix):
            return fmt
    if _looks_like_bare_dicom(head):
        return "dicom"
    raise UnsupportedImageError(path, f"unrecognised file format; xraystyle reads {_SUPPORTED}")


def read_xray(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_missing_preamble: bool = False,
    frame: int | None = None,
    require_content: bool = True,
) -> tuple[np.ndarray, XrayMeta]:
    """Read one radiograph as a float32 2-D array, MONOCHROME2 (higher = brighter = denser).

    DICOM values have the modality LUT, then the VOI LUT applied, then MONOCHROME1 or
    Presentation LUT Shape INVERSE images inverted within the VOI output range. PNG, JPEG,
    NIfTI, MHA and NRRD values are returned as stored. ``max_pixels`` bounds rows x columns
    and is checked from the header before any pixel is decoded. ``allow_missing_preamble``
    accepts DICOM files without the 128-byte preamble and 'DICM' marker. ``frame`` picks one
    frame (0-based) of a multi-frame DICOM, which is refused without it.

    Images without a finite pixel, or whose valid pixels are all equal, are refused; a few
    NaN/infinite pixels are set to the minimum finite value and marked invalid in
    ``meta.valid_mask`` (noted); ``require_content=False`` skips that check (segmentation masks,
    which may rightly be empty). Every unusable file raises an ``InputError`` subclass
    (``UnsupportedImageError``, ``MissingDecoderError``) with a one-line reason.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 0):
        raise ValueError(f"frame must be None or a non-negative integer, got {frame!r}")
    path = Path(path)
    fmt = sniff_format(path)
    try:
        if fmt == "dicom":
            arr, meta = read_dicom(
                path, max_pixels=max_pixels, allow_missing_preamble=allow_missing_preamble, frame=frame
            )
        elif fmt in ("png", "jpeg"):
            arr, meta = read_raster(path, fmt, max_pixels=max_pixels, frame=frame)
        else:
            arr, meta = read_sitk(path, fmt, max_pixels=max_pixels, frame=frame)
        # One place for every format: no NaN/inf leaves the reader, and no blank image either.
        return (check_pixel_values(path, arr, meta) if require_content else arr), meta
    except MemoryError:
        raise InputError(path, "not enough memory to read the image") from None
    except OSError as exc:  # the file vanished or became unreadable between sniffing and reading
        raise InputError(path, exc.strerror or f"cannot read the file ({type(exc).__name__})") from None
