"""DICOM reader (pydicom 3): header checks before any pixel is decoded, then one frame.

Steps, each refusing with a typed one-line error:
1. Parse the header up to the pixel data (``stop_before_pixels``) through a reader that never
   asks for more bytes than the file has, so corrupt lengths cannot make pydicom allocate.
2. Validate the image pixel module: size against ``max_pixels``, greyscale photometric
   interpretation, frames, transfer syntax and the availability of its decoder.
3. Check the PixelData element header (present, declared length inside the file, enough bytes).
4. Decode only the requested frame (``pydicom.pixels.pixel_array``, which also masks bits above
   BitsStored and sign-extends signed data), then padding mask, LUTs and polarity.

pydicom's own warnings and log records (its whole logger tree) are swallowed while reading:
some quote element values, and values can be patient identifiers. Coded fields reach the
metadata and notes only as defined terms (``dicom_terms``), never as the raw value.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import struct
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..errors import InputError, MissingDecoderError, UnsupportedImageError
from . import dicom_lut
from ._common import check_pixel_count
from .dicom_lut import floats, get
from .dicom_terms import (
    BODY_PARTS,
    BURNED_IN_ANNOTATION,
    PHOTOMETRIC_INTERPRETATIONS,
    PRESENTATION_LUT_SHAPES,
    VOI_LUT_FUNCTIONS,
    coded,
)
from .meta import XrayMeta

_PIXEL_DATA = 0x7FE00010
_FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)
_UNDEFINED_LENGTH = 0xFFFFFFFF
_GREY = ("MONOCHROME1", "MONOCHROME2")
_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$")
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}
# HIPAA safe harbour: ages above 89 are identifying and are reported as 90.
_AGE_CAP_YEARS = 90.0


class _BoundedReader(io.BufferedReader):
    """A binary file whose reads never request more than the bytes left in it.

    pydicom reads an element with ``fp.read(declared_length)``: a corrupt 4 GiB length would
    allocate 4 GiB before the short read is noticed.
    """

    def __init__(self, raw: io.FileIO, size: int):
        super().__init__(raw)
        self._size = size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = max(0, min(size, self._size - self.tell()))
            if size == 0:
                return b""
        return super().read(size)


_QUIET_LOCK = threading.Lock()
_quiet_readers = 0
_quiet_filter: tuple | None = None
_quiet_saved: tuple[int, dict[str, bool]] | None = None  # pydicom level, disabled flags


def _silence_logger_tree() -> tuple[int, dict[str, bool]]:
    """Stop every logger of the ``pydicom`` tree from emitting; return what to restore.

    A filter on the ``pydicom`` logger does not see records of its children (filters run only
    on the logger that creates a record): pydicom's decoders log ``ERROR`` with a traceback
    from ``pydicom.pixels.decoders.base``. A level above CRITICAL on ``pydicom`` silences every
    child left at NOTSET, including modules imported later (decoder plugins load lazily);
    ``disabled`` covers existing children that have a level of their own.
    """
    root = logging.getLogger("pydicom")
    disabled = {}
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (name == "pydicom" or name.startswith("pydicom.")) and isinstance(logger, logging.Logger):
            disabled[name] = logger.disabled
            logger.disabled = True
    level = root.level
    root.setLevel(logging.CRITICAL + 1)
    return level, disabled


def _restore_logger_tree(saved: tuple[int, dict[str, bool]]) -> None:
    level, disabled = saved
    logging.getLogger("pydicom").setLevel(level)
    for name, was in disabled.items():
        logger = logging.Logger.manager.loggerDict.get(name)
        if isinstance(logger, logging.Logger):
            logger.disabled = was


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom while reading: some of its messages quote element values (identifiers),
    and its decoders log tracebacks for corrupt pixel data that the caller reports in one line.

    Not ``warnings.catch_warnings`` nor a per-call logging change: those swap process-wide
    state and break when readers run on a thread pool. One "ignore warnings from pydicom"
    filter and one quieting of pydicom's whole logger tree stay installed while at least one
    read is in progress; the previous state comes back when the last read ends.
    """
    global _quiet_readers, _quiet_filter, _quiet_saved
    with _QUIET_LOCK:
        if _quiet_readers == 0:
            warnings.filterwarnings("ignore", module=r"(pydicom|xraystyle\.io)(\.|$)")
            _quiet_filter = warnings.filters[0]
            _quiet_saved = _silence_logger_tree()
        _quiet_readers += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_readers -= 1
            if _quiet_readers == 0:
                with contextlib.suppress(ValueError):  # someone reset the filters meanwhile
                    warnings.filters.remove(_quiet_filter)
                _quiet_filter = None
                if _quiet_saved is not None:
                    _restore_logger_tree(_quiet_saved)
                _quiet_saved = None


