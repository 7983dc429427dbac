"""Hostile inputs of issue #18: truncated NIfTI, images with nothing to learn from (all NaN,
infinite, constant), corrupt compressed DICOM pixel data, and free-text values planted in coded
DICOM fields (BodyPartExamined, VOILUTFunction, PresentationLUTShape, ...).

Each is refused with one line naming the file and the reason (no traceback, no logged
traceback), or read with the planted value dropped: it must reach no output."""

from __future__ import annotations

import gzip
import json
import logging
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.io.conftest import build_dicom, chest_anatomy, save
from xraystyle.errors import InputError
from xraystyle.io import read_xray

from .conftest import cli, one_line_error

sitk = pytest.importorskip("SimpleITK")

CANARY = "ZZCANARY123"
ANATOMY = chest_anatomy(64, 64)  # uint16, values up to ~3300


def _sitk_bytes(tmp_path: Path, array: np.ndarray, suffix: str) -> bytes:
    path = tmp_path / f"whole{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path.read_bytes()


def _nifti1(array: np.ndarray, endian: str = "<", vox_offset: int = 352, dims=None) -> bytes:
    """A minimal single-file NIfTI-1 (``n+1``) with the given byte order, written by hand."""
    array = np.asarray(array)
    codes = {np.dtype(np.uint8): (2, 8), np.dtype(np.int16): (4, 16), np.dtype(np.uint16): (512, 16),
             np.dtype(np.float32): (16, 32)}
    datatype, bitpix = codes[array.dtype]
    h = bytearray(348)
    struct.pack_into(f"{endian}i", h, 0, 348)
    rows, columns = array.shape
    struct.pack_into(f"{endian}8h", h, 40, *(dims or (2, columns, rows, 1, 1, 1, 1, 1)))
    struct.pack_into(f"{endian}hh", h, 70, datatype, bitpix)
    struct.pack_into(f"{endian}8f", h, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into(f"{endian}f", h, 108, float(vox_offset))
    struct.pack_into(f"{endian}f", h, 112, 1.0)  # scl_slope
    h[344:348] = b"n+1\x00"
    pad = b"\x00" * (vox_offset - 348)
    return bytes(h) + pad + array.astype(array.dtype.newbyteorder(endian)).tobytes()


# ------------------------------------------------------------------------------ 1. truncated NIfTI

def _truncated_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, substring of the expected reason)."""
    nii = _sitk_bytes(tmp_path, ANATOMY, ".nii")
    out: dict[str, tuple[Path, str]] = {}

    def put(name: str, data: bytes, reason: str = "truncated NIfTI pixel data") -> None:
        (tmp_path / name).write_bytes(data)
        out[name] = (tmp_path / name, reason)

    put("half.nii", nii[: len(nii) // 2])
    put("half-inner.nii.gz", gzip.compress(nii[: len(nii) // 2]))  # complete gzip of half a file
    whole_gz = _sitk_bytes(tmp_path, ANATOMY, ".nii.gz")
    put("half-stream.nii.gz", whole_gz[: len(whole_gz) // 2])  # the gzip stream itself cut
    put("big-endian.nii", _nifti1(ANATOMY, ">")[:-4096])
    put("header-only.nii", nii[:352])
    # The header claims 3000 x 3000 pixels, 64 bytes follow it.
    claims = bytearray(nii[:352])
    struct.pack_into("<8h", claims, 40, 2, 3000, 3000, 1, 1, 1, 1, 1)
    put("claims-3000.nii", bytes(claims) + bytes(64))
    # A header + image pair whose .img is cut.
    hdr = tmp_path / "whole.hdr"
    sitk.WriteImage(sitk.GetImageFromArray(ANATOMY), str(hdr))
    put("pair.hdr", hdr.read_bytes())
    (tmp_path / "pair.img").write_bytes((tmp_path / "whole.img").read_bytes()[:4096])
    # Already refused before issue #18; kept so the battery covers every SimpleITK format.
    mha = _sitk_bytes(tmp_path, ANATOMY, ".mha")
    put("half.mha", mha[: len(mha) // 2], "truncated or corrupt mha")
    nrrd = _sitk_bytes(tmp_path, ANATOMY, ".nrrd")
    put("half.nrrd", nrrd[: len(nrrd) // 2], "truncated or corrupt nrrd")
    return out


TRUNCATED = ["half.nii", "half-inner.nii.gz", "half-stream.nii.gz", "big-endian.nii", "header-only.nii",
             "claims-3000.nii", "pair.hdr", "half.mha", "half.nrrd"]


@pytest.fixture(scope="module")
def truncated(tmp_path_factory):
    return _truncated_cases(tmp_path_factory.mktemp("truncated"))


@pytest.mark.parametrize("name", TRUNCATED)
def test_truncated_nifti_mha_nrrd_are_refused(truncated, name):
    path, reason = truncated[name]
    with pytest.raises(InputError) as err:
        read_xray(path)
    assert str(err.value).startswith(f"{path}: ") and reason in err.value.reason, err.value
    one_line_error(cli("inspect", path), path, reason)


def test_truncated_nifti_reason_gives_both_sizes(truncated):
    path, _ = truncated["half.nii"]
    size = path.stat().st_size
    with pytest.raises(InputError, match=rf"header declares {352 + 64 * 64 * 2} bytes, file holds {size}\)"):
        read_xray(path)


def test_cohort_check_counts_truncated_nifti_as_unreadable(truncated):
    folder = truncated["half.nii"][0].parent
    good = folder / "good.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(ANATOMY), str(good))
    names = ["good.nii.gz", *TRUNCATED]
    rows = [{"path": n, "patient_id": f"p{i}", "study_id": "", "view": "PA", "split": "train"}
            for i, n in enumerate(names)]
    pd.DataFrame(rows).to_csv(folder / "m.csv", index=False)
    r = cli("cohort", "check", folder / "m.csv", "--workers", 2)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    lines = [line for line in r.stdout.splitlines() if line.startswith("row ")]
    assert [line.split(":")[0] for line in lines] == [f"row {i}" for i in range(2, len(names) + 1)], r.output


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("name", ["x.nii", "x.nii.gz"])
def test_intact_nifti_of_either_byte_order_still_reads(tmp_path, endian, name):
    data = _nifti1(ANATOMY, endian)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    arr, _ = read_xray(path)
    np.testing.assert_array_equal(arr, ANATOMY)
    pair = tmp_path / "pair.hdr"
    sitk.WriteImage(sitk.GetImageFromArray(ANATOMY), str(pair))
    np.testing.assert_array_equal(read_xray(pair)[0], ANATOMY)


def test_nifti2_header_is_understood(tmp_path):
    """SimpleITK builds differ in NIfTI-2 support: the size check must understand its header."""
    from xraystyle.io.nifti import nifti_data_size

    h = bytearray(540)
    struct.pack_into("<i", h, 0, 540)
    h[4:12] = b"n+2\x00\r\n\x1a\n"
    struct.pack_into("<hh", h, 12, 512, 16)  # uint16
    struct.pack_into("<8q", h, 16, 2, 64, 64, 1, 1, 1, 1, 1)
    struct.pack_into("<q", h, 168, 544)
    path = tmp_path / "x.nii"
    path.write_bytes(bytes(h) + bytes(4) + ANATOMY.tobytes()[:4096])
    declared, present = nifti_data_size(path)
    assert declared == 544 + 64 * 64 * 2 and present == 544 + 4096
    with pytest.raises(InputError):  # by our check, or by a SimpleITK without NIfTI-2 support
        read_xray(path)


def test_gzip_bomb_after_the_pixels_is_not_decompressed(tmp_path):
    """A valid 64 x 64 NIfTI followed by ~200 MB of zeros in the same gzip stream: the size
    check stops once the header's bytes are seen."""
    zipper = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    parts = [zipper.compress(_sitk_bytes(tmp_path, ANATOMY, ".nii"))]
    block = bytes(1 << 20)
    parts += [zipper.compress(block) for _ in range(200)]
    parts.append(zipper.flush())
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(b"".join(parts))
    from xraystyle.io.nifti import nifti_data_size

    tracemalloc.start()
    start = time.perf_counter()
    try:
        declared, present = nifti_data_size(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert present >= declared == 352 + 64 * 64 * 2
    assert present < declared + (4 << 20) and peak < 16e6 and time.perf_counter() - start < 2


# ---------------------------------------------------------------------- 2. nothing to learn from

def _float_nifti(tmp_path: Path, name: str, array: np.ndarray) -> Path:
    path = tmp_path / name
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.float32)), str(path))
    return path


