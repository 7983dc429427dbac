"""DICOM grey-scale pipeline: polarity, modality LUT before VOI LUT, windows, bits, padding."""

from __future__ import annotations

import numpy as np
import pytest

from xraystyle.errors import InputError
from xraystyle.io import read_xray

from .conftest import as_sequence, chest_anatomy, lut_item, pydicom_reference

M12 = 4095  # largest 12-bit stored value


def test_monochrome1_and_monochrome2_encodings_read_identically(write_dicom):
    m2 = chest_anatomy()
    a2, meta2 = read_xray(write_dicom(m2, "m2.dcm"))
    a1, meta1 = read_xray(write_dicom(M12 - m2, "m1.dcm", photometric="MONOCHROME1"))
    np.testing.assert_array_equal(a1, a2)
    assert meta1.inverted and not meta2.inverted
    # MONOCHROME2 convention: the spine (centre column) is brighter than the lung fields.
    assert a1[24, 20] > a1[20, 10]


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_windowed_monochrome1_matches_its_monochrome2_twin(write_dicom, function):
    m2 = chest_anatomy()
    centre, width = 1800.0, 1500.0
    # pydicom's LINEAR uses centre - 0.5, so the mirrored centre is M - c + 1 for that function.
    mirrored = M12 - centre + (1 if function == "LINEAR" else 0)
    a2, _ = read_xray(write_dicom(m2, "m2.dcm", WindowCenter=centre, WindowWidth=width, VOILUTFunction=function))
    a1, meta = read_xray(
        write_dicom(M12 - m2, "m1.dcm", photometric="MONOCHROME1", WindowCenter=mirrored, WindowWidth=width,
                    VOILUTFunction=function)
    )
    assert meta.voi_applied == "window"
    np.testing.assert_allclose(a1, a2, atol=1e-3)


def test_rescale_then_window_agrees_with_pydicom(write_dicom):
    stored = chest_anatomy()
    path = write_dicom(stored, RescaleSlope=2.0, RescaleIntercept=-1024.0, WindowCenter=2000.0, WindowWidth=3000.0)
    arr, meta = read_xray(path)
    expected = pydicom_reference(path)
    np.testing.assert_allclose(arr, expected, rtol=1e-5, atol=1e-3)
    assert meta.voi_applied == "window"
    # Windowing the stored values (wrong order) gives a different image: the order is tested.
    wrong_order = np.clip((stored - 2000.0) / 3000.0 + 0.5, 0, 1) * (2 * M12) - 1024.0
    assert not np.allclose(arr, wrong_order, atol=1.0)


@pytest.mark.parametrize(
    "function, width", [("LINEAR", 800.0), ("LINEAR", 1.0), ("LINEAR_EXACT", 800.0), ("SIGMOID", 800.0)]
)
def test_voi_functions_agree_with_pydicom(write_dicom, function, width):
    path = write_dicom(chest_anatomy(), WindowCenter=1500.0, WindowWidth=width, VOILUTFunction=function)
    arr, meta = read_xray(path)
    np.testing.assert_allclose(arr, pydicom_reference(path), rtol=1e-5, atol=1e-3)
    assert meta.voi_lut_function == function


def test_multi_valued_window_uses_the_first_pair_and_says_so(write_dicom):
    path = write_dicom(chest_anatomy(), WindowCenter=[1500.0, 2500.0], WindowWidth=[800.0, 3000.0])
    arr, meta = read_xray(path)
    np.testing.assert_allclose(arr, pydicom_reference(path, index=0), rtol=1e-5, atol=1e-3)
    assert not np.allclose(arr, pydicom_reference(path, index=1), atol=1.0)
    assert meta.window_center == (1500.0, 2500.0) and meta.window_width == (800.0, 3000.0)
    assert any("2 window presets" in note and "first" in note for note in meta.notes)