@dataclass
class _Image:
    """The image pixel module, validated."""

    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    samples: int
    photometric: str
    frames: int


def _int(path: Path, ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = get(ds, keyword)
    if value is None and keyword in ds and default is None:
        raise InputError(path, f"DICOM header has an empty or unreadable {keyword}")
    if value is None:
        if default is None:
            raise InputError(path, f"DICOM header has no {keyword} (truncated header or not an image)")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(path, f"DICOM header has an invalid {keyword}") from None


def _image_module(path: Path, ds: Dataset, notes: list[str]) -> _Image:
    rows, columns = _int(path, ds, "Rows"), _int(path, ds, "Columns")
    bits_allocated = _int(path, ds, "BitsAllocated")
    bits_stored = _int(path, ds, "BitsStored", bits_allocated)
    if bits_allocated not in (1, 8, 16, 32) or not 1 <= bits_stored <= bits_allocated:
        raise InputError(path, f"invalid bit depth (BitsAllocated {bits_allocated}, BitsStored {bits_stored})")
    representation = _int(path, ds, "PixelRepresentation", 0)
    samples = _int(path, ds, "SamplesPerPixel", 1)
    photometric = str(get(ds, "PhotometricInterpretation") or "").strip().upper()
    if not photometric and samples == 1:
        notes.append("no PhotometricInterpretation; assumed MONOCHROME2")
        photometric = "MONOCHROME2"
    if photometric not in _GREY or samples != 1:
        # Only defined terms are named: the element is free text to a careless writer.
        if photometric in PHOTOMETRIC_INTERPRETATIONS:
            named = f"photometric interpretation {photometric}"
        else:
            named = "unrecognised photometric interpretation" if photometric else "photometric interpretation missing"
        raise UnsupportedImageError(
            path,
            f"{named} with {samples} sample(s) per pixel; "
            "xraystyle reads greyscale radiographs (MONOCHROME1/MONOCHROME2)",
        )
    frames = _int(path, ds, "NumberOfFrames", 1)
    if frames < 1:
        raise InputError(path, f"invalid NumberOfFrames {frames}")
    return _Image(rows, columns, bits_allocated, bits_stored, representation == 1, samples, photometric, frames)


def _caused_by(exc: BaseException, kind: type) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, kind):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _read_header(path: Path, fp: io.BufferedReader, allow_missing_preamble: bool) -> Dataset:
    try:
        hdr = pydicom.dcmread(fp, stop_before_pixels=True, force=allow_missing_preamble)
    except InvalidDicomError:
        fp.seek(0)
        start = fp.read(2)
        if len(start) == 2 and struct.unpack("<H", start)[0] in (0x0002, 0x0008):
            raise InputError(
                path,
                "DICOM file without the 128-byte preamble and 'DICM' marker; "
                "pass allow_missing_preamble=True (CLI: --allow-missing-preamble) if you trust it",
            ) from None
        raise InputError(path, "not a DICOM file (no 'DICM' marker after the 128-byte preamble)") from None
    except RecursionError:
        raise InputError(path, "DICOM sequences nested too deeply") from None
    except MemoryError:
        raise InputError(path, "DICOM header declares absurd lengths") from None
    except Exception as exc:  # pydicom raises many types on corrupt input; the user needs one line
        # Depending on the stack depth the recursion limit can strike inside pydicom's item
        # reader, which re-raises it as OSError("No tag to read ...").
        if _caused_by(exc, RecursionError):
            raise InputError(path, "DICOM sequences nested too deeply") from None
        raise InputError(path, f"unreadable DICOM header ({type(exc).__name__})") from None
    # pydicom keeps short values when the file ends early; a declared length beyond the end
    # of the file is a truncated header or a corrupt length.
    for tag in list(hdr.keys()):
        # keep_deferred: without it pydicom converts value-less raw elements here, and a
        # corrupt VR then raises NotImplementedError out of the reader.
        elem = hdr.get_item(tag, keep_deferred=True)
        if (
            isinstance(elem, RawDataElement)
            and elem.length != _UNDEFINED_LENGTH
            and isinstance(elem.value, bytes)
            and len(elem.value) < elem.length
        ):
            raise InputError(
                path,
                f"DICOM element ({tag.group:04X},{tag.element:04X}) declares {elem.length} bytes "
                f"but the file ends after {len(elem.value)} (truncated file or corrupt length)",
            )
    return hdr