def _empty_images(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    from PIL import Image

    nan = np.full((16, 16), np.nan, np.float32)
    inf = np.full((16, 16), np.inf, np.float32)
    inf[:4] = -np.inf
    out = {
        "nan.nii": (_float_nifti(tmp_path, "nan.nii", nan), "no finite pixel"),
        "inf.mha": (_float_nifti(tmp_path, "inf.mha", inf), "no finite pixel"),
        "flat.nii.gz": (_float_nifti(tmp_path, "flat.nii.gz", np.full((16, 16), 7.5)), "constant image"),
        "nan-and-flat.nrrd": (_float_nifti(tmp_path, "nan-and-flat.nrrd",
                                           np.where(np.eye(16, dtype=bool), np.nan, 3.0)), "constant image"),
    }
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(tmp_path / "flat.png")
    out["flat.png"] = (tmp_path / "flat.png", "constant image")
    save(build_dicom(np.full((16, 16), 1000, np.uint16), canaries=False), tmp_path / "flat.dcm")
    out["flat.dcm"] = (tmp_path / "flat.dcm", "constant image")
    # Stored values differ, but every one is PixelPaddingValue or inside its range.
    stored = np.where(np.eye(16, dtype=bool), 0, 5).astype(np.uint16)
    save(build_dicom(stored, canaries=False, PixelPaddingValue=0, PixelPaddingRangeLimit=10), tmp_path / "pad.dcm")
    out["pad.dcm"] = (tmp_path / "pad.dcm", "padding")
    return out


EMPTY = ["nan.nii", "inf.mha", "flat.nii.gz", "nan-and-flat.nrrd", "flat.png", "flat.dcm", "pad.dcm"]


@pytest.fixture(scope="module")
def empty_images(tmp_path_factory):
    return _empty_images(tmp_path_factory.mktemp("empty"))


@pytest.mark.parametrize("name", EMPTY)
def test_images_without_content_are_refused(empty_images, name):
    path, reason = empty_images[name]
    with pytest.raises(InputError) as err:
        read_xray(path)
    assert reason in err.value.reason and "\n" not in str(err.value), err.value
    for extra in ([], ["--json"]):
        one_line_error(cli("inspect", path, *extra), path, reason)


def test_some_non_finite_pixels_are_replaced_by_the_minimum_and_noted(tmp_path):
    values = ANATOMY.astype(np.float32) + 0.5
    values[:3] = np.nan  # NaN padding rows, as some float exports have
    values[-1, :5] = np.inf
    arr, meta = read_xray(_float_nifti(tmp_path, "padded.nii.gz", values))
    finite = np.isfinite(values)
    assert np.isfinite(arr).all()
    assert np.all(arr[~finite] == values[finite].min())
    np.testing.assert_array_equal(arr[finite], values[finite])
    assert meta.valid_mask is not None and np.array_equal(meta.valid_mask, finite)
    assert any("non-finite" in note and "minimum finite value" in note for note in meta.notes)
    report = json.loads(cli("inspect", tmp_path / "padded.nii.gz", "--json").stdout)
    assert report["value_min"] == float(values[finite].min()) and report["padding_fraction"] > 0


def test_cohort_check_counts_empty_images_as_unreadable(empty_images, tmp_path):
    folder = empty_images["nan.nii"][0].parent
    save(build_dicom(chest_anatomy(), canaries=False), folder / "good.dcm")
    names = ["good.dcm", *EMPTY]
    rows = [{"path": n, "patient_id": f"p{i}", "study_id": "", "view": "PA", "split": "train"}
            for i, n in enumerate(names)]
    pd.DataFrame(rows).to_csv(folder / "m.csv", index=False)
    r = cli("cohort", "check", folder / "m.csv", "--workers", 2)
    assert r.exit_code == 1, r.output
    lines = [line for line in r.stdout.splitlines() if line.startswith("row ")]
    assert len(lines) == len(EMPTY) and not any("good.dcm" in line for line in lines), r.output


def test_tensor_cache_skips_empty_images(empty_images, tmp_path):
    from xraystyle.cohorts.manifest import load_manifest
    from xraystyle.data.cache import build_tensor_cache
    from xraystyle.transforms.config import PreprocessConfig

    folder = empty_images["nan.nii"][0].parent
    save(build_dicom(chest_anatomy(), canaries=False), folder / "good2.dcm")
    rows = [{"path": n, "patient_id": f"p{i}", "study_id": "", "view": "PA", "split": "train"}
            for i, n in enumerate(["good2.dcm", "flat.png", "nan.nii"])]
    pd.DataFrame(rows).to_csv(folder / "m3.csv", index=False)
    cache = build_tensor_cache(load_manifest(folder / "m3.csv"), PreprocessConfig(size=16), tmp_path / "t",
                               max_bad_fraction=0.9, progress=False)
    assert cache.ok.tolist() == [True, False, False]


# -------------------------------------------------------------- 3. corrupt compressed pixel data

def _corrupt_compressed(tmp_path: Path, syntax) -> Path:
    """A valid header around a compressed stream whose second half is scrambled."""
    from pydicom.encaps import encapsulate, generate_fragments
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

    stored = chest_anatomy(48, 40)
    if syntax == JPEGBaseline8Bit:  # no encoder here: a JPEG stream that stops after its header
        ds = build_dicom(chest_anatomy(48, 40, bits=8).astype(np.uint8), bits_allocated=8, bits_stored=8,
                         canaries=False)
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(52)])
    else:
        ds = build_dicom(stored, canaries=False)
        ds.compress(syntax, stored, encoding_plugin="pylibjpeg" if syntax == JPEG2000Lossless else "pydicom")
        fragment = bytearray(b"".join(generate_fragments(ds.PixelData)))
        for i in range(len(fragment) // 4, len(fragment)):
            fragment[i] = (fragment[i] * 7 + 13) & 0xFF
        ds.PixelData = encapsulate([bytes(fragment) + b"\x00" * (len(fragment) % 2)])
    assert syntax == RLELossless or syntax in (JPEG2000Lossless, JPEGBaseline8Bit)
    return save(ds, tmp_path / f"corrupt-{syntax.name.split()[0].lower()}.dcm")


@pytest.mark.parametrize("syntax_name", ["JPEG2000Lossless", "RLELossless", "JPEGBaseline8Bit"])
def test_corrupt_compressed_pixel_data_is_one_line_without_logged_traceback(tmp_path, syntax_name, caplog,
                                                                              capfd):
    import pydicom.uid
    from pydicom.pixels import get_decoder

    syntax = getattr(pydicom.uid, syntax_name)
    if syntax_name == "JPEG2000Lossless" and not get_decoder(syntax).is_available:
        pytest.skip("cannot build a JPEG 2000 file without its plugin")
    path = _corrupt_compressed(tmp_path, syntax)
    decodable = get_decoder(syntax).is_available
    reason = "could not be decoded" if decodable else "needs a decoder plugin that is not installed"
    caplog.set_level(logging.DEBUG)
    for extra in ([], ["--json"]):
        r = cli("inspect", path, *extra)
        one_line_error(r, path, syntax.name, reason)
        assert r.stdout == ""
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out + caplog.text
    assert not [rec for rec in caplog.records if rec.name.startswith("pydicom")]
    # The logger tree is back as it was: pydicom logs again outside our reads.
    logging.getLogger("pydicom.pixels.decoders.base").error("after the read")
    assert any(rec.name == "pydicom.pixels.decoders.base" for rec in caplog.records)


@pytest.mark.slow
def test_corrupt_compressed_pixel_data_in_a_subprocess_prints_one_line(tmp_path):
    """The real entry point: logging configured by the CLI, stderr a real stream."""
    import subprocess
    import sys

    from pydicom.uid import RLELossless

    from .conftest import REPO, subprocess_env

    path = _corrupt_compressed(tmp_path, RLELossless)
    proc = subprocess.run([sys.executable, "-m", "xraystyle", "inspect", str(path)], capture_output=True,
                          text=True, env=subprocess_env(tmp_path / "cache"), cwd=REPO, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"xraystyle: error: {path}: RLE Lossless pixel data could not be decoded (corrupt or truncated)"]


# ------------------------------------------------- 4 and 5. free text in coded DICOM header fields

def _scan(texts) -> list[str]:
    return [t for t in texts if CANARY.lower() in t.lower()]


@pytest.mark.parametrize("value, expected", [("CHEST", "CHEST"), ("chest ", "CHEST"), ("Thorax", "THORAX"),
                                             ("LUNG", "LUNG"), ("ABDOMEN", "ABDOMEN"), (CANARY, None),
                                             ("DOE^JANE", None), ("CHEST PA", None)])
def test_body_part_is_kept_only_as_a_defined_term(tmp_path, value, expected):
    path = save(build_dicom(chest_anatomy(), canaries=False, BodyPartExamined=value), tmp_path / "x.dcm")
    _, meta = read_xray(path)
    assert meta.body_part == expected
    dropped = [n for n in meta.notes if "BodyPartExamined" in n]
    assert dropped == ([] if expected else ["BodyPartExamined value not a defined term; dropped"])


CANARY_TAGS = {
    "BodyPartExamined": dict(BodyPartExamined=CANARY),
    "VOILUTFunction": dict(VOILUTFunction=CANARY, WindowCenter=1500.0, WindowWidth=3000.0),
    "PresentationLUTShape": dict(PresentationLUTShape=CANARY),
    "BurnedInAnnotation": dict(BurnedInAnnotation=CANARY),
}


@pytest.mark.parametrize("field", list(CANARY_TAGS))
def test_canary_in_a_coded_field_reaches_no_output(tmp_path, field, caplog):
    caplog.set_level(logging.DEBUG)
    path = save(build_dicom(chest_anatomy(), canaries=False, **CANARY_TAGS[field]), tmp_path / "x.dcm")
    _, meta = read_xray(path)
    texts = [json.dumps(meta.to_dict()), repr(meta)]
    for extra in ([], ["--json"]):
        r = cli("inspect", path, *extra)
        assert r.exit_code == 0, r.output
        texts += [r.output]
    assert any(f"unrecognised {field}" in note or ("BodyPartExamined" in note and "dropped" in note)
               for note in meta.notes), meta.notes
    texts.append(caplog.text)
    assert not _scan(texts)
    if field == "VOILUTFunction":
        assert meta.voi_applied == "window" and meta.voi_lut_function is None  # LINEAR used, value not kept


def test_canary_photometric_interpretation_is_not_echoed_in_the_error(tmp_path):
    path = save(build_dicom(chest_anatomy(), canaries=False, PhotometricInterpretation=CANARY), tmp_path / "x.dcm")
    line = one_line_error(cli("inspect", path), path, "unrecognised photometric interpretation")
    assert not _scan([line])
    rgb = save(build_dicom(np.zeros((4, 4, 3), np.uint8), canaries=False, PhotometricInterpretation="RGB",
                           SamplesPerPixel=3, bits_allocated=8, bits_stored=8), tmp_path / "rgb.dcm")
    one_line_error(cli("inspect", rgb), rgb, "photometric interpretation RGB")


def test_derived_dicom_writer_drops_a_body_part_that_is_not_a_defined_term(tmp_path):
    import pydicom

    from xraystyle.io.dicom_writer import DerivedImage, write_derived_dicom

    pixels = chest_anatomy(8, 8)
    for body_part, kept in ((CANARY, None), ("chest", "CHEST")):
        out = write_derived_dicom(tmp_path / "d.dcm", DerivedImage(pixels, 12, 2048, 4096, "t", body_part=body_part))
        assert CANARY.encode() not in out.read_bytes()
        assert pydicom.dcmread(out).get("BodyPartExamined") == kept


@pytest.mark.slow
def test_body_part_canary_reaches_neither_derived_dicom_nor_report(tmp_path, caplog):
    """End to end through ``synth --format dcm`` and ``report`` with the tiny trained model."""
    from tests.synthesis.helpers import trained_checkpoint

    caplog.set_level(logging.DEBUG)
    checkpoint = trained_checkpoint(tmp_path / "model")
    src = save(build_dicom(chest_anatomy(48, 40), canaries=False, BodyPartExamined=CANARY,
                           VOILUTFunction=CANARY, PresentationLUTShape=CANARY, WindowCenter=1500.0,
                           WindowWidth=3000.0), tmp_path / "src.dcm")
    r1 = cli("synth", "--checkpoint", checkpoint, "--source", src, "--target", "normal", "--n-styles", 1,
             "--out", tmp_path / "synth", "--format", "both")
    r2 = cli("report", "--checkpoint", checkpoint, "--input", src, "--n-styles", 1, "--out", tmp_path / "report")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    assert list((tmp_path / "synth").glob("*.dcm")) and (tmp_path / "report" / "report.html").exists()
    files = [p for d in ("synth", "report") for p in (tmp_path / d).rglob("*") if p.is_file()]
    hits = [p.name for p in files if CANARY.encode().lower() in p.read_bytes().lower()]
    assert not hits and not _scan([r1.output, r2.output, caplog.text])


def test_deep_sequences_are_named_at_every_stack_depth(tmp_path):
    """The recursion limit can strike inside pydicom's item reader, which re-raises it as an
    OSError: the reason must still say what is wrong, however deep the caller's stack is."""
    from .hostile import MALFORMED

    path = tmp_path / "deep.dcm"
    path.write_bytes(next(c for c in MALFORMED if c.name == "deep.dcm").build())

    def at_depth(n: int) -> str:
        if n:
            return at_depth(n - 1)
        with pytest.raises(InputError) as err:
            read_xray(path)
        return err.value.reason

    assert [n for n in range(40) if "nested too deeply" not in at_depth(n)] == []


def test_cohort_check_accepts_an_empty_mask_but_not_a_blank_image(tmp_path):
    """Masks may rightly be empty (no positive pixel); only images must have content."""
    import numpy as np
    from PIL import Image

    from xraystyle.cohorts.check import check_manifest
    from xraystyle.cohorts.manifest import load_manifest

    (tmp_path / "img").mkdir()
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)).save(tmp_path / "img" / "a.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "img" / "blank.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "img" / "mask_a.png")
    (tmp_path / "m.csv").write_text(
        "path,patient_id,study_id,view,split,effusion,mask_effusion\n"
        "img/a.png,p1,s1,PA,train,1,img/mask_a.png\n"
        "img/blank.png,p2,s2,PA,train,0,\n")
    n, failures = check_manifest(load_manifest(tmp_path / "m.csv"), workers=1)
    assert n == 3
    assert [(f.row, f.path) for f in failures] == [(2, "img/blank.png")] and "constant image" in failures[0].reason
