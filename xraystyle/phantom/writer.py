"""Encoders for phantom images: 16-bit PNG, DICOM DX (MONOCHROME1 or 2), 8-bit PNG masks.

Outputs are byte-for-byte reproducible: no timestamps, UIDs derived from the cohort seed and
image index, and PNG written without metadata chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .physics import FIELD_OF_VIEW_MM

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def png16_pixels(stored: np.ndarray, bit_depth: int) -> np.ndarray:
    """The uint16 values a phantom PNG holds: ``bit_depth``-bit levels scaled to 0..65535."""
    top = (1 << int(bit_depth)) - 1
    return ((stored.astype(np.uint32) * 65535 + top // 2) // top).astype(np.uint16)


def dicom_pixels(stored: np.ndarray, bit_depth: int, monochrome1: bool) -> np.ndarray:
    """The uint16 values a phantom DICOM holds: the levels, inverted when stored MONOCHROME1."""
    top = (1 << int(bit_depth)) - 1
    return ((top - stored) if monochrome1 else stored).astype(np.uint16)


def write_png16(path: Path, stored: np.ndarray, bit_depth: int) -> None:
    """16-bit grayscale PNG; ``bit_depth``-bit values are scaled to the full 16-bit range, so
    the quantisation steps of the drawn bit depth survive in the file."""
    v16 = png16_pixels(stored, bit_depth)
    # Huffman-only deflate (zlib strategy 2, Pillow's compress_type): ~8x faster than the
    # default on noisy 16-bit images, and no larger (LZ matching finds little in noise).
    Image.fromarray(v16).save(path, format="PNG", compress_level=1, compress_type=2)


def write_mask(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(np.where(mask, np.uint8(255), np.uint8(0))).save(path, format="PNG", compress_level=1)


def kvp_from_contrast(contrast: float) -> int:
    """Nominal tube voltage matching the contrast factor (lower kVp = more contrast)."""
    return int(round(110.0 * float(contrast) ** -1.2))


def write_dicom(path: Path, stored: np.ndarray, physics: Mapping[str, Any], ident: Mapping[str, Any]) -> None:
    """A DX 'for presentation' file: MONOCHROME2 or, with ``physics['monochrome1']``, stored
    inverted as MONOCHROME1 with the matching Presentation LUT Shape (INVERSE, PS3.3 C.8.11.3).

    The window covers exactly the stored data range (it is symmetric under inversion), so a
    reader that applies rescale, window and the MONOCHROME1 inversion recovers the MONOCHROME2
    image. No patient identifiers: synthetic name and ID, no dates. ``ident`` gives
    ``index`` (for the name), ``patient_id``, ``study_id``, ``sex``, ``age`` and ``uid_seed``.
    """
    bits = int(physics["bit_depth"])
    mono1 = bool(physics["monochrome1"])
    pixels = dicom_pixels(stored, bits, mono1)
    lo, hi = int(pixels.min()), int(pixels.max())
    seed = [str(x) for x in ident["uid_seed"]]
    rows, cols = pixels.shape
    spacing = f"{FIELD_OF_VIEW_MM / cols:.6f}".rstrip("0")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=seed + ["instance"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.AccessionNumber = ""
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "xraystyle phantom"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = "synthetic PA chest phantom"
    ds.PatientName = f"PHANTOM^{ident['index']}"
    ds.PatientID = str(ident["patient_id"])
    ds.PatientBirthDate = ""
    ds.PatientSex = str(ident["sex"])
    ds.PatientAge = f"{int(ident['age']):03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.KVP = str(kvp_from_contrast(physics["contrast"]))
    ds.SyntheticData = "YES"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=seed + ["study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=seed + ["series"])
    ds.StudyID = str(ident["study_id"])[-16:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]  # rows run to the patient's left, columns to the feet
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.PresentationLUTShape = "INVERSE" if mono1 else "IDENTITY"
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [spacing, spacing]
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.WindowCenter = f"{(lo + hi) / 2:.1f}"
    ds.WindowWidth = str(max(hi - lo + 1, 2))
    ds.VOILUTFunction = "LINEAR"
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
