"""``xraystyle inspect``: metadata in text or JSON, never identifiers; one-line errors, exit 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from xraystyle.cli import app
from xraystyle.io import read_xray

from .conftest import CANARIES, PRIVATE_CANARY, chest_anatomy

runner = CliRunner()


def _canary_dicom(write_dicom):
    stored = chest_anatomy()
    stored[:, :2] = 0
    return write_dicom(
        stored,
        photometric="MONOCHROME1",
        PixelPaddingValue=0,
        WindowCenter=[2000.0, 1000.0],
        WindowWidth=[3000.0, 500.0],
        VOILUTFunction="LINEAR",
    )


def _assert_no_identifiers(text: str) -> None:
    for value in [*CANARIES.values(), PRIVATE_CANARY, "CANARY", "1.2.826.0.1.3680043"]:
        assert value not in text
    assert "CANARY" not in text.upper()


def test_inspect_text(write_dicom):
    result = runner.invoke(app, ["inspect", str(_canary_dicom(write_dicom))])
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in ("MONOCHROME1", "DX", "PA", "CHEST", "Explicit VR Little Endian", "2000 \\ 1000", "LINEAR"):
        assert expected in out
    assert "padding fraction" in out and "value min" in out and "note:" in out
    _assert_no_identifiers(out + (result.stderr or ""))


def test_inspect_json(write_dicom):
    path = _canary_dicom(write_dicom)
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    _assert_no_identifiers(result.output)
    report = json.loads(result.output)  # exactly one JSON object
    arr, meta = read_xray(path)
    assert report["photometric_interpretation"] == "MONOCHROME1" and report["inverted"] is True
    assert (report["rows"], report["columns"]) == arr.shape
    assert (report["bits_allocated"], report["bits_stored"], report["signed"]) == (16, 12, False)
    assert report["pixel_spacing_mm"] == [0.143, 0.143] and report["view_position"] == "PA"
    assert report["window_center"] == [2000.0, 1000.0] and report["voi_applied"] == "window"
    assert report["padding_fraction"] == pytest.approx(2 / 40)
    assert report["value_min"] == pytest.approx(float(arr[meta.valid_mask].min()))
    assert report["number_of_frames"] == 1 and report["body_part"] == "CHEST"
    assert "patient_age_years" not in report


def test_metadata_dict_carries_no_identifiers(write_dicom):
    _, meta = read_xray(_canary_dicom(write_dicom))
    _assert_no_identifiers(json.dumps(meta.to_dict()) + repr(meta))


def test_inspect_png_json(tmp_path):
    from PIL import Image

    Image.fromarray(np.linspace(100, 40000, 15).astype(np.uint16).reshape(3, 5)).save(tmp_path / "x.png")
    report = json.loads(runner.invoke(app, ["inspect", str(tmp_path / "x.png"), "--json"]).output)
    assert report["format"] == "png" and report["value_max"] == 40000.0 and report["modality"] is None


def test_inspect_frame_and_preamble_options(write_dicom, tmp_path):
    frames = np.stack([chest_anatomy(seed=s) for s in range(2)])
    path = write_dicom(frames, "mf.dcm")
    assert runner.invoke(app, ["inspect", str(path)]).exit_code == 1
    assert runner.invoke(app, ["inspect", str(path), "--frame", "1"]).exit_code == 0
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(write_dicom(chest_anatomy(), "full.dcm").read_bytes()[132:])
    assert runner.invoke(app, ["inspect", str(bare)]).exit_code == 1
    assert runner.invoke(app, ["inspect", str(bare), "--allow-missing-preamble"]).exit_code == 0


@pytest.mark.parametrize("content", [b"", b"plain text, not an image\n" * 9])
def test_inspect_errors_are_one_line_exit_1(tmp_path, content):
    path = tmp_path / "bad.dcm"
    path.write_bytes(content)
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xraystyle: error: ") and str(path) in lines[0]
    assert "Traceback" not in result.output


def test_inspect_truncated_dicom_error_has_no_identifiers(write_dicom, tmp_path):
    data = _canary_dicom(write_dicom).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: data.index(CANARIES["InstitutionName"].encode()) + 4])
    result = runner.invoke(app, ["inspect", str(cut), "--json"])
    assert result.exit_code == 1 and result.stdout == ""
    _assert_no_identifiers(result.stderr)
