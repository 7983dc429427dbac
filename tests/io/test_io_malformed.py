"""Malformed and hostile files: each becomes an InputError subclass with a one-line reason."""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from xraystyle.errors import InputError, UnsupportedImageError
from xraystyle.io import read_xray

from .conftest import build_dicom, chest_anatomy, save


def _refused(path, error=InputError, match=None, **kwargs):
    with pytest.raises(error, match=match) as err:
        read_xray(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def _pixel_tag_offset(data: bytes) -> int:
    return data.rindex(b"\xe0\x7f\x10\x00OW")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.dcm").write_bytes(b"")
    _refused(tmp_path / "empty.dcm", match="empty file")


def test_missing_file_and_directory(tmp_path):
    _refused(tmp_path / "nope.dcm", match="no such file")
    _refused(tmp_path, match="not a regular file")


def test_text_named_dcm(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("Patient seen today. Nothing to report.\n" * 20)
    _refused(path, match="not a DICOM file")
    _refused(path, allow_missing_preamble=True)  # forced parsing finds no image either


def test_pydicom_messages_are_swallowed(tmp_path, caplog, recwarn):
    # Forced parsing of text makes pydicom warn and log; its messages may quote values.
    path = tmp_path / "notes.dcm"
    path.write_text("Patient CANARY seen today.\n" * 20)
    with caplog.at_level("DEBUG"):
        _refused(path, allow_missing_preamble=True)
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]
    assert not [w for w in recwarn if "pydicom" in w.filename]


def test_reading_on_threads_leaves_warning_filters_as_they_were(tmp_path):
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "notes.dcm"
    path.write_text("not an image\n" * 20)
    good = save(build_dicom(chest_anatomy()), tmp_path / "good.dcm")
    before = list(warnings.filters)

    def read(i):
        try:
            return read_xray(good if i % 2 else path, allow_missing_preamble=True)[0].shape
        except InputError:
            return None

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(read, range(40)))
    assert results.count(None) == 20 and warnings.filters == before


def test_unknown_format(tmp_path):
    path = tmp_path / "image.xyz"
    path.write_bytes(b"\x01\x02\x03" * 50)
    _refused(path, UnsupportedImageError, match="unrecognised file format")


def test_missing_preamble_is_refused_unless_allowed(tmp_path):
    stored = chest_anatomy()
    full = save(build_dicom(stored), tmp_path / "full.dcm").read_bytes()
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(full[132:])  # drop the 128-byte preamble and 'DICM'
    _refused(bare, match="allow_missing_preamble")
    arr, _ = read_xray(bare, allow_missing_preamble=True)
    np.testing.assert_array_equal(arr, stored)


def test_missing_preamble_and_file_meta_without_extension(tmp_path):
    stored = chest_anatomy()
    ds = build_dicom(stored)
    del ds.file_meta
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    path = tmp_path / "IM0001"  # no extension: recognised by its first tag
    path.write_bytes(buf.getvalue())
    _refused(path, match="allow_missing_preamble")
    arr, meta = read_xray(path, allow_missing_preamble=True)
    np.testing.assert_array_equal(arr, stored)
    assert any("Implicit VR Little Endian" in note for note in meta.notes)


def test_truncated_header(tmp_path):
    data = save(build_dicom(chest_anatomy()), tmp_path / "x.dcm").read_bytes()
    cut = data.index(b"CANARY INSTITUTE") + 5  # inside an element value
    (tmp_path / "cut.dcm").write_bytes(data[:cut])
    message = _refused(tmp_path / "cut.dcm", match="truncated")
    assert "CANARY" not in message


def test_truncated_pixel_data(tmp_path):
    data = save(build_dicom(chest_anatomy()), tmp_path / "x.dcm").read_bytes()
    for name, cut in (("odd.dcm", 5), ("even.dcm", 100)):
        (tmp_path / name).write_bytes(data[:-cut])
        _refused(tmp_path / name, match="truncated")


def test_pixel_data_shorter_than_the_image(tmp_path):
    ds = build_dicom(chest_anatomy())
    ds.PixelData = ds.PixelData[:-40]  # consistent element length, too few pixels
    _refused(save(ds, tmp_path / "short.dcm"), match="pixel data truncated")


