import warnings

import numpy as np
import pydicom
import pytest
import torch
from typer.testing import CliRunner

from tests.io.conftest import CANARIES
from tests.synthesis.helpers import write_canary_dicom, write_png
from xraystyle.cli import app
from xraystyle.errors import XrayStyleError
from xraystyle.io import read_xray
from xraystyle.io.dicom_writer import SECONDARY_CAPTURE, DerivedImage, build_derived_dataset

runner = CliRunner()
IDENTIFYING = ("InstitutionName", "InstitutionAddress", "PerformingPhysicianName",
               "OperatorsName", "StationName", "DeviceSerialNumber", "OtherPatientIDs", "PatientAddress",
               "AcquisitionDate", "ContentDate", "SeriesDate", "InstanceCreationDate", "AcquisitionDateTime")


def _derived(checkpoint, tmp_path, *extra):
    src = write_canary_dicom(tmp_path / "src.dcm")
    out = tmp_path / "out"
    r = runner.invoke(app, ["synth", "--no-progress", "--checkpoint", str(checkpoint), "--source", str(src),
                            "--target", "effusion", "--format", "dcm", "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    return pydicom.dcmread(src), pydicom.dcmread(next(out.glob("*.dcm")))


def test_derived_dicom_tags(checkpoint, model, tmp_path):
    src, ds = _derived(checkpoint, tmp_path)
    assert ds.SOPClassUID == SECONDARY_CAPTURE == ds.file_meta.MediaStorageSOPClassUID
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.SyntheticData == "YES" and ds[0x0008, 0x001C].value == "YES"
    assert ds.ConversionType == "SYN"
    assert model.checkpoint_sha256[:12] in ds.DerivationDescription
    assert "step 4" in ds.DerivationDescription and "effusion" in ds.DerivationDescription
    assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod
    assert ds.PatientName == "SYNTHETIC" and ds.PatientID == "SYNTHETIC"
    assert not ds.PatientBirthDate and not ds.StudyDate and not ds.AccessionNumber and not ds.ReferringPhysicianName
    for keyword in IDENTIFYING:
        assert keyword not in ds, keyword
    assert not any(elem.tag.is_private for elem in ds.iterall())
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert ds[keyword].value != src[keyword].value
        assert ds[keyword].value not in CANARIES.values()
    assert len({ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}) == 3
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    # Only technical attributes come from the source.
    assert (ds.Modality, ds.ViewPosition, ds.BodyPartExamined) == ("DX", "PA", "CHEST")
    assert "PatientSex" in ds and not ds.PatientSex and "PatientAge" not in ds
    assert ds.BurnedInAnnotation == "NO"
    # Pixels: MONOCHROME2, the source's bit depth, a window that shows them.
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.PixelRepresentation == 0
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
    assert ds.pixel_array.max() <= 4095 and (ds.Rows, ds.Columns) == (32, 32)
    assert float(ds.WindowCenter) == pytest.approx(4095 / 2) and float(ds.WindowWidth) == 4096
    # 48 x 40 source -> resized to 32 x 27 on the 32 px canvas: per-axis spacing follows the rounding
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.143 * 48 / 32, 0.143 * 40 / 27], rel=1e-4)


def test_writer_emits_no_pydicom_warnings_and_refuses_bad_pixels():
    img = DerivedImage(np.zeros((4, 4), np.uint16), 12, 2047.5, 4096, "test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = build_derived_dataset(img)
        ds.save_as(__import__("io").BytesIO(), enforce_file_format=True)
    with pytest.raises(XrayStyleError, match="do not fit 12 bits"):
        build_derived_dataset(DerivedImage(np.full((4, 4), 5000, np.uint16), 12, 0, 1, "x"))
    with pytest.raises(XrayStyleError, match="2-D"):
        build_derived_dataset(DerivedImage(np.zeros((2, 4, 4), np.uint16), 12, 0, 1, "x"))


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_technical_values_are_copied_only_when_well_formed(checkpoint, tmp_path):
    src = write_canary_dicom(tmp_path / "src.dcm", ViewPosition="<b>PA</b>", BodyPartExamined="CHEST")
    out = tmp_path / "out"
    r = runner.invoke(app, ["synth", "--no-progress", "--checkpoint", str(checkpoint), "--source", str(src),
                            "--target", "normal", "--format", "dcm", "--out", str(out)])
    assert r.exit_code == 0, r.output
    ds = pydicom.dcmread(next(out.glob("*.dcm")))
    assert "ViewPosition" not in ds and ds.BodyPartExamined == "CHEST"


class _IdentityG(torch.nn.Module):
    def forward(self, x, s):
        return x


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("restore", [False, True])
def test_polarity_preserved_bright_bone_dark_air(model, tmp_path, photometric, restore):
    """With an identity generator the derived DICOM must show what the source shows: MONOCHROME2,
    spine brighter than lungs, high correlation with the source as displayed."""
    from tests.io.conftest import build_dicom, chest_anatomy, save
    from xraystyle.reporting.export import write_result
    from xraystyle.reporting.provenance import model_record
    from xraystyle.synthesis import load_source, synthesize

    stored = chest_anatomy(48, 40)
    if photometric == "MONOCHROME1":
        stored = 4095 - stored
    path = save(build_dicom(stored, photometric=photometric), tmp_path / "src.dcm")
    identity = type(model)(torch.nn.ModuleDict({"G": _IdentityG(), "F": model.nets["F"], "E": model.nets["E"]}),
                           model.args, model.step, model.checkpoint, model.checkpoint_sha256)
    src = load_source(path, model.preprocess)
    (result,) = synthesize(identity, [src], target="effusion")
    out = tmp_path / "out"
    out.mkdir()
    files = write_result(result, out, model_record(model), fmt="dcm", restore=restore)
    ds = pydicom.dcmread(files[0])
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    shown, _ = read_xray(files[0])  # applies the written window, as a viewer would
    original, _ = read_xray(path)
    if restore:
        assert shown.shape == original.shape
        assert np.corrcoef(shown.ravel(), original.ravel())[0, 1] > 0.97
    h, w = shown.shape
    spine = shown[h // 3: 2 * h // 3, w // 2 - w // 40 - 1: w // 2 + w // 40 + 1].mean()
    lung = shown[int(h * 0.4): int(h * 0.5), int(w * 0.28): int(w * 0.32)].mean()
    assert spine > lung + 0.1 * (shown.max() - shown.min())


def test_png_source_gives_16_bit_dicom_without_source_attributes(checkpoint, tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["synth", "--no-progress", "--checkpoint", str(checkpoint), "--source",
                            str(write_png(tmp_path / "a.png")), "--target", "effusion", "--format", "dcm",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    ds = pydicom.dcmread(next(out.glob("*.dcm")))
    assert ds.BitsStored == 16 and ds.Modality == "OT"
    assert "PixelSpacing" not in ds and "ViewPosition" not in ds and "BodyPartExamined" not in ds