def test_voi_lut_sequence_is_preferred_over_the_window(write_dicom):
    stored = chest_anatomy()
    table = [int(v) for v in np.round(np.sqrt(np.arange(M12 + 1) / M12) * 255)]
    lut = as_sequence(lut_item(0, table, 8))
    path = write_dicom(stored, WindowCenter=1000.0, WindowWidth=200.0, VOILUTSequence=lut)
    arr, meta = read_xray(path)
    assert meta.voi_applied == "lut"
    np.testing.assert_array_equal(arr, np.asarray(table)[stored])  # 8-bit output, 4096 entries


def test_sixteen_bit_voi_lut_agrees_with_pydicom(write_dicom):
    table = [int(v) for v in np.round(np.sqrt(np.arange(M12 + 1) / M12) * 65535)]
    path = write_dicom(chest_anatomy(), VOILUTSequence=as_sequence(lut_item(0, table, 16)))
    arr, _ = read_xray(path)
    np.testing.assert_array_equal(arr, pydicom_reference(path))


def test_voi_lut_inputs_outside_the_table_clamp_to_its_ends(write_dicom):
    stored = np.array([[0, 10, 20, 4000]], dtype=np.uint16)
    path = write_dicom(stored, VOILUTSequence=as_sequence(lut_item(10, [100, 200, 300], 16)))
    arr, _ = read_xray(path)
    np.testing.assert_array_equal(arr, [[100, 100, 300, 300]])


def test_modality_lut_sequence_then_window(write_dicom):
    stored = np.arange(16, dtype=np.uint16).reshape(4, 4)
    table = [3 * v + 100 for v in range(16)]
    path = write_dicom(stored, ModalityLUTSequence=as_sequence(lut_item(0, table, 16)))
    arr, meta = read_xray(path)
    np.testing.assert_array_equal(arr, 3 * stored + 100)
    assert meta.voi_applied == "none"


def test_negative_rescale_slope_keeps_denser_brighter(write_dicom):
    stored = np.arange(0, 4096, 256, dtype=np.uint16).reshape(4, 4)
    arr, _ = read_xray(write_dicom(stored, RescaleSlope=-1.0, RescaleIntercept=4095.0, WindowCenter=2048.0,
                                   WindowWidth=4096.0))
    modality_values = 4095.0 - stored
    order = np.argsort(modality_values, axis=None)
    assert np.all(np.diff(arr.ravel()[order]) >= 0)  # monotone increasing in modality value
    assert arr.min() >= 0 and arr.max() <= 4095


@pytest.mark.parametrize("bits_stored", [12, 15])
def test_garbage_above_bits_stored_is_masked(write_dicom, bits_stored):
    clean = chest_anatomy(bits=bits_stored)
    dirty = clean | np.uint16(0xFFFF << bits_stored & 0xFFFF)
    a_clean, _ = read_xray(write_dicom(clean, "clean.dcm", bits_stored=bits_stored))
    a_dirty, _ = read_xray(write_dicom(dirty, "dirty.dcm", bits_stored=bits_stored))
    np.testing.assert_array_equal(a_dirty, a_clean)
    assert a_dirty.max() < 2**bits_stored


def test_signed_pixels_with_rescale(write_dicom):
    values = np.array([[-2048, -1, 0, 2047], [-100, 100, -1000, 1000]], dtype=np.int64)
    garbage = values | (0xF << 12)  # signed 12-bit in 16 with set high bits
    path = write_dicom(garbage, signed=True, RescaleSlope=1.0, RescaleIntercept=-1000.0)
    arr, meta = read_xray(path)
    np.testing.assert_array_equal(arr, values - 1000.0)
    assert meta.pixel_representation == 1
    np.testing.assert_allclose(arr, pydicom_reference(path))