@pytest.mark.parametrize("where", ["pixel", "header", "sequence"])
def test_absurd_declared_length_is_refused_without_allocating(tmp_path, where):
    data = bytearray(save(build_dicom(chest_anatomy()), tmp_path / "x.dcm").read_bytes())
    if where == "pixel":
        struct.pack_into("<L", data, _pixel_tag_offset(data) + 8, 0xFFFFFFF0)
    elif where == "header":
        at = data.index(b"\x08\x00\x80\x00LO")  # InstitutionName
        struct.pack_into("<H", data, at + 6, 0xFFFF)
    else:
        at = _pixel_tag_offset(data)
        data[at:at] = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFF0)
    path = tmp_path / "absurd.dcm"
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        _refused(path, match="declares")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6


def test_huge_rows_columns_refused_before_decoding(tmp_path):
    ds = build_dicom(np.zeros((2, 2), np.uint16))
    ds.Rows, ds.Columns = 65535, 65535  # 4.3 gigapixels declared, 8 bytes present
    path = save(ds, tmp_path / "huge.dcm")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        _refused(path, UnsupportedImageError, match="max_pixels")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2.0 and peak < 20e6


def test_max_pixels_is_configurable(write_dicom):
    path = write_dicom(chest_anatomy(10, 10))
    _refused(path, UnsupportedImageError, match="max_pixels=99", max_pixels=99)
    assert read_xray(path, max_pixels=100)[0].shape == (10, 10)
    with pytest.raises(ValueError):
        read_xray(path, max_pixels=0)


def test_deeply_nested_sequences(tmp_path):
    data = save(build_dicom(chest_anatomy()), tmp_path / "x.dcm").read_bytes()
    sequence = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    level = sequence + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)  # undefined-length SQ and item
    close = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    at = _pixel_tag_offset(data)
    path = tmp_path / "deep.dcm"
    path.write_bytes(data[:at] + level * 5000 + close * 5000 + data[at:])
    _refused(path, match="nested too deeply")


def test_invalid_vr_on_an_optional_tag_is_tolerated(tmp_path):
    stored = chest_anatomy()
    data = bytearray(save(build_dicom(stored), tmp_path / "x.dcm").read_bytes())
    at = data.index(b"\x18\x00\x15\x00CS")  # BodyPartExamined
    data[at + 4 : at + 6] = b"ZZ"
    (tmp_path / "vr.dcm").write_bytes(bytes(data))
    arr, meta = read_xray(tmp_path / "vr.dcm")
    np.testing.assert_array_equal(arr, stored)
    assert meta.body_part is None


def test_invalid_vr_on_rows_is_refused(tmp_path):
    data = bytearray(save(build_dicom(chest_anatomy()), tmp_path / "x.dcm").read_bytes())
    at = data.index(b"\x28\x00\x10\x00US")
    data[at + 4 : at + 6] = b"ZZ"
    (tmp_path / "vr.dcm").write_bytes(bytes(data))
    _refused(tmp_path / "vr.dcm", match="Rows")


def test_non_numeric_number_of_frames(write_dicom):
    path = write_dicom(chest_anatomy(), NumberOfFrames=1)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"\x28\x00\x08\x00IS\x02\x001 ", b"\x28\x00\x08\x00IS\x02\x00x "))
    _refused(path, match="NumberOfFrames")


def _png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_png_decompression_bomb(tmp_path):
    side = 12_000  # 144 megapixels of zeros in ~20 kB
    zipper = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)
    idat = b"".join(zipper.compress(row) for _ in range(side)) + zipper.flush()
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(side, side, idat))
    assert path.stat().st_size < 1e6
    start = time.perf_counter()
    _refused(path, UnsupportedImageError, match="max_pixels")
    assert time.perf_counter() - start < 2.0


def test_png_above_pillows_own_limit(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png(20_000, 20_000, zlib.compress(b"\x00" * 10)))
    _refused(path, UnsupportedImageError, match="decompression-bomb", max_pixels=10**9)


def test_truncated_png_and_jpeg(tmp_path):
    from PIL import Image

    image = Image.fromarray(chest_anatomy(64, 64, bits=8).astype(np.uint8))
    for name in ("x.png", "x.jpg"):
        image.save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        _refused(tmp_path / f"cut-{name}", match="truncated or corrupt")


def test_png_without_header(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4)
    _refused(path, match="IHDR")