def _transfer_syntax(path: Path, hdr: Dataset, notes: list[str]) -> UID:
    meta = getattr(hdr, "file_meta", None)
    tsyntax = get(meta, "TransferSyntaxUID") if meta is not None else None
    if tsyntax is None:
        # Only reachable with allow_missing_preamble: pydicom guessed the encoding.
        implicit, little = hdr.original_encoding
        tsyntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        notes.append(f"no transfer syntax in file meta; assumed {tsyntax.name}")
    tsyntax = UID(str(tsyntax))
    if tsyntax.name == str(tsyntax) or tsyntax.is_private:
        raise UnsupportedImageError(path, "unknown or private transfer syntax; cannot decode its pixel data")
    if tsyntax.is_deflated:
        raise UnsupportedImageError(
            path, f"{tsyntax.name} is not supported; inflate the file first (e.g. dcmtk: dcmconv +te)"
        )
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise UnsupportedImageError(path, f"no pixel data decoder exists for {tsyntax.name}") from None
    if tsyntax.is_compressed and not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a pydicom decoder plugin"
        raise MissingDecoderError(
            path, f"{tsyntax.name} pixel data needs a decoder plugin that is not installed ({missing})"
        )
    return tsyntax


def _check_pixel_element(path: Path, fp: io.BufferedReader, tsyntax: UID, image: _Image, file_size: int) -> None:
    """Read the PixelData element header where the header parse stopped; check its length."""
    start = fp.tell()
    head = fp.read(8)
    if len(head) < 8:
        raise InputError(path, "DICOM file has no PixelData (no image, or truncated before it)")
    endian = "<" if tsyntax.is_little_endian else ">"
    group, element = struct.unpack(f"{endian}HH", head[:4])
    tag = group << 16 | element
    if tag in _FLOAT_PIXEL_DATA:
        raise UnsupportedImageError(path, "float pixel data (parametric map), not a radiograph")
    if tag != _PIXEL_DATA:
        raise InputError(path, "DICOM file has no PixelData (no image, or truncated before it)")
    if tsyntax.is_implicit_VR:
        (length,) = struct.unpack(f"{endian}L", head[4:8])
    else:
        extra = fp.read(4)
        if len(extra) < 4:
            raise InputError(path, "DICOM file truncated inside the PixelData element header")
        (length,) = struct.unpack(f"{endian}L", extra)
    available = file_size - fp.tell()
    if length != _UNDEFINED_LENGTH and length > available:
        raise InputError(
            path, f"PixelData declares {length} bytes but the file holds {available} (truncated file or corrupt length)"
        )
    if not tsyntax.is_compressed:
        bits = image.rows * image.columns * image.frames * image.samples * image.bits_allocated
        expected = (bits + 7) // 8
        if length == _UNDEFINED_LENGTH or length < expected:
            raise InputError(path, f"pixel data truncated: {min(length, available)} bytes, {expected} expected")
    fp.seek(start)


def _decode(path: Path, fp: io.BufferedReader, tsyntax: UID, image: _Image, index: int | None) -> np.ndarray:
    # Values the decoder would otherwise look up in the header, for files that omit them.
    options = dict(
        transfer_syntax_uid=tsyntax,
        photometric_interpretation=image.photometric,
        bits_stored=image.bits_stored,
        pixel_representation=int(image.signed),
        samples_per_pixel=image.samples,
        number_of_frames=image.frames,
    )
    try:
        stored = pixel_array(fp, index=index, **options)
    except MemoryError:
        raise InputError(path, "not enough memory to decode the pixel data") from None
    except RuntimeError:  # every available plugin failed
        raise InputError(path, f"{tsyntax.name} pixel data could not be decoded (corrupt or truncated)") from None
    except Exception as exc:
        raise InputError(path, f"pixel data truncated or inconsistent with the header ({type(exc).__name__})") from None
    if stored.shape != (image.rows, image.columns):
        raise InputError(
            path, f"decoded pixel data has shape {stored.shape}, header says {image.rows} x {image.columns}"
        )
    return stored


def _padding_mask(hdr: Dataset, stored: np.ndarray) -> np.ndarray | None:
    """False where the stored value is PixelPaddingValue (or inside its range limit)."""
    value = floats(hdr, "PixelPaddingValue")
    if value is None:
        return None
    limit = floats(hdr, "PixelPaddingRangeLimit")
    lo, hi = (value[0], value[0]) if limit is None else sorted((value[0], limit[0]))
    padded = (stored >= lo) & (stored <= hi)
    return ~padded if padded.any() else None


