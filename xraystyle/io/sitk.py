"""NIfTI / MetaImage (MHA, MHD) / NRRD reader through SimpleITK, imported only when needed.

A radiograph is 2-D: a 2-D image, or a 3-D image with one slice (size z == 1), is accepted;
anything else is refused with its size. The header is read first (``ReadImageInformation``)
so oversized or volumetric files are refused before their voxels are loaded.
SimpleITK sizes are (x, y[, z]) while ``GetArrayFromImage`` returns (z, y, x): rows are y and
columns are x. The direction matrix is not applied: pixels stay in stored index order, so
nothing is ever flipped. A truncated NIfTI is refused by ``nifti.check_nifti_data`` before
decoding (SimpleITK would zero-fill it; MHA and NRRD readers already fail on short data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, MissingDecoderError, UnsupportedImageError
from ._common import check_pixel_count, check_single_frame, grey_from_channels
from .meta import XrayMeta
from .nifti import check_nifti_data, nifti_non_finite


def read_sitk(path: Path, fmt: str, *, max_pixels: int, frame: int | None) -> tuple[np.ndarray, XrayMeta]:
    """Read a 2-D (or single-slice 3-D) NIfTI, MHA/MHD or NRRD image as float32."""
    try:
        import SimpleITK as sitk  # optional at run time: the GPU image does not ship it
    except ImportError:
        raise MissingDecoderError(path, f"{fmt} files need SimpleITK (pip install SimpleITK)") from None
    check_single_frame(path, frame)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(path, f"unreadable {fmt} header") from None
    size = reader.GetSize()
    if len(size) > 3:
        raise UnsupportedImageError(path, f"{len(size)}-D image {size}; xraystyle reads 2-D radiographs")
    if len(size) == 3 and size[2] != 1:
        raise UnsupportedImageError(
            path, f"3-D volume with {size[2]} slices; xraystyle reads 2-D radiographs (or single-slice volumes)"
        )
    columns, rows = size[0], size[1]
    check_pixel_count(path, rows, columns, max_pixels)
    if fmt == "nifti":  # niftilib zero-fills missing voxels instead of failing: check the size first
        check_nifti_data(path)
    try:
        image = reader.Execute()
        arr = sitk.GetArrayFromImage(image)
    except RuntimeError:
        raise InputError(path, f"truncated or corrupt {fmt} pixel data") from None
    if np.iscomplexobj(arr):
        raise UnsupportedImageError(path, "complex-valued pixels; not a radiograph")
    if len(size) == 3:
        arr = arr[0]  # (z=1, y, x) -> (y, x)
    if fmt == "nifti" and arr.ndim == 2 and np.issubdtype(arr.dtype, np.floating):
        # ITK's NIfTI reader zeroes NaN/inf voxels: restore them so read_xray's common check
        # (check_pixel_values) treats them as for every other format.
        bad = nifti_non_finite(path, arr.shape)
        if bad is not None:
            arr = arr.copy()
            arr[bad] = np.nan
    integer = np.issubdtype(arr.dtype, np.integer)
    depth = arr.dtype.itemsize * 8 if integer else None
    signed = int(np.issubdtype(arr.dtype, np.signedinteger)) if integer else None
    if reader.GetNumberOfComponents() > 1:  # vector pixels: (y, x, c)
        arr = grey_from_channels(path, arr, alpha=False, tolerance=0.0)
    notes = ["no photometric interpretation in the file; MONOCHROME2 (bright bone) assumed"]
    direction = np.asarray(image.GetDirection()).reshape(len(size), len(size))
    if not np.allclose(direction, np.eye(len(size))):
        notes.append("direction matrix is not identity; pixels kept in stored index order (never reoriented)")
    spacing = image.GetSpacing()
    meta = XrayMeta(
        source_format=fmt,
        rows=int(rows),
        columns=int(columns),
        bits_allocated=depth,
        bits_stored=depth,
        pixel_representation=signed,
        pixel_spacing=(float(spacing[1]), float(spacing[0])),
        notes=notes,
    )
    return arr.astype(np.float32), meta
