"""Provenance records for synthetic outputs: which model, config, seed and pixels made them.

Nothing here ever holds a file path of a source or a DICOM identifier: sources are referred to
by the sha256 of their pixels, and the only source metadata passed on is the whitelist in
:data:`TECHNICAL_FIELDS` (taken from ``XrayMeta``, itself identifier-free).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any

from .. import __version__

SYNTHETIC_NOTICE = "SYNTHETIC - research use, not for diagnosis"

# Source attributes that may be shown or copied: technical, never identifying.
TECHNICAL_FIELDS = ("source_format", "modality", "view_position", "body_part", "rows", "columns",
                    "pixel_spacing", "bits_stored", "photometric_interpretation")
# DICOM code strings: upper-case letters, digits, space and underscore, at most 16 characters.
_CS = re.compile(r"^[A-Z0-9 _]{1,16}$")


def config_sha256(cfg) -> str:
    """sha256 of the run config as canonical JSON (sorted keys)."""
    from ..config import to_dict

    data = cfg if isinstance(cfg, dict) else to_dict(cfg)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def model_record(model) -> dict[str, Any]:
    """What identifies a trained model: checkpoint and config hashes, step, domains."""
    return {
        "checkpoint_sha256": model.checkpoint_sha256,
        "config_sha256": config_sha256(model.config_dict or model.args.to_dict()),
        "step": int(model.step),
        "domains": list(model.domains),
        "img_size": int(model.size),
        "xraystyle_version": __version__,
    }


def technical_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The whitelisted technical fields of an ``XrayMeta.to_dict()``."""
    return {k: meta.get(k) for k in TECHNICAL_FIELDS if meta.get(k) is not None}


def code_string(value: Any) -> str | None:
    """``value`` if it is a well-formed DICOM code string (CS), else None (never copied)."""
    if value is None:
        return None
    text = str(value).strip().upper()
    return text if _CS.match(text) else None


def result_record(result, model_info: dict[str, Any]) -> dict[str, Any]:
    """Sidecar provenance of one :class:`~xraystyle.synthesis.SynthResult` (JSON-ready)."""
    return {
        "synthetic": True,
        "notice": SYNTHETIC_NOTICE,
        "output": result.name,
        "mode": result.mode,
        "target": result.target,
        "style_index": result.style_index if result.mode == "latent" else None,
        "seed": result.seed,
        "source_sha256": result.source.sha256,
        "reference_sha256": result.reference_sha256,
        **model_info,
    }


def generated_on() -> str:
    """UTC date of generation (a date, not a time: enough to place a report, nothing more)."""
    return datetime.now(timezone.utc).date().isoformat()
