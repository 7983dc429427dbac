"""NIfTI-1 / NIfTI-2 header parsing to catch truncated pixel data, which SimpleITK zero-fills.

niftilib (inside SimpleITK) reads a short file without complaint and leaves the missing voxels
0: half a radiograph would become a half-black training image. So the header is parsed here
with ``struct`` and the bytes it needs (``vox_offset`` + voxels x bytes per voxel) are compared
with the bytes present. For ``.nii.gz`` the gzip stream is decompressed in chunks and
discarded, stopping as soon as enough bytes are seen: the work and memory are bounded by the
header's own size (already checked against ``max_pixels``), never by what the stream holds.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
# NIfTI datatype code -> bits per voxel (nifti1.h); bitpix is used only for codes not listed.
_DATATYPE_BITS = {
    1: 1, 2: 8, 4: 16, 8: 32, 16: 32, 32: 64, 64: 64, 128: 24, 256: 8, 512: 16, 768: 32,
    1024: 64, 1280: 64, 1536: 128, 1792: 128, 2048: 256, 2304: 32,
}
_FLOAT_TYPES = {16: np.dtype(np.float32), 64: np.dtype(np.float64)}


def _open(path: Path, compressed: bool):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _count_bytes(path: Path, needed: int) -> int:
    """Bytes of ``path`` (decompressed if gzip), counted up to ``needed`` and no further."""
    if not _is_gzip(path):
        return path.stat().st_size
    seen = 0
    try:
        with gzip.open(path, "rb") as f:
            while seen < needed:
                chunk = f.read(min(_CHUNK, needed - seen))
                if not chunk:
                    break
                seen += len(chunk)
    except EOFError:  # stream cut short: what was decompressed before is what the file holds
        pass
    except (OSError, zlib.error):
        raise InputError(path, "corrupt gzip stream in NIfTI file") from None
    return seen


def _header(path: Path) -> tuple[bytes, bool] | None:
    """The raw header (up to 540 bytes) and whether the file is gzip, or None if unreadable."""
    compressed = _is_gzip(path)
    try:
        with _open(path, compressed) as f:
            return f.read(540), compressed
    except (EOFError, OSError, zlib.error):
        return None  # SimpleITK has already read the header; let it report what it finds


def _layout(head: bytes) -> tuple[str, bool, int, int, int, tuple[int, ...]] | None:
    """(byte order, single file, vox_offset, data bytes, datatype, dims) of a NIfTI-1/2 header."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(f"{endian}i", head[:4])[0] == 348:
            magic = head[344:348]
            if magic not in (b"n+1\x00", b"ni1\x00"):
                return None
            dims = struct.unpack(f"{endian}8h", head[40:56])
            datatype, bitpix = struct.unpack(f"{endian}hh", head[70:74])
            offset = struct.unpack(f"{endian}f", head[108:112])[0]
            single, header_size = magic == b"n+1\x00", 348
            break
        if len(head) >= 540 and struct.unpack(f"{endian}i", head[:4])[0] == 540:
            magic = head[4:8]
            if magic not in (b"n+2\x00", b"ni2\x00"):
                return None
            datatype, bitpix = struct.unpack(f"{endian}hh", head[12:16])
            dims = struct.unpack(f"{endian}8q", head[16:80])
            offset = struct.unpack(f"{endian}q", head[168:176])[0]
            single, header_size = magic == b"n+2\x00", 540
            break
    else:
        return None
    if not 1 <= dims[0] <= 7:
        return None
    bits = _DATATYPE_BITS.get(datatype, bitpix if bitpix > 0 and bitpix % 8 == 0 else 0)
    if not bits or not math.isfinite(offset):  # unknown voxel type or offset: SimpleITK decides
        return None
    voxels = 1
    for d in dims[1 : dims[0] + 1]:
        voxels *= max(int(d), 1)  # niftilib reads a dimension below 1 as 1
    # A lower bound of what niftilib reads: data cannot start inside a single file's header.
    start = max(int(offset), header_size) if single else max(int(offset), 0)
    return endian, single, start, (voxels * bits + 7) // 8, datatype, tuple(int(d) for d in dims)


def _image_file(path: Path) -> Path | None:
    """The .img (or .img.gz) file of a .hdr header, as niftilib looks for it."""
    name = path.name
    lower = name.lower()
    for suffix in (".hdr.gz", ".hdr"):
        if lower.endswith(suffix):
            stem = name[: -len(suffix)]
            upper = name[-len(suffix) :].isupper()
            for ext in ((".IMG", ".IMG.gz", ".img", ".img.gz") if upper else (".img", ".img.gz", ".IMG", ".IMG.gz")):
                candidate = path.with_name(stem + ext)
                if candidate.is_file():
                    return candidate
            return None
    return path.with_suffix(".img") if path.with_suffix(".img").is_file() else None


def nifti_data_size(path: Path) -> tuple[int, int] | None:
    """(bytes the header declares, bytes present, counted no further than needed) of the file
    holding the voxels, or None when the header is not a NIfTI-1/2 header understood here."""
    read = _header(path)
    if read is None:
        return None
    layout = _layout(read[0])
    if layout is None:
        return None
    _, single, start, size = layout[:4]
    data = path if single else _image_file(path)
    if data is None:
        raise InputError(path, "NIfTI header without its .img data file")
    needed = start + size
    return needed, _count_bytes(data, needed)


def check_nifti_data(path: Path) -> None:
    """Refuse a NIfTI whose file holds fewer bytes than its header declares."""
    sizes = nifti_data_size(path)
    if sizes is not None and sizes[1] < sizes[0]:
        raise InputError(path, f"truncated NIfTI pixel data (header declares {sizes[0]} bytes, file holds {sizes[1]})")


def nifti_non_finite(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """Where the stored float voxels of a 2-D NIfTI are NaN or infinite (None: none, or not a
    float NIfTI understood here).

    ITK's NIfTI reader turns non-finite voxels into 0 silently; 0 can be mid-grey in signed
    data, so the positions are read from the file for ``check_pixel_values`` to handle like
    every other format's. Called after ``check_nifti_data``: the bytes are known to be there.
    """
    read = _header(path)
    layout = None if read is None else _layout(read[0])
    if layout is None or layout[4] not in _FLOAT_TYPES:
        return None
    endian, single, start, size, datatype, dims = layout
    if int(np.prod([max(d, 1) for d in dims[1 : dims[0] + 1]])) != shape[0] * shape[1]:
        return None  # vector or multi-slice data: SimpleITK's refusal or collapse applies
    data = path if single else _image_file(path)
    if data is None:
        return None
    with _open(data, _is_gzip(data)) as f:
        f.seek(start)
        raw = f.read(size)
    values = np.frombuffer(raw, _FLOAT_TYPES[datatype].newbyteorder(endian)).reshape(shape)
    bad = ~np.isfinite(values)
    return bad if bad.any() else None
