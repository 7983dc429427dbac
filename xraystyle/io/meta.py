"""Metadata that matters for preprocessing, with no patient identifiers.

``XrayMeta`` is deliberately a whitelist: it has no field that could hold a name, an ID, a
date, an institution, a physician, an accession number or a UID, so nothing downstream
(logs, reports, sidecars) can leak one by printing it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class XrayMeta:
    source_format: str  # "dicom" | "png" | "jpeg" | "nifti" | "mha" | "nrrd" | ...
    rows: int
    columns: int
    modality: str | None = None
    photometric_interpretation: str | None = None  # as stored in the file
    bits_allocated: int | None = None
    bits_stored: int | None = None
    pixel_representation: int | None = None  # 0 unsigned, 1 signed
    pixel_spacing: tuple[float, float] | None = None  # (row, column) mm
    view_position: str | None = None
    window_center: tuple[float, ...] | None = None
    window_width: tuple[float, ...] | None = None
    voi_lut_function: str | None = None
    voi_applied: str | None = None  # what the reader applied: "window", "lut", "none"
    presentation_lut_shape: str | None = None
    transfer_syntax: str | None = None  # name, e.g. "JPEG 2000 Image Compression (Lossless Only)"
    body_part: str | None = None
    number_of_frames: int = 1
    patient_age_years: float | None = None  # paediatric check only; no birth date kept
    burned_in_annotation: str | None = None
    inverted: bool = False  # True when the reader flipped polarity to MONOCHROME2
    # True where the pixel is real anatomy, False for PixelPaddingValue (None: all valid).
    valid_mask: np.ndarray | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)  # reader decisions worth surfacing

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (the mask summarised as its valid fraction)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "valid_mask":
                out["valid_fraction"] = None if v is None else float(np.mean(v))
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out
