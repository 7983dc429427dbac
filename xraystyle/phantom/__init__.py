"""The phantom: a procedural simulator of PA chest radiographs with exact ground truth, the
toolkit's built-in data (docs/phantom.md).

``anatomy`` draws a patient as a physics-free attenuation map (lung shapes from ``lungs``: real
lung-mask templates or a procedural fallback), ``findings`` adds effusion, nodule, cardiomegaly
and pneumothorax with their masks and geometry, ``physics`` turns attenuation into an acquired
image (exposure, contrast, gamma, noise, scatter, blur, bit depth) and ``writer`` encodes it as a
16-bit PNG or a DX DICOM. ``generator`` ties them together with one seed per case
(:func:`render_phantom`, :func:`generate_phantom_cohort`: images, masks, manifest, truth table);
``ideal`` re-renders a cohort row from its truth row, as stored or as an ideal counterfactual
(findings added or removed, other physics); ``default`` is the default cohort that training uses
without ``--cohort``, cached under a key that covers the simulator's sources; ``oracle`` is a
judge calibrated on rendered pairs that evaluation uses on phantom cohorts, and ``attributes``
measures what an output shows (fluid side and volume, nodule position and size, CTR) against the
patient's own finding-free render. The manifest format, sources, splits and checks stay in
:mod:`xraystyle.cohorts`.

The names below are imported on first use, so ``import xraystyle.phantom`` stays cheap (the oracle
needs torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "FINDINGS": "generator",
    "FORMATS": "generator",
    "NEUTRAL_PHYSICS": "generator",
    "PHYSICS_RANGES": "generator",
    "PhantomSample": "generator",
    "case_seed": "generator",
    "case_streams": "generator",
    "draw_labels": "generator",
    "draw_physics": "generator",
    "generate_phantom_cohort": "generator",
    "render_phantom": "generator",
    "quantize": "physics",
    "TruthRow": "ideal",
    "case_row": "ideal",
    "ideal_counterfactual": "ideal",
    "physics_variant": "ideal",
    "read_truth": "ideal",
    "rerender": "ideal",
    "stored": "ideal",
    "DEFAULT_PHANTOM": "default",
    "default_phantom_manifest": "default",
    "generator_version": "default",
    "PhantomOracle": "oracle",
    "is_phantom_manifest": "oracle",
    "load_oracle": "oracle",
    "rank_image": "oracle",
    "AttributeOracle": "attributes",
    "Attributes": "attributes",
    "PatientBaseline": "attributes",
    "calibrate_attribute_oracle": "attributes",
    "patient_baseline": "attributes",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .attributes import AttributeOracle, Attributes, PatientBaseline, calibrate_attribute_oracle, patient_baseline
    from .default import DEFAULT_PHANTOM, default_phantom_manifest, generator_version
    from .generator import (
        FINDINGS,
        FORMATS,
        NEUTRAL_PHYSICS,
        PHYSICS_RANGES,
        PhantomSample,
        case_seed,
        case_streams,
        draw_labels,
        draw_physics,
        generate_phantom_cohort,
        render_phantom,
    )
    from .ideal import TruthRow, case_row, ideal_counterfactual, physics_variant, read_truth, rerender, stored
    from .oracle import PhantomOracle, is_phantom_manifest, load_oracle, rank_image
    from .physics import quantize


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
