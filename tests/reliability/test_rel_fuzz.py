"""Bounded, deterministic fuzzing of the three parsers that take untrusted files: the DICOM
reader, the PNG/JPEG reader and the manifest loader. Nothing may escape but the toolkit's typed
errors (XrayStyleError subclasses, one line each), and no input may take long.

Crashers found are kept in tests/reliability/regressions/ and replayed by
``test_regression_files_are_refused_cleanly`` (README there). To keep a new one: copy the
falsifying bytes the failure message points to into that folder under a descriptive name.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from xraystyle.cohorts.manifest import load_manifest
from xraystyle.errors import XrayStyleError
from xraystyle.io import read_xray

from .hostile import canary_dicom

REGRESSIONS = Path(__file__).parent / "regressions"
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
MAX_SECONDS = 5.0  # per input; a hang or quadratic blow-up is a failure too


def _raster(fmt: str, arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


SEEDS = {
    "dcm": canary_dicom(12, 10),
    "png16": _raster("PNG", (np.arange(256).reshape(16, 16) * 251).astype(np.uint16)),
    "png8": _raster("PNG", np.arange(256, dtype=np.uint8).reshape(16, 16)),
    "jpg": _raster("JPEG", np.arange(256, dtype=np.uint8).reshape(16, 16)),
}
# Length fields worth planting: undefined, near 4 GiB, zero, 64 KiB.
_LENGTHS = [b"\xff\xff\xff\xff", b"\xf0\xff\xff\x7f", b"\x7f\xff\xff\xf0", b"\x00\x00\x00\x00", b"\xff\xff"]


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """A few flips, overwrites, truncations, insertions, deletions or planted lengths."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete", "length"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at: at + draw(st.integers(1, 16))]
        else:
            data[at: at + 4] = draw(st.sampled_from(_LENGTHS))
    return bytes(data)


def _must_be_clean(call, path: Path, data: bytes) -> None:
    """``call()`` returns or raises an XrayStyleError; anything else fails with a saved repro."""
    path.write_bytes(data)
    start = time.perf_counter()
    try:
        call()
    except XrayStyleError as exc:
        assert "\n" not in str(exc)
    except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
        keep = path.with_name(f"crasher-{type(exc).__name__}{path.suffix}")
        keep.write_bytes(data)
        raise AssertionError(f"{type(exc).__name__} escaped ({exc}); input saved to {keep}") from exc
    assert time.perf_counter() - start < MAX_SECONDS


def _read_ok(path: Path, allow_missing_preamble: bool = False) -> None:
    array, meta = read_xray(path, allow_missing_preamble=allow_missing_preamble)
    assert array.ndim == 2 and array.dtype == np.float32 and array.shape == (meta.rows, meta.columns)


@FUZZ
@given(data=mutated(SEEDS["dcm"]), forced=st.booleans())
def test_fuzz_dicom_reader(tmp_path_factory, data, forced):
    path = tmp_path_factory.getbasetemp() / "fuzz.dcm"
    _must_be_clean(lambda: _read_ok(path, forced), path, data)


@FUZZ
@given(key=st.sampled_from(["png16", "png8", "jpg"]), data=st.data())
def test_fuzz_png_and_jpeg_reader(tmp_path_factory, key, data):
    path = tmp_path_factory.getbasetemp() / ("fuzz.jpg" if key == "jpg" else "fuzz.png")
    _must_be_clean(lambda: _read_ok(path), path, data.draw(mutated(SEEDS[key])))


_COLUMNS = ["path", "patient_id", "study_id", "view", "split", "sex", "age", "effusion", "nodule", "no_finding",
            "phys_dose", "mask_effusion", "meta_note", "Effusion", "efusion", "", "mask_../x"]
_CELLS = st.one_of(
    st.sampled_from(["", "a.png", "img/x.png", "../x.png", "/etc/passwd", "C:\\x", "http://h/x", "file:///x",
                     "~/x", "a\x00b", "a\x07b", "1", "0", "1.0", "-1", "2", "train", "val", "test", "M", "F", "nan",
                     "inf", "1e309", " 1 ", "x\\y", "a/./b", "a//b", ".", "#", "\"", "\u00e9", "\ufeff", "\u202e"]),
    st.text(max_size=12))
_PREAMBLE = ["# root: .", "# root: /", "# root:", "# a comment", "# root: ..", "# root: a\x00b", "#root:x"]


@st.composite
def manifest_text(draw) -> bytes:
    kind = draw(st.sampled_from(["rows", "rows", "rows", "text", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    cols = draw(st.lists(st.sampled_from(_COLUMNS), max_size=8))
    if draw(st.booleans()):
        cols = ["path", "patient_id", "study_id", "view", "split", *cols]
    buf = io.StringIO()
    for line in draw(st.lists(st.sampled_from(_PREAMBLE), max_size=2)):
        buf.write(line + "\n")
    writer = csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(cols)
    for _ in range(draw(st.integers(0, 6))):
        width = draw(st.sampled_from([len(cols), len(cols), max(0, len(cols) - 1), len(cols) + 1]))
        writer.writerow([draw(_CELLS) for _ in range(width)])
    text = buf.getvalue()
    if draw(st.booleans()):  # one stray quote, NUL, CR or separator anywhere
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\"", "\x00", "\r", ",", "\n"])) + text[at:]
    return text.encode("utf-8", "surrogatepass")


def _load_and_use(path: Path) -> None:
    m = load_manifest(path)
    m.content_hash()
    for rel in m.df["path"]:
        m.resolve(rel)
    if "effusion" in m.df.columns:
        m.domain_labels(["normal", "effusion"])


@FUZZ
@given(data=manifest_text())
def test_fuzz_manifest_loader(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz-manifest.csv"
    _must_be_clean(lambda: _load_and_use(path), path, data)


def _regression_files() -> list[Path]:
    return sorted(p for p in REGRESSIONS.iterdir() if p.is_file() and p.name != "README.md")


def test_regressions_folder_is_not_empty():
    assert _regression_files(), "the fuzz crashers found so far must be kept and replayed"


@pytest.mark.parametrize("path", _regression_files(), ids=lambda p: p.name)
def test_regression_files_are_refused_cleanly(path, tmp_path):
    copy = tmp_path / path.name
    data = path.read_bytes()
    if path.suffix == ".csv":
        _must_be_clean(lambda: _load_and_use(copy), copy, data)
    else:
        for forced in (False, True):
            _must_be_clean(lambda forced=forced: _read_ok(copy, forced), copy, data)
