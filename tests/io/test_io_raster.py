"""PNG and JPEG: exact 16-bit data, grey RGB accepted, colour and transparency refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from xraystyle.errors import InputError, UnsupportedImageError
from xraystyle.io import read_xray

from .conftest import chest_anatomy


def test_sixteen_bit_png_round_trip_is_exact(tmp_path):
    values = np.random.default_rng(0).integers(0, 65536, size=(37, 23), dtype=np.uint16)
    values[0, 0], values[-1, -1] = 0, 65535
    Image.fromarray(values).save(tmp_path / "x.png")
    arr, meta = read_xray(tmp_path / "x.png")
    assert arr.dtype == np.float32 and arr.shape == (37, 23)
    np.testing.assert_array_equal(arr, values)
    assert (meta.source_format, meta.bits_allocated, meta.bits_stored) == ("png", 16, 16)
    assert (meta.rows, meta.columns) == (37, 23)


def test_eight_bit_png_and_jpeg(tmp_path):
    values = chest_anatomy(64, 48, bits=8).astype(np.uint8)
    Image.fromarray(values).save(tmp_path / "x.png")
    Image.fromarray(values).save(tmp_path / "x.jpg", quality=95)
    png, _ = read_xray(tmp_path / "x.png")
    jpeg, meta = read_xray(tmp_path / "x.jpg")
    np.testing.assert_array_equal(png, values)
    assert meta.source_format == "jpeg" and np.abs(jpeg - values).mean() < 3


def test_content_wins_over_extension(tmp_path):
    values = chest_anatomy(16, 16, bits=8).astype(np.uint8)
    Image.fromarray(values).save(tmp_path / "x.png")
    (tmp_path / "x.png").rename(tmp_path / "really-a-png.dcm")
    arr, meta = read_xray(tmp_path / "really-a-png.dcm")
    assert meta.source_format == "png"
    np.testing.assert_array_equal(arr, values)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_grey_saved_as_rgb_is_accepted(tmp_path, suffix):
    grey = chest_anatomy(64, 48, bits=8).astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / f"x.{suffix}")
    arr, meta = read_xray(tmp_path / f"x.{suffix}")
    assert arr.shape == grey.shape and meta.bits_allocated == 8
    if suffix == "png":
        np.testing.assert_array_equal(arr, grey)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_true_colour_is_refused(tmp_path, suffix):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[8:24, 8:24, 0] = 255  # a red annotation box
    Image.fromarray(rgb).save(tmp_path / f"x.{suffix}")
    with pytest.raises(UnsupportedImageError, match="colour image"):
        read_xray(tmp_path / f"x.{suffix}")


def test_opaque_alpha_is_accepted_transparency_refused(tmp_path):
    grey = chest_anatomy(16, 16, bits=8).astype(np.uint8)
    alpha = np.full_like(grey, 255)
    Image.fromarray(np.stack([grey, alpha], -1), mode="LA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(read_xray(tmp_path / "opaque.png")[0], grey)
    alpha[0, 0] = 0
    Image.fromarray(np.stack([grey, grey, grey, alpha], -1), mode="RGBA").save(tmp_path / "holes.png")
    with pytest.raises(UnsupportedImageError, match="transparent"):
        read_xray(tmp_path / "holes.png")


def test_grey_palette_png(tmp_path):
    grey = chest_anatomy(16, 16, bits=8).astype(np.uint8)
    Image.fromarray(grey).convert("P").save(tmp_path / "p.png")  # P of an L image keeps a grey palette
    np.testing.assert_array_equal(read_xray(tmp_path / "p.png")[0], grey)


def test_sixteen_bit_rgb_png_is_refused_not_truncated(tmp_path):
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pixels = np.full((4, 4, 3), 1000, ">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    ihdr = struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0)
    (tmp_path / "rgb16.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    with pytest.raises(UnsupportedImageError, match="16-bit RGB PNG"):
        read_xray(tmp_path / "rgb16.png")


def test_exif_orientation_is_ignored_never_flipped(tmp_path):
    grey = np.tile(np.arange(32, dtype=np.uint8) * 8, (16, 1))  # left dark, right bright
    image = Image.fromarray(grey)
    exif = image.getexif()
    exif[0x0112] = 2  # "mirror horizontal"
    image.save(tmp_path / "x.jpg", exif=exif, quality=95)
    arr, meta = read_xray(tmp_path / "x.jpg")
    assert arr[:, -1].mean() > arr[:, 0].mean()  # still left dark, right bright
    assert any("EXIF orientation 2 ignored" in note for note in meta.notes)


def test_frame_other_than_zero_is_refused_for_single_images(tmp_path):
    Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4)).save(tmp_path / "x.png")
    assert read_xray(tmp_path / "x.png", frame=0)[0].shape == (4, 4)
    with pytest.raises(InputError, match="single image"):
        read_xray(tmp_path / "x.png", frame=1)
