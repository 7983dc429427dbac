"""Compressed transfer syntaxes, decoder plugins, frames, geometry, colour refusal, metadata."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless

from xraystyle.errors import InputError, MissingDecoderError, UnsupportedImageError
from xraystyle.io import read_xray

from .conftest import CR_IMAGE, build_dicom, chest_anatomy, save

# OpenJPEG's default 6 resolution levels need both sides >= 32 pixels.
J2K_SHAPE = (48, 40)


def _compressed(tmp_path, stored, syntax, name, **kwargs):
    ds = build_dicom(stored, **kwargs)
    plugin = "pylibjpeg" if syntax == JPEG2000Lossless else "pydicom"
    ds.compress(syntax, np.asarray(stored), encoding_plugin=plugin)
    return save(ds, tmp_path / name)


needs_j2k = pytest.mark.skipif(not get_decoder(JPEG2000Lossless).is_available, reason="no JPEG 2000 decoder plugin")


@needs_j2k
@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless], ids=["j2k", "rle"])
def test_fifteen_bit_monochrome1_cr_reads_identically_compressed(tmp_path, syntax):
    m1 = (2**15 - 1) - chest_anatomy(*J2K_SHAPE, bits=15)
    kwargs = dict(photometric="MONOCHROME1", bits_stored=15, sop_class=CR_IMAGE,
                  WindowCenter=16000.0, WindowWidth=20000.0)
    plain, plain_meta = read_xray(save(build_dicom(m1, **kwargs), tmp_path / "plain.dcm"))
    packed, meta = read_xray(_compressed(tmp_path, m1, syntax, "packed.dcm", **kwargs))
    np.testing.assert_array_equal(packed, plain)
    assert meta.transfer_syntax == syntax.name and meta.inverted and meta.modality == "CR"
    assert plain_meta.transfer_syntax == "Explicit VR Little Endian"


@needs_j2k
@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless], ids=["j2k", "rle"])
def test_signed_pixels_survive_compression(tmp_path, syntax):
    values = chest_anatomy(*J2K_SHAPE).astype(np.int64) - 2048
    plain, _ = read_xray(save(build_dicom(values, signed=True), tmp_path / "plain.dcm"))
    packed, _ = read_xray(_compressed(tmp_path, values.astype(np.int16), syntax, "packed.dcm", signed=True))
    np.testing.assert_array_equal(packed, plain)
    np.testing.assert_array_equal(plain, values)


def test_rle_with_garbage_high_bits_is_masked(tmp_path):
    clean = chest_anatomy(*J2K_SHAPE)
    ds = build_dicom(clean | np.uint16(0xF000), bits_stored=16)
    ds.compress(RLELossless, encoding_plugin="pydicom")  # encodes all 16 bits, garbage included
    ds.BitsStored, ds.HighBit = 12, 11
    arr, _ = read_xray(save(ds, tmp_path / "rle.dcm"))
    np.testing.assert_array_equal(arr, clean)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless], ids=["j2k", "rle"])
def test_missing_decoder_plugin_names_syntax_and_package(tmp_path, monkeypatch, syntax):
    stored = chest_anatomy(*J2K_SHAPE)
    if syntax == JPEG2000Lossless and not get_decoder(syntax).is_available:
        pytest.skip("cannot build the JPEG 2000 file without its plugin")
    path = _compressed(tmp_path, stored, syntax, "c.dcm")
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(MissingDecoderError) as err:
        read_xray(path)
    message = str(err.value)
    assert syntax.name in message and "not installed" in message and "requires" in message
    assert "\n" not in message


@pytest.mark.skipif(get_decoder(JPEGLosslessSV1).is_available, reason="JPEG Lossless plugin installed here")
def test_jpeg_lossless_without_pylibjpeg_libjpeg_is_a_missing_decoder(tmp_path):
    ds = build_dicom(chest_anatomy(8, 8))
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + bytes(60)])
    with pytest.raises(MissingDecoderError, match="libjpeg"):
        read_xray(save(ds, tmp_path / "jll.dcm"))


def test_corrupt_compressed_stream_is_an_input_error(tmp_path):
    path = _compressed(tmp_path, chest_anatomy(*J2K_SHAPE), RLELossless, "rle.dcm")
    data = bytearray(path.read_bytes())
    del data[-200:]  # cut into the last fragment
    path.write_bytes(bytes(data))
    with pytest.raises(InputError):
        read_xray(path)


def test_multi_frame_needs_a_frame_choice(write_dicom):
    frames = np.stack([chest_anatomy(seed=s) for s in range(3)])
    path = write_dicom(frames)
    with pytest.raises(UnsupportedImageError, match="3 frames"):
        read_xray(path)
    arr, meta = read_xray(path, frame=1)
    np.testing.assert_array_equal(arr, frames[1])
    assert meta.number_of_frames == 3
    with pytest.raises(InputError, match="out of range"):
        read_xray(path, frame=3)


@needs_j2k
def test_multi_frame_jpeg2000_frame(tmp_path):
    frames = np.stack([chest_anatomy(*J2K_SHAPE, seed=s) for s in range(3)])
    arr, _ = read_xray(_compressed(tmp_path, frames, JPEG2000Lossless, "mf.dcm"), frame=2)
    np.testing.assert_array_equal(arr, frames[2])


def test_single_frame_accepts_frame_zero_only(write_dicom):
    path = write_dicom(chest_anatomy())
    read_xray(path, frame=0)
    with pytest.raises(InputError, match="out of range"):
        read_xray(path, frame=1)


def test_no_pixel_data(write_dicom):
    with pytest.raises(InputError, match="no PixelData"):
        read_xray(write_dicom(chest_anatomy(), PixelData=None))


@pytest.mark.parametrize("shape", [(1, 2), (2, 7), (7, 2), (3, 5)])  # 1 x 1 is constant: refused
def test_tiny_and_non_square_images_keep_row_column_order(write_dicom, shape):
    stored = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    arr, meta = read_xray(write_dicom(stored))
    assert arr.shape == shape and arr.dtype == np.float32 and (meta.rows, meta.columns) == shape
    np.testing.assert_array_equal(arr, stored)


def test_eight_bit_dicom(write_dicom):
    stored = (chest_anatomy(bits=8)).astype(np.uint8)
    arr, meta = read_xray(write_dicom(stored, bits_allocated=8, bits_stored=8))
    np.testing.assert_array_equal(arr, stored)
    assert meta.bits_allocated == 8


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "PALETTE COLOR"])
def test_colour_photometric_interpretations_are_refused(tmp_path, photometric):
    rgb = photometric != "PALETTE COLOR"
    stored = np.zeros((4, 4, 3) if rgb else (4, 4), np.uint8)
    ds = build_dicom(stored[..., 0] if rgb else stored, bits_allocated=8, bits_stored=8, photometric=photometric)
    if rgb:
        ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PixelData = 3, 0, stored.tobytes()
    with pytest.raises(UnsupportedImageError, match=photometric):
        read_xray(save(ds, tmp_path / "colour.dcm"))


def test_float_pixel_data_is_refused(tmp_path):
    ds = build_dicom(chest_anatomy(4, 4), PixelData=None, BitsAllocated=32)
    ds.FloatPixelData = np.zeros(16, np.float32).tobytes()
    with pytest.raises(UnsupportedImageError, match="float pixel data"):
        read_xray(save(ds, tmp_path / "float.dcm"))


def test_metadata_is_extracted(write_dicom):
    path = write_dicom(
        chest_anatomy(),
        ViewPosition="LL",
        BurnedInAnnotation="YES",
        WindowCenter=1000.0,
        WindowWidth=2000.0,
        VOILUTFunction="LINEAR",
    )
    _, meta = read_xray(path)
    assert meta.source_format == "dicom" and meta.modality == "DX"
    assert meta.pixel_spacing == (0.143, 0.143)
    assert meta.view_position == "LL" and meta.body_part == "CHEST"
    assert meta.burned_in_annotation == "YES"
    assert meta.window_center == (1000.0,) and meta.window_width == (2000.0,)
    assert meta.voi_lut_function == "LINEAR" and meta.presentation_lut_shape == "IDENTITY"
    assert meta.bits_allocated == 16 and meta.bits_stored == 12 and meta.pixel_representation == 0
    assert meta.patient_age_years == 45.0


def test_imager_pixel_spacing_is_the_fallback(write_dicom):
    _, meta = read_xray(write_dicom(chest_anatomy(), PixelSpacing=None, ViewPosition=None))
    assert meta.pixel_spacing == (0.15, 0.15) and meta.view_position is None
    assert any("ImagerPixelSpacing" in note for note in meta.notes)


@pytest.mark.filterwarnings("ignore:Invalid value for VR AS")  # pydicom warns when the test writes "abc"
@pytest.mark.parametrize(
    "age, years", [("006M", 0.5), ("003W", 21 / 365.25), ("010D", 10 / 365.25), ("095Y", 90.0), ("abc", None)]
)
def test_patient_age_in_years_capped_at_90(write_dicom, age, years):
    _, meta = read_xray(write_dicom(chest_anatomy(4, 4), PatientAge=age))
    assert meta.patient_age_years == pytest.approx(years)


def test_for_processing_images_get_a_note(write_dicom):
    _, meta = read_xray(write_dicom(chest_anatomy(4, 4), PresentationIntentType="FOR PROCESSING"))
    assert any("FOR PROCESSING" in note for note in meta.notes)