def test_signed_monochrome1_inverts_within_the_signed_range(write_dicom):
    values = np.array([[-2048, -1, 0, 2047]])
    arr, _ = read_xray(write_dicom(values, signed=True, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(arr, [[2047, 0, -1, -2048]])


def test_pixel_padding_value_masks_raw_stored_values(write_dicom):
    stored = chest_anatomy()
    stored[:, :3] = 0  # collimator padding stored as 0
    stored[5, 10] = 1
    arr, meta = read_xray(write_dicom(stored, PixelPaddingValue=0, RescaleSlope=1.0, RescaleIntercept=7.0))
    assert meta.valid_mask is not None and meta.valid_mask.shape == arr.shape
    np.testing.assert_array_equal(~meta.valid_mask, stored == 0)


def test_pixel_padding_range_limit(write_dicom):
    stored = chest_anatomy()
    stored[:4] = np.arange(4000, 4096)[: stored.shape[1]]  # MONOCHROME1 padding at the bright end
    _, meta = read_xray(write_dicom(stored, photometric="MONOCHROME1", PixelPaddingValue=4095,
                                    PixelPaddingRangeLimit=4000))
    np.testing.assert_array_equal(~meta.valid_mask, stored >= 4000)


def test_no_padding_value_means_no_mask(write_dicom):
    _, meta = read_xray(write_dicom(chest_anatomy()))
    assert meta.valid_mask is None


def test_presentation_lut_shape_inverse_on_monochrome2_inverts(write_dicom):
    m2 = chest_anatomy()
    plain, _ = read_xray(write_dicom(m2, "plain.dcm"))
    flipped, meta = read_xray(write_dicom(M12 - m2, "inverse.dcm", PresentationLUTShape="INVERSE"))
    np.testing.assert_array_equal(flipped, plain)
    assert meta.inverted and any("INVERSE on MONOCHROME2" in n for n in meta.notes)


def test_monochrome1_with_inverse_is_inverted_once(write_dicom):
    m2 = chest_anatomy()
    plain, _ = read_xray(write_dicom(m2, "m2.dcm"))
    m1 = dict(photometric="MONOCHROME1")
    with_inverse, meta = read_xray(write_dicom(M12 - m2, "a.dcm", **m1, PresentationLUTShape="INVERSE"))
    with_identity, _ = read_xray(write_dicom(M12 - m2, "b.dcm", **m1, PresentationLUTShape="IDENTITY"))
    np.testing.assert_array_equal(with_inverse, plain)
    np.testing.assert_array_equal(with_identity, plain)
    assert any("inverted once" in n for n in meta.notes)


@pytest.mark.parametrize("window", [{}, {"WindowCenter": 500.0, "WindowWidth": 100.0}])
def test_constant_image_is_refused(write_dicom, window):
    # No contrast would train as a black image: refused with the reason (docs/io.md).
    with pytest.raises(InputError, match="constant image"):
        read_xray(write_dicom(np.full((8, 6), 500, np.uint16), **window))


def test_window_that_flattens_every_pixel_is_refused(write_dicom):
    stored = chest_anatomy()
    with pytest.raises(InputError, match="constant image after the VOI LUT/window"):
        read_xray(write_dicom(stored, WindowCenter=100000.0, WindowWidth=10.0))


def test_invalid_window_width_is_skipped_with_a_note(write_dicom):
    stored = chest_anatomy()
    arr, meta = read_xray(write_dicom(stored, WindowCenter=100.0, WindowWidth=0.0))
    assert meta.voi_applied == "none"
    np.testing.assert_array_equal(arr, stored)
    assert any("window width 0" in n for n in meta.notes)


def test_missing_photometric_interpretation_is_assumed_monochrome2(write_dicom):
    stored = chest_anatomy()
    arr, meta = read_xray(write_dicom(stored, PhotometricInterpretation=None, PresentationLUTShape=None))
    np.testing.assert_array_equal(arr, stored)
    assert meta.photometric_interpretation == "MONOCHROME2" and any("assumed MONOCHROME2" in n for n in meta.notes)
