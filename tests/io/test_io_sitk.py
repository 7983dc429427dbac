"""NIfTI / MHA / NRRD through SimpleITK: 2-D and single-slice 3-D accepted, volumes refused."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from xraystyle.errors import InputError, MissingDecoderError, UnsupportedImageError
from xraystyle.io import read_xray

from .conftest import chest_anatomy

sitk = pytest.importorskip("SimpleITK")


def _write(array: np.ndarray, path, spacing=None):
    image = sitk.GetImageFromArray(array)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("name", ["x.nii", "x.nii.gz", "x.mha", "x.nrrd"])
def test_two_d_images_keep_rows_and_columns(tmp_path, name):
    values = chest_anatomy(7, 5)  # non-square: a transposed read would change the shape
    arr, meta = read_xray(_write(values, tmp_path / name, spacing=(0.2, 0.3)))
    assert arr.shape == (7, 5) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr, values)
    assert (meta.rows, meta.columns) == (7, 5)
    assert meta.pixel_spacing == pytest.approx((0.3, 0.2))  # (row, column) = (y, x)
    assert meta.bits_allocated == 16 and meta.pixel_representation == 0


def test_single_slice_volume_is_accepted(tmp_path):
    values = chest_anatomy(6, 9)
    arr, meta = read_xray(_write(values[None], tmp_path / "slice.nii.gz"))
    np.testing.assert_array_equal(arr, values)
    assert meta.source_format == "nifti"


def test_volume_is_refused_with_its_slice_count(tmp_path):
    with pytest.raises(UnsupportedImageError, match="3-D volume with 40 slices"):
        read_xray(_write(np.zeros((40, 8, 8), np.int16), tmp_path / "ct.nii.gz"))


def test_volume_size_is_checked_against_max_pixels_from_the_header(tmp_path):
    path = _write(np.zeros((1, 20, 20), np.uint8), tmp_path / "x.mha")
    with pytest.raises(UnsupportedImageError, match="max_pixels"):
        read_xray(path, max_pixels=100)


def test_grey_vector_pixels_collapse_colour_refused(tmp_path):
    grey = chest_anatomy(5, 6, bits=8).astype(np.uint8)
    image = sitk.GetImageFromArray(np.stack([grey] * 3, -1), isVector=True)
    sitk.WriteImage(image, str(tmp_path / "grey.mha"))
    np.testing.assert_array_equal(read_xray(tmp_path / "grey.mha")[0], grey)
    colour = np.stack([grey, grey, 255 - grey], -1)
    sitk.WriteImage(sitk.GetImageFromArray(colour, isVector=True), str(tmp_path / "colour.mha"))
    with pytest.raises(UnsupportedImageError, match="colour"):
        read_xray(tmp_path / "colour.mha")


def test_direction_is_not_applied_but_noted(tmp_path):
    values = chest_anatomy(4, 6)
    image = sitk.GetImageFromArray(values)
    image.SetDirection((-1.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / "x.nrrd"))
    arr, meta = read_xray(tmp_path / "x.nrrd")
    np.testing.assert_array_equal(arr, values)  # never flipped
    assert any("direction" in note for note in meta.notes)


def test_corrupt_header(tmp_path):
    (tmp_path / "x.mha").write_text("ObjectType = Image\nNDims = banana\n")
    with pytest.raises(InputError, match="unreadable mha header"):
        read_xray(tmp_path / "x.mha")


def test_missing_simpleitk_is_a_missing_decoder(tmp_path, monkeypatch):
    path = _write(np.zeros((4, 4), np.uint8), tmp_path / "x.nii")
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # import now raises ImportError
    with pytest.raises(MissingDecoderError, match="SimpleITK"):
        read_xray(path)
