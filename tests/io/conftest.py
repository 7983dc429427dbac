"""Synthetic radiograph files for the reader tests: realistic CR/DX DICOMs built with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
# Identifier canaries: none of these may ever appear in an xraystyle output.
CANARIES = {
    "PatientName": "CANARYNAME^ZQXW",
    "PatientID": "CANARYID7731",
    "PatientBirthDate": "19010203",
    "InstitutionName": "CANARY INSTITUTE ZQXW",
    "ReferringPhysicianName": "CANARYDOC^PQRS",
    "AccessionNumber": "CANARYACC9",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.7777001",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.7777002",
    "SOPInstanceUID": "1.2.826.0.1.3680043.8.498.7777003",
}
PRIVATE_CANARY = "CANARYPRIVATEVALUE"


def chest_anatomy(rows: int = 48, columns: int = 40, bits: int = 12, seed: int = 0) -> np.ndarray:
    """Stored values of a crude chest in MONOCHROME2 convention (dark lungs, bright spine/ribs)."""
    y, x = np.mgrid[0:rows, 0:columns] / np.array([rows, columns])[:, None, None]
    body = np.exp(-(((x - 0.5) / 0.42) ** 8 + ((y - 0.5) / 0.48) ** 8))
    lungs = np.exp(-(((np.abs(x - 0.5) - 0.2) / 0.13) ** 2 + ((y - 0.45) / 0.28) ** 2))
    spine = np.exp(-(((x - 0.5) / 0.05) ** 2))
    ribs = 0.15 * (np.sin(y * 40) > 0.6) * (lungs > 0.2)
    level = 0.1 + 0.6 * body - 0.35 * lungs + 0.25 * spine * body + ribs
    noise = np.random.default_rng(seed).normal(0, 0.01, level.shape)
    top = 2**bits - 1
    return np.clip(np.rint((level + noise) * 0.8 * top), 0, top).astype(np.uint16)


def build_dicom(
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_allocated: int = 16,
    bits_stored: int = 12,
    signed: bool = False,
    sop_class: str = DX_FOR_PRESENTATION,
    canaries: bool = True,
    **tags,
) -> Dataset:
    """A DX (or CR) dataset around ``stored`` (values as they go into PixelData).

    ``stored`` may be 2-D or (frames, rows, columns). Keyword tags are set last (a value of None
    deletes the tag), so any pitfall can be reproduced.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = CANARIES["SOPInstanceUID"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.Modality = "CR" if sop_class == CR_IMAGE else "DX"
    if canaries:
        for keyword, value in CANARIES.items():
            setattr(ds, keyword, value)
        block = ds.private_block(0x0029, "CANARY VENDOR", create=True)
        block.add_new(0x10, "LO", PRIVATE_CANARY)
    ds.PatientSex = "F"
    ds.PatientAge = "045Y"
    ds.ViewPosition = "PA"
    ds.BodyPartExamined = "CHEST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BurnedInAnnotation = "NO"
    ds.ImagerPixelSpacing = [0.15, 0.15]
    ds.PixelSpacing = [0.143, 0.143]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32}[bits_allocated]
    # Signed data goes in as its two's complement bit pattern (garbage high bits survive too).
    ds.PixelData = np.ascontiguousarray(stored).astype(np.int64).astype(dtype).tobytes()
    for keyword, value in tags.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def lut_item(first: int, data: list[int], bits: int = 16) -> Dataset:
    """A Modality/VOI LUT Sequence item (US LUT data)."""
    item = Dataset()
    item.LUTDescriptor = [len(data), first, bits]
    item["LUTDescriptor"].VR = "US"
    item.LUTData = data
    item["LUTData"].VR = "US"
    return item


def as_sequence(*items: Dataset) -> Sequence:
    return Sequence(list(items))


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def write_dicom(tmp_path):
    """``write_dicom(stored, name="x.dcm", **build_dicom kwargs) -> Path``."""

    def write(stored: np.ndarray, name: str = "image.dcm", **kwargs) -> Path:
        return save(build_dicom(stored, **kwargs), tmp_path / name)

    return write


def pydicom_reference(path: Path, index: int = 0) -> np.ndarray:
    """pydicom's own modality LUT then VOI LUT on the same file (no polarity handling)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    return apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=index)
