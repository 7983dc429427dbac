"""Hostile inputs for the reliability battery: malformed radiographs, identifier-laden DICOMs,
pickle payloads and a byte scanner for identifier canaries.

Builders return bytes (or write files) so the same corpus feeds ``read_xray``, the CLI commands
and ``cohort check``.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.io.conftest import CANARIES, PRIVATE_CANARY, build_dicom, chest_anatomy

# Identifiers beyond tests/io's set, and a source file name that is itself an identifier.
EXTRA_CANARIES = {
    "PerformingPhysicianName": "CANARYPERF^LMNO",
    "OperatorsName": "CANARYOPER^HJKL",
    "StudyDate": "19990807",
    "InstitutionAddress": "CANARY STREET 77",
    "OtherPatientIDs": "CANARYOTHERID55",
}
IDENTIFYING_STEM = "Doe_Jane_DOEJ778123"
# At least 8 characters each: shorter needles could turn up by chance in compressed or float bytes.
CANARY_STRINGS = sorted({*CANARIES.values(), PRIVATE_CANARY, *EXTRA_CANARIES.values(), "CANARYNAME",
                         "Doe_Jane", "DOEJ778123", "CANARYPID"})


def _dicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def canary_dicom(rows: int = 48, columns: int = 40, seed: int = 0, **tags) -> bytes:
    """A 12-bit DX chest whose header holds every identifier canary (patient, institution,
    physicians, dates, UIDs, a private tag)."""
    return _dicom_bytes(build_dicom(chest_anatomy(rows, columns, seed=seed), **{**EXTRA_CANARIES, **tags}))


def _pixel_tag(data: bytes) -> int:
    return data.rindex(b"\xe0\x7f\x10\x00OW")


def _png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _raster(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chest_anatomy(64, 64, bits=8).astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


@dataclass(frozen=True)
class Malformed:
    name: str  # file name (its suffix matters to the format sniffing)
    reason: str  # substring the one-line reason must contain
    build: Callable[[], bytes]


def _absurd(where: str) -> bytes:
    data = bytearray(canary_dicom())
    if where == "pixel":
        struct.pack_into("<L", data, _pixel_tag(data) + 8, 0xFFFFFFF0)
    elif where == "header":
        at = data.index(b"\x08\x00\x80\x00LO")  # InstitutionName, a 2-byte length VR
        struct.pack_into("<H", data, at + 6, 0xFFFF)
    else:  # an explicit-length sequence declaring ~4 GiB
        at = _pixel_tag(data)
        data[at:at] = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFF0)
    return bytes(data)


def _invalid_vr() -> bytes:
    data = bytearray(canary_dicom())
    at = data.index(b"\x28\x00\x10\x00US")  # Rows
    data[at + 4: at + 6] = b"ZZ"
    return bytes(data)


def _truncated_header() -> bytes:
    data = canary_dicom()
    return data[: data.index(b"CANARY INSTITUTE") + 5]  # inside an identifying value


def _huge() -> bytes:
    ds = build_dicom(np.zeros((2, 2), np.uint16))
    ds.Rows, ds.Columns = 65535, 65535  # 4.3 gigapixels declared, 8 bytes present
    return _dicom_bytes(ds)


def _deep() -> bytes:
    data = canary_dicom()
    sequence = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    level = sequence + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)  # undefined-length SQ + item
    close = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    at = _pixel_tag(data)
    return data[:at] + level * 5000 + close * 5000 + data[at:]


def _bomb() -> bytes:
    side = 12_000  # 144 megapixels of zeros in ~20 kB
    zipper = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)
    return _png(side, side, b"".join(zipper.compress(row) for _ in range(side)) + zipper.flush())


# REFERENCE.md section 5, "Malformed files", one entry each (absurd lengths in three places).
MALFORMED = [
    Malformed("zero.dcm", "empty file", lambda: b""),
    Malformed("notes.dcm", "not a DICOM file", lambda: b"Patient seen today. Nothing to report.\n" * 20),
    Malformed("bare.dcm", "allow_missing_preamble", lambda: canary_dicom()[132:]),
    Malformed("badvr.dcm", "Rows", _invalid_vr),
    Malformed("cuthead.dcm", "truncated", _truncated_header),
    Malformed("cutpixels.dcm", "truncated", lambda: canary_dicom()[:-100]),
    Malformed("absurd-pixel.dcm", "declares", lambda: _absurd("pixel")),
    Malformed("absurd-header.dcm", "declares", lambda: _absurd("header")),
    Malformed("absurd-sequence.dcm", "declares", lambda: _absurd("sequence")),
    Malformed("huge.dcm", "max_pixels", _huge),
    Malformed("deep.dcm", "nested too deeply", _deep),
    Malformed("bomb.png", "max_pixels", _bomb),
    Malformed("cut.jpg", "truncated or corrupt", lambda: (lambda d: d[: len(d) // 2])(_raster("JPEG"))),
    Malformed("cut.png", "truncated or corrupt", lambda: (lambda d: d[: len(d) // 2])(_raster("PNG"))),
]


def write_malformed(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for case in MALFORMED:
        path = folder / case.name
        path.write_bytes(case.build())
        out[case.name] = path
    return out


class PicklePayload:
    """Unpickling this runs ``touch MARKER``: the canonical pickle code-execution payload."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def scan_for_canaries(roots=(), texts=()) -> list[str]:
    """Canary hits in the bytes of every file under ``roots``, in every file or folder *name*
    below them, and in ``texts`` (captured output and logs). Case-insensitive."""
    hits = []
    patterns = [(c, re.compile(re.escape(c.encode()), re.IGNORECASE)) for c in CANARY_STRINGS]
    for root in map(Path, roots):
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for p in paths:
            rel = p.name
            hits += [f"name {rel}: {c}" for c in CANARY_STRINGS if c.lower() in rel.lower()]
            if p.is_file():
                data = p.read_bytes()
                hits += [f"{rel}: {c}" for c, pat in patterns if pat.search(data)]
    for text in texts:
        hits += [f"text: {c}" for c in CANARY_STRINGS if c.lower() in text.lower()]
    return hits
