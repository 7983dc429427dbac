"""Derived (synthetic) DICOM output: Secondary Capture, de-identified by construction.

The dataset is built from scratch, never from a copy of the source: the only values that come
from a source DICOM are the technical ones handed in explicitly (Modality and ViewPosition as
validated code strings, BodyPartExamined only as a PS3.16 defined term, pixel spacing). So no
identifier, date, UID or private tag of the source can reach the file.

Why Secondary Capture (1.2.840.10008.5.1.4.1.1.7) and not Digital X-Ray: the image was not
acquired by an X-ray device, and the SC Equipment module's ConversionType has a defined term
for exactly this case, ``SYN`` (synthetic image). DX would claim detector and exposure
attributes that do not exist for a generated image.

Type 2 attributes of the Patient and General Study modules (PatientName, PatientID,
PatientBirthDate, PatientSex, StudyDate, StudyTime, ReferringPhysicianName, StudyID,
AccessionNumber) must be present in a conformant file; they are written, empty or as
``SYNTHETIC``, carrying nothing. PS3.3 / PS3.15 references: C.7.6.1 (ImageType,
DerivationDescription), C.12.1 (SyntheticData), C.7.1.1 (PatientIdentityRemoved,
DeidentificationMethod), C.8.6.1 (ConversionType).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from .. import __version__
from ..errors import XrayStyleError
from .dicom_terms import BODY_PARTS, coded

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
NOTICE = "SYNTHETIC - research use, not for diagnosis"
# LO: at most 64 characters. docs/synthesis.md spells out what "built from scratch" covers.
DEIDENTIFICATION_METHOD = "xraystyle synthetic: new dataset, no source identifiers or UIDs"


@dataclass
class DerivedImage:
    """What goes into one derived DICOM. ``pixels`` are MONOCHROME2 stored values."""

    pixels: np.ndarray  # (rows, columns) unsigned integers < 2**bits_stored
    bits_stored: int
    window_center: float
    window_width: float
    derivation: str  # DerivationDescription: model, step, target
    series_description: str = "SYNTHETIC counterfactual"
    pixel_spacing: tuple[float, float] | None = None  # (row, column) mm
    modality: str | None = None  # validated code strings only (see reporting.provenance.code_string)
    view_position: str | None = None
    body_part: str | None = None
    burned_in_annotation: bool = False  # True when a visible mark is burned into the pixels
    # Strings hashed into the Study/Series/SOP Instance UIDs (pydicom generate_uid entropy):
    # the same synthesis gives the same UIDs, different syntheses different ones. None: random.
    uid_keys: tuple[Sequence[str], Sequence[str], Sequence[str]] | None = None


def _uid(key: Sequence[str] | None) -> str:
    return generate_uid(entropy_srcs=["xraystyle-derived", *key]) if key is not None else generate_uid()


def build_derived_dataset(img: DerivedImage) -> Dataset:
    """The dataset for ``img`` (see module docstring for the attributes and why)."""
    pixels = np.asarray(img.pixels)
    if pixels.ndim != 2 or pixels.size == 0:
        raise XrayStyleError(f"derived DICOM needs a non-empty 2-D image, got shape {pixels.shape}")
    if not 1 <= img.bits_stored <= 16:
        raise XrayStyleError(f"derived DICOM bits stored must be 1..16, got {img.bits_stored}")
    if pixels.min() < 0 or pixels.max() > 2**img.bits_stored - 1:
        raise XrayStyleError(f"pixel values do not fit {img.bits_stored} bits")
    study_key, series_key, instance_key = img.uid_keys if img.uid_keys is not None else (None, None, None)
    study_uid = _uid(study_key)
    series_uid = _uid(None if series_key is None else [study_uid, *series_key])
    sop_uid = _uid(None if instance_key is None else [series_uid, *instance_key])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"XRAYSTYLE_{__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    # SOP Common
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SyntheticData = "YES"
    # Patient (Type 2: present, identifying nothing)
    ds.PatientName = "SYNTHETIC"
    ds.PatientID = "SYNTHETIC"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    # General Study (Type 2 dates, physician, IDs empty)
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.StudyDescription = NOTICE
    # General Series
    ds.Modality = img.modality or "OT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = img.series_description[:64]
    body_part = coded(img.body_part, BODY_PARTS)  # defined terms only, whatever the caller passes
    if body_part:
        ds.BodyPartExamined = body_part
    # SC Equipment
    ds.ConversionType = "SYN"
    ds.SecondaryCaptureDeviceManufacturer = "xraystyle"
    ds.SecondaryCaptureDeviceManufacturerModelName = "StarGAN v2 counterfactual"
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    # General Image
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.DerivationDescription = img.derivation[:1024]
    ds.BurnedInAnnotation = "YES" if img.burned_in_annotation else "NO"
    ds.ImageComments = NOTICE
    ds.ContentQualification = "RESEARCH"
    ds.LossyImageCompression = "00"
    if img.view_position:
        ds.ViewPosition = img.view_position
    # Image Pixel: MONOCHROME2 unsigned, 16-bit words
    rows, columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(rows), int(columns)
    ds.BitsAllocated = 16
    ds.BitsStored = int(img.bits_stored)
    ds.HighBit = int(img.bits_stored) - 1
    ds.PixelRepresentation = 0
    if img.pixel_spacing is not None:
        ds.PixelSpacing = [f"{float(v):.6g}" for v in img.pixel_spacing]
    # VOI LUT: the window that displays the image as intended
    ds.WindowCenter = f"{float(img.window_center):.6g}"
    ds.WindowWidth = f"{max(1.0, float(img.window_width)):.6g}"
    ds.VOILUTFunction = "LINEAR"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds


def write_derived_dicom(path: str | os.PathLike, img: DerivedImage) -> Path:
    """Write ``img`` as a Part 10 file (Explicit VR Little Endian) and return the path."""
    from io import BytesIO

    path = Path(path)
    ds = build_derived_dataset(img)
    buffer = BytesIO()  # encode fully before touching the output: no half-written file on error
    ds.save_as(buffer, enforce_file_format=True)
    path.write_bytes(buffer.getvalue())
    return path
