"""DICOM grey-scale pipeline: stored values -> modality LUT -> VOI LUT -> MONOCHROME2 polarity.

PS3.3 C.11 order: the modality LUT (Modality LUT Sequence or rescale slope/intercept) maps
stored values to modality units; the VOI LUT (VOI LUT Sequence, or window centre/width with
VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID) maps those to display values.

Rescale is pydicom's ``apply_modality_lut``, called on a small dataset holding only the
sanitised slope and intercept. Windowing and LUT sequences are done here and tested against
pydicom's ``apply_voi_lut``: pydicom's windowing is slow on large images and scales into a
range reversed by negative slopes, and pydicom 3.0.2 ``apply_voi`` indexes an 8-bit LUT
through a uint8 buffer, so a 4096-entry LUT with 8-bit output wraps every input above 255.
pydicom never inverts polarity, so the MONOCHROME1 / Presentation LUT Shape INVERSE step is
ours, done inside the VOI output range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut

from .dicom_terms import PRESENTATION_LUT_SHAPES, VOI_LUT_FUNCTIONS, coded


@dataclass
class GreyPipeline:
    """What the pipeline did; ``value_range`` is the range the output can take."""

    array: np.ndarray
    value_range: tuple[float, float]
    voi_applied: str  # "lut" | "window" | "none"
    inverted: bool


def get(ds: Dataset, keyword: str):
    """Value of ``keyword`` or None when absent, empty or unparsable (bad VR, bad number)."""
    try:
        value = ds.get(keyword, None)
    except Exception:  # pydicom converts raw values lazily; a corrupt one must not sink the read
        return None
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        return None
    return value


def floats(ds: Dataset, keyword: str) -> tuple[float, ...] | None:
    """A DS/IS element with one or more values as floats (None when absent or unparsable)."""
    value = get(ds, keyword)
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]  # single-valued element
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return values if values and all(np.isfinite(values)) else None


def stored_range(bits_stored: int, signed: bool) -> tuple[float, float]:
    """Range of stored pixel values that ``bits_stored`` bits can hold."""
    if signed:
        return float(-(2 ** (bits_stored - 1))), float(2 ** (bits_stored - 1) - 1)
    return 0.0, float(2**bits_stored - 1)


def lut_table(item: Dataset, little_endian: bool) -> tuple[np.ndarray, int]:
    """(table of output values, first mapped input) of a Modality/VOI LUT Sequence item.

    LUTData is US (a list) or OW (bytes in the file's byte order, one entry per 16-bit word;
    a few writers pack 8-bit entries one per byte, accepted when the length says so).
    """
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536  # PS3.3 C.11.1.1: 0 means 2**16 entries
    value = item["LUTData"].value
    if isinstance(value, bytes):
        if len(value) >= 2 * entries:
            data = np.frombuffer(value[: 2 * entries], "<u2" if little_endian else ">u2")
        elif bits == 8 and len(value) >= entries:
            data = np.frombuffer(value[:entries], np.uint8)
        else:
            raise ValueError("LUT Data shorter than its descriptor")
    else:
        data = np.atleast_1d(np.asarray(value, dtype=np.int64))
    if data.size < entries:
        raise ValueError("LUT Data shorter than its descriptor")
    return data[:entries].astype(np.float64), first


def _look_up(arr: np.ndarray, table: np.ndarray, first: int) -> np.ndarray:
    """PS3.3 C.11: inputs below the first mapped value take the first entry, above the last, the last."""
    index = np.clip(np.rint(arr) - first, 0, table.size - 1).astype(np.intp)
    return table[index]


def modality(
    stored: np.ndarray, hdr: Dataset, little_endian: bool, bits_stored: int, signed: bool, notes: list[str]
) -> tuple[np.ndarray, tuple[float, float]]:
    """Stored values -> modality units, with the range the result can take."""
    lo, hi = stored_range(bits_stored, signed)
    seq = get(hdr, "ModalityLUTSequence")
    if seq:
        try:
            table, first = lut_table(seq[0], little_endian)
            return _look_up(stored, table, first), (float(table.min()), float(table.max()))
        except Exception:  # a malformed LUT: fall back to rescale / identity, and say so
            notes.append("Modality LUT Sequence unreadable; ignored")
    slope, intercept = floats(hdr, "RescaleSlope"), floats(hdr, "RescaleIntercept")
    if slope or intercept:
        ds = Dataset()
        ds.RescaleSlope = slope[0] if slope else 1.0
        ds.RescaleIntercept = intercept[0] if intercept else 0.0
        a, b = lo * ds.RescaleSlope + ds.RescaleIntercept, hi * ds.RescaleSlope + ds.RescaleIntercept
        return apply_modality_lut(stored, ds), (min(a, b), max(a, b))
    return stored.astype(np.float64), (lo, hi)


def _voi_lut(
    arr: np.ndarray, hdr: Dataset, little_endian: bool, notes: list[str]
) -> tuple[np.ndarray, tuple[float, float]] | None:
    seq = get(hdr, "VOILUTSequence")
    if not seq:
        return None
    try:
        table, first = lut_table(seq[0], little_endian)
    except Exception:
        notes.append("VOI LUT Sequence unreadable; ignored")
        return None
    if len(seq) > 1:
        notes.append(f"{len(seq)} VOI LUTs in file; applied the first")
    return _look_up(arr, table, first), (float(table.min()), float(table.max()))


def _window(
    arr: np.ndarray, hdr: Dataset, value_range: tuple[float, float], notes: list[str]
) -> np.ndarray | None:
    centres, widths = floats(hdr, "WindowCenter"), floats(hdr, "WindowWidth")
    if not centres or not widths:
        return None
    centre, width = centres[0], widths[0]
    if len(centres) > 1 or len(widths) > 1:
        notes.append(
            f"{max(len(centres), len(widths))} window presets in file; applied the first "
            f"(centre {centre:g}, width {width:g})"
        )
    raw = get(hdr, "VOILUTFunction")
    function = coded(raw, VOI_LUT_FUNCTIONS) if raw is not None else "LINEAR"
    if function is None:  # the value is never repeated: a free-text field can hold identifiers
        notes.append("unrecognised VOILUTFunction; used LINEAR")
        function = "LINEAR"
    if width < 1 if function == "LINEAR" else width <= 0:
        notes.append(f"window width {width:g} is invalid for {function}; window not applied")
        return None
    lo, hi = value_range
    out = window_unit(arr, centre, width, function)
    out *= hi - lo
    out += lo
    return out


def window_unit(x: np.ndarray, centre: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2-3 window with output range [0, 1] (float64, a new array).

    Hand-written rather than pydicom's ``apply_windowing`` (which the tests check it against):
    pydicom's boolean-mask version takes ~60 ms on a 2048 x 2048 image where clipping takes
    ~10 ms, and it scales to a range it derives itself, reversed for negative rescale slopes.
    """
    if function == "SIGMOID":
        with np.errstate(over="ignore"):  # exp overflows to inf far below the centre: output 0
            return 1.0 / (1.0 + np.exp(-4.0 * (x - centre) / width))
    if function == "LINEAR":
        if width == 1:  # a step: pydicom's and the standard's limit of the formula below
            return (x > centre - 0.5).astype(np.float64)
        centre, width = centre - 0.5, width - 1.0
    out = np.subtract(x, centre, dtype=np.float64)
    out /= width
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def to_monochrome2(
    stored: np.ndarray,
    hdr: Dataset,
    *,
    little_endian: bool,
    bits_stored: int,
    signed: bool,
    photometric: str,
    notes: list[str],
) -> GreyPipeline:
    """Apply modality LUT, VOI LUT (sequence preferred over window, as pydicom does), polarity."""
    arr, value_range = modality(stored, hdr, little_endian, bits_stored, signed, notes)
    voi_applied = "none"
    lut = _voi_lut(arr, hdr, little_endian, notes)
    if lut is not None:
        arr, value_range = lut
        voi_applied = "lut"
    else:
        windowed = _window(arr, hdr, value_range, notes)
        if windowed is not None:
            arr, voi_applied = windowed, "window"

    raw = get(hdr, "PresentationLUTShape")
    shape = coded(raw, PRESENTATION_LUT_SHAPES) or ""
    if raw is not None and not shape:  # never quoted: see _window
        notes.append("unrecognised PresentationLUTShape; ignored")
    if get(hdr, "PresentationLUTSequence"):
        notes.append("Presentation LUT Sequence ignored")
    # MONOCHROME1 (minimum = white) and INVERSE both mean "display inverted". The DX IOD
    # requires INVERSE with MONOCHROME1: they state the same inversion, so it happens once.
    inverted = photometric == "MONOCHROME1" or shape == "INVERSE"
    if photometric == "MONOCHROME1" and shape == "INVERSE":
        notes.append("MONOCHROME1 with Presentation LUT Shape INVERSE: inverted once")
    elif shape == "INVERSE":
        notes.append("Presentation LUT Shape INVERSE on MONOCHROME2: inverted")
    if inverted:
        lo, hi = value_range
        arr = (lo + hi) - arr
    return GreyPipeline(arr, value_range, voi_applied, inverted)