def _age_years(hdr: Dataset) -> float | None:
    match = _AGE.match(str(get(hdr, "PatientAge") or ""))
    if match is None:
        return None
    number, unit = int(match.group(1)), match.group(2) or "Y"
    return min(number * _DAYS_PER_UNIT[unit] / 365.25, _AGE_CAP_YEARS)


def _text(hdr: Dataset, keyword: str) -> str | None:
    value = get(hdr, keyword)
    return None if value is None else str(value).strip() or None


def _coded(hdr: Dataset, keyword: str, allowed: tuple[str, ...], notes: list[str], note: str | None) -> str | None:
    """A coded element's value if it is a defined term (upper case), else None with ``note``.

    The note never quotes the value: scanners and PACS put identifiers in such fields.
    """
    raw = _text(hdr, keyword)
    value = coded(raw, allowed)
    if raw is not None and value is None and note:
        notes.append(note)
    return value


def _spacing(hdr: Dataset, notes: list[str]) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = floats(hdr, keyword)
        if values and len(values) == 2 and min(values) > 0:
            if keyword == "ImagerPixelSpacing":
                notes.append("spacing from ImagerPixelSpacing (detector plane, not corrected for magnification)")
            return values[0], values[1]
    return None


def read_dicom(
    path: Path, *, max_pixels: int, allow_missing_preamble: bool, frame: int | None
) -> tuple[np.ndarray, XrayMeta]:
    """Read one DICOM radiograph as float32 MONOCHROME2 display values (see module docstring)."""
    notes: list[str] = []
    file_size = path.stat().st_size
    with _quiet_pydicom(), _BoundedReader(io.FileIO(path, "rb"), file_size) as fp:
        hdr = _read_header(path, fp, allow_missing_preamble)
        pixel_start = fp.tell()
        image = _image_module(path, hdr, notes)
        check_pixel_count(path, image.rows, image.columns, max_pixels)
        if image.frames > 1 and frame is None:
            raise UnsupportedImageError(
                path, f"multi-frame DICOM with {image.frames} frames; pass frame= (0-based, CLI --frame) to read one"
            )
        if frame is not None and not 0 <= frame < image.frames:
            raise InputError(path, f"frame {frame} out of range: the file has {image.frames} frame(s)")
        tsyntax = _transfer_syntax(path, hdr, notes)
        fp.seek(pixel_start)
        _check_pixel_element(path, fp, tsyntax, image, file_size)
        stored = _decode(path, fp, tsyntax, image, frame if image.frames > 1 else None)

        valid_mask = _padding_mask(hdr, stored)
        intent = _text(hdr, "PresentationIntentType")
        if intent and intent.upper() == "FOR PROCESSING":
            notes.append("FOR PROCESSING image: raw detector data, not meant for display")
        grey = dicom_lut.to_monochrome2(
            stored,
            hdr,
            little_endian=tsyntax.is_little_endian,
            bits_stored=image.bits_stored,
            signed=image.signed,
            photometric=image.photometric,
            notes=notes,
        )
        meta = XrayMeta(
            source_format="dicom",
            rows=image.rows,
            columns=image.columns,
            modality=_text(hdr, "Modality"),
            photometric_interpretation=image.photometric,
            bits_allocated=image.bits_allocated,
            bits_stored=image.bits_stored,
            pixel_representation=int(image.signed),
            pixel_spacing=_spacing(hdr, notes),
            view_position=_text(hdr, "ViewPosition"),
            window_center=floats(hdr, "WindowCenter"),
            window_width=floats(hdr, "WindowWidth"),
            # Coded fields: defined terms only (unknown VOI function / LUT shape noted by dicom_lut).
            voi_lut_function=_coded(hdr, "VOILUTFunction", VOI_LUT_FUNCTIONS, notes, None),
            voi_applied=grey.voi_applied,
            presentation_lut_shape=_coded(hdr, "PresentationLUTShape", PRESENTATION_LUT_SHAPES, notes, None),
            transfer_syntax=tsyntax.name,
            body_part=_coded(
                hdr, "BodyPartExamined", BODY_PARTS, notes, "BodyPartExamined value not a defined term; dropped"
            ),
            number_of_frames=image.frames,
            patient_age_years=_age_years(hdr),
            burned_in_annotation=_coded(
                hdr, "BurnedInAnnotation", BURNED_IN_ANNOTATION, notes, "unrecognised BurnedInAnnotation; dropped"
            ),
            inverted=grey.inverted,
            valid_mask=valid_mask,
            notes=notes,
        )
    return grey.array.astype(np.float32), meta
