"""Shared test helpers for synthesis and reporting: a tiny trained model, source images, a fake
classifier and an output scanner for patient-identifier canaries."""

from __future__ import annotations

import base64
import re
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tests.io.conftest import CANARIES, PRIVATE_CANARY, build_dicom, chest_anatomy, save

# Identifiers tests/io/conftest.py does not plant, and a file name that is itself an identifier.
EXTRA_CANARIES = {
    "PerformingPhysicianName": "CANARYPERF^LMNO",
    "StudyDate": "19990807",
    "InstitutionAddress": "CANARY STREET 77",
}
IDENTIFYING_FILE = "Doe_John_DOEJ778123.dcm"
# Fragments too (a DICOM PN may be split at "^"); none shorter than 8 characters, so that a
# case-insensitive match in kilobytes of base64 text cannot happen by chance.
ALL_CANARIES = [*CANARIES.values(), PRIVATE_CANARY, *EXTRA_CANARIES.values(), "Doe_John", "DOEJ778123",
                "CANARYNAME", "CANARYDOC", "CANARYPERF"]


def trained_checkpoint(base: Path) -> Path:
    """A 4-step tiny (32 px) run, trained once per session into ``base`` and reused after."""
    from tests.training.conftest import write_png_cohort
    from xraystyle.paths import resolve_config
    from xraystyle.training.accel import make_accel
    from xraystyle.training.config import load_config
    from xraystyle.training.trainer import training_loop

    run = base / "run"
    done = run / "checkpoints"
    if not any(done.glob("step_*.pt")):
        torch.set_num_threads(1)
        manifest = write_png_cohort(base / "cohort")
        training_loop(load_config(resolve_config("tiny")), run, manifest, cache_dir=base / "cache",
                      accel=make_accel("reference", torch.device("cpu")), progress=False)
    return sorted(done.glob("step_*.pt"))[-1]


def write_png(path: Path, shape=(40, 36), seed=0, bright_bottom=False) -> Path:
    """A 16-bit greyscale PNG 'radiograph' (a bright spine, optionally a bright lower third)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(5000, 20000, shape)
    a[:, shape[1] // 2 - 3: shape[1] // 2 + 3] += 25000
    if bright_bottom:
        a[shape[0] * 2 // 3:, :] += 30000
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.clip(0, 65535).astype(np.uint16)).save(path)
    return path


def write_canary_dicom(path: Path, **tags) -> Path:
    """A 12-bit DX chest full of identifiers (patient, institution, physicians, dates, private)."""
    ds = build_dicom(chest_anatomy(48, 40), **{**EXTRA_CANARIES, **tags})
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(ds, path)


class FakeClassifier:
    """The load_classifier interface: ``findings`` and ``predict_proba`` on [-1, 1] images.
    p(Effusion) grows with the brightness of the lower third, p(Cardiomegaly) with the mean."""

    findings = ["Effusion", "Cardiomegaly", "Nodule"]

    def __init__(self):
        self.calls = []

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 1 and float(x.min()) >= -1 and float(x.max()) <= 1
        self.calls.append(x.shape)
        s = x.shape[-2]
        effusion = torch.sigmoid(4 * x[:, 0, s * 2 // 3:, :].mean(dim=(1, 2)))
        cardio = torch.sigmoid(3 * x.mean(dim=(1, 2, 3)))
        return torch.stack([effusion, cardio, torch.full_like(cardio, 0.1)], dim=1)


def _expanded(data: bytes) -> list[bytes]:
    """``data`` plus what hides inside it: base64 data URIs (images embedded in HTML), zlib
    streams (PDF content, compressed PNG text chunks)."""
    out = [data]
    for m in re.finditer(rb"base64,([A-Za-z0-9+/=]+)", data):
        out.append(base64.b64decode(m.group(1)))
    for blob in list(out):
        for m in re.finditer(rb"stream\r?\n(.*?)endstream", blob, flags=re.DOTALL):
            try:
                out.append(zlib.decompress(m.group(1)))
            except zlib.error:
                pass
        for m in re.finditer(rb"(zTXt|iTXt)", blob):  # PNG text chunks, possibly compressed
            chunk = blob[m.end(): m.end() + 4096]
            for start in range(len(chunk)):
                if chunk[start:start + 1] == b"x":
                    try:
                        out.append(zlib.decompressobj().decompress(chunk[start:]))
                        break
                    except zlib.error:
                        continue
    return out


def scan_for_canaries(paths, texts=()) -> list[str]:
    """Canary hits in every file under ``paths`` (raw bytes and what hides in them: embedded
    base64 images, compressed PDF streams and PNG text chunks), in every file *name*, and in
    ``texts`` (captured stdout/stderr/logs)."""
    hits = []
    needles = [c.encode() for c in ALL_CANARIES]
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else [p for p in root.rglob("*")]
        for f in files:
            for c in ALL_CANARIES:
                if c.lower() in f.name.lower():
                    hits.append(f"name {f.name}: {c}")
            if f.is_file():
                for data in _expanded(f.read_bytes()):
                    for n in needles:
                        if re.search(re.escape(n), data, flags=re.IGNORECASE):
                            hits.append(f"{f.name}: {n.decode()}")
    for text in texts:
        for c in ALL_CANARIES:
            if c.lower() in text.lower():
                hits.append(f"text: {c}")
    return hits
