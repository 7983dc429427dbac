"""Phantom DICOMs: MONOCHROME1 / MONOCHROME2 decode to the same polarity; tags; no identifiers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from xraystyle.phantom.generator import generate_phantom_cohort, render_phantom
from xraystyle.phantom.physics import quantize
from xraystyle.phantom.writer import write_dicom

SIZE = 64


def _decode(path) -> np.ndarray:
    """Display values the standard way: modality LUT, VOI window, MONOCHROME1 inverted; 0..1."""
    ds = pydicom.dcmread(path)
    v = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    top = (1 << ds.BitsStored) - 1
    if ds.PhotometricInterpretation == "MONOCHROME1":
        v = top - v
    return v / top


def _ident(i=1):
    return {"index": f"{i:05d}", "patient_id": f"phantom-{i:05d}", "study_id": f"phantom-{i:05d}-1",
            "sex": "F", "age": 50, "uid_seed": (0, i)}


@pytest.fixture(scope="module")
def sample():
    return render_phantom(2, SIZE, {"nodule": True}, {"exposure": 1.1, "noise": 0.01})


@pytest.mark.parametrize("bits", [10, 12, 14, 15])
def test_monochrome1_and_2_decode_to_the_same_image(tmp_path, sample, bits):
    stored = quantize(sample.image, bits)
    paths = []
    for mono1 in (0, 1):
        path = tmp_path / f"m{mono1}.dcm"
        write_dicom(path, stored, {**sample.physics, "bit_depth": bits, "monochrome1": mono1}, _ident())
        paths.append(path)
    raw2, raw1 = pydicom.dcmread(paths[0]).pixel_array, pydicom.dcmread(paths[1]).pixel_array
    assert np.array_equal(raw1.astype(int), (1 << bits) - 1 - raw2.astype(int))  # stored inverted
    m2, m1 = _decode(paths[0]), _decode(paths[1])
    # the same image up to the DICOM linear window's half-level offsets
    assert np.abs(m1 - m2).max() <= 2.0 / ((1 << bits) - 1)
    # polarity: lungs dark, spine (upper mediastinum, midline) bright, as in the ideal image
    lungs = sample.anatomy_masks["lung_right"] | sample.anatomy_masks["lung_left"]
    mid = int(sample.anatomy["midline"] * SIZE)
    spine = np.zeros_like(lungs)
    spine[SIZE // 4 : SIZE // 2, mid - 1 : mid + 2] = True
    for img in (m1, m2):
        assert img[lungs].mean() + 0.2 < img[spine].mean()
    assert np.corrcoef(m2.ravel(), sample.image.ravel())[0, 1] > 0.999


def test_toolkit_reader_agrees(tmp_path, sample):
    io = pytest.importorskip("xraystyle.io")
    stored = quantize(sample.image, 12)
    imgs = []
    for mono1 in (0, 1):
        path = tmp_path / f"m{mono1}.dcm"
        write_dicom(path, stored, {**sample.physics, "bit_depth": 12, "monochrome1": mono1}, _ident())
        arr, meta = io.read_xray(path)
        imgs.append((arr - arr.min()) / (arr.max() - arr.min()))
        assert meta.photometric_interpretation == ("MONOCHROME1" if mono1 else "MONOCHROME2")
    assert np.allclose(imgs[0], imgs[1], atol=1e-3)
    assert np.corrcoef(imgs[0].ravel(), sample.image.ravel())[0, 1] > 0.999


def test_cohort_dicom_tags_and_no_identifiers(tmp_path):
    man = generate_phantom_cohort(tmp_path, 6, size=SIZE, seed=4, fmt="dcm")
    m = pd.read_csv(man)
    assert set(m.phys_monochrome1) == {0, 1}  # both encodings occur in six draws with this seed
    uids = set()
    for _, row in m.iterrows():
        ds = pydicom.dcmread(tmp_path / row.path)
        assert ds.Modality == "DX" and ds.ViewPosition == "PA" and ds.BodyPartExamined == "CHEST"
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
        assert ds.BitsStored == row.phys_bit_depth and ds.BitsAllocated == 16 and ds.HighBit == ds.BitsStored - 1
        assert ds.PhotometricInterpretation == ("MONOCHROME1" if row.phys_monochrome1 else "MONOCHROME2")
        assert ds.PresentationLUTShape == ("INVERSE" if row.phys_monochrome1 else "IDENTITY")
        assert float(ds.PixelSpacing[0]) == pytest.approx(430.0 / SIZE, rel=1e-4)
        assert float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == 0
        lo, hi = int(ds.pixel_array.min()), int(ds.pixel_array.max())
        assert float(ds.WindowCenter) == pytest.approx((lo + hi) / 2) and float(ds.WindowWidth) == hi - lo + 1
        assert str(ds.PatientName) == f"PHANTOM^{row.patient_id.split('-')[1]}" and ds.PatientID == row.patient_id
        assert ds.SyntheticData == "YES"
        for tag in ("StudyDate", "StudyTime", "PatientBirthDate", "AccessionNumber"):
            assert str(ds.get(tag, "")) == ""
        for tag in ("InstitutionName", "ReferringPhysicianName", "OperatorsName", "ContentDate"):
            assert not str(ds.get(tag, ""))
        assert not any(elem.tag.is_private for elem in ds)
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert uid.is_valid and uid not in uids
            uids.add(uid)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
