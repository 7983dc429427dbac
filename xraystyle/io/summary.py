"""A whitelisted, JSON-friendly summary of a read radiograph (what ``xraystyle inspect`` shows).

Built field by field from ``XrayMeta`` rather than from ``to_dict()`` so that a field added
to the metadata later is not printed until someone decides it is safe to show. Patient age
is deliberately left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .meta import XrayMeta


def summarize(arr: np.ndarray, meta: XrayMeta) -> dict[str, Any]:
    """Preprocessing-relevant facts about ``arr`` (as returned by ``read_xray``) and ``meta``."""
    valid = arr if meta.valid_mask is None else arr[meta.valid_mask]
    signed = None if meta.pixel_representation is None else bool(meta.pixel_representation)
    return {
        "format": meta.source_format,
        "modality": meta.modality,
        "photometric_interpretation": meta.photometric_interpretation,
        "bits_allocated": meta.bits_allocated,
        "bits_stored": meta.bits_stored,
        "signed": signed,
        "rows": meta.rows,
        "columns": meta.columns,
        "pixel_spacing_mm": None if meta.pixel_spacing is None else list(meta.pixel_spacing),
        "view_position": meta.view_position,
        "window_center": None if meta.window_center is None else list(meta.window_center),
        "window_width": None if meta.window_width is None else list(meta.window_width),
        "voi_lut_function": meta.voi_lut_function,
        "voi_applied": meta.voi_applied,
        "presentation_lut_shape": meta.presentation_lut_shape,
        "inverted": meta.inverted,
        "transfer_syntax": meta.transfer_syntax,
        "body_part": meta.body_part,
        "number_of_frames": meta.number_of_frames,
        "burned_in_annotation": meta.burned_in_annotation,
        "padding_fraction": 0.0 if meta.valid_mask is None else float(1.0 - np.mean(meta.valid_mask)),
        "value_min": float(valid.min()) if valid.size else None,
        "value_max": float(valid.max()) if valid.size else None,
        "notes": list(meta.notes),
    }
