"""Acquisition physics of the phantom: from an attenuation map to a processed radiograph.

The anatomy and findings give a line-attenuation map ``a`` in neutral display units (with
neutral physics the image equals ``a``). The detector and processing model, with K = 3:

    primary    P = exposure * exp(-K * contrast * a)      kVp-like: contrast > 1 = lower kVp
    blur       P <- Gaussian(P, blur_mm)                   detector unsharpness
    scatter    D = (1 - scatter) * P + scatter * G(P)      G: very wide blur (veil), mean kept
    noise      d = D / exposure;  d <- d + noise * sqrt(d) * z     quantum noise, z ~ N(0, 1)
    log        y = -ln(exposure * d) / K = a' - ln(exposure) / K
    gamma      image = clip(y, 0, 1) ** gamma

Conventions (MONOCHROME2: bright = attenuating): higher ``exposure`` darkens the image
(like film: more dose, more signal); ``contrast`` scales attenuation differences; ``gamma`` > 1
darkens mid-tones; ``noise`` is the relative quantum noise where the transmission is 1 (it grows
behind dense tissue, where fewer photons arrive); ``scatter`` is the fraction of the signal that
is spread into a low-frequency veil (less contrast, mean signal unchanged).

Encoding parameters travel with the physics because they are acquisition properties too:
``bit_depth`` (bits stored) and ``monochrome1`` (stored inverted, DICOM only).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ..errors import ConfigError

F32 = np.float32
K_ATT = 3.0
FIELD_OF_VIEW_MM = 430.0  # a 17-inch detector: pixel spacing = FIELD_OF_VIEW_MM / size
BIT_DEPTHS = (10, 12, 14, 15)

NEUTRAL_PHYSICS: dict[str, Any] = {
    "exposure": 1.0, "contrast": 1.0, "gamma": 1.0, "noise": 0.0, "scatter": 0.0,
    "blur_mm": 0.0, "bit_depth": 12, "monochrome1": 0,
}

# Ranges drawn by draw_physics (log-uniform for the multiplicative factors).
PHYSICS_RANGES: dict[str, tuple] = {
    "exposure": (0.7, 1.45), "contrast": (0.8, 1.25), "gamma": (0.75, 1.35), "noise": (0.0, 0.025),
    "scatter": (0.0, 0.4), "blur_mm": (0.0, 1.5), "bit_depth": BIT_DEPTHS, "monochrome1": (0, 1),
}


def draw_physics(rng: np.random.Generator) -> dict[str, Any]:
    """One acquisition, from a stream that never sees the anatomy or the findings."""
    u = rng.random(8)
    r = PHYSICS_RANGES

    def log_uniform(key: str, x: float) -> float:
        lo, hi = r[key]
        return round(math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo))), 5)

    def uniform(key: str, x: float) -> float:
        lo, hi = r[key]
        return round(lo + x * (hi - lo), 5)

    return {
        "exposure": log_uniform("exposure", u[0]),
        "contrast": uniform("contrast", u[1]),
        "gamma": log_uniform("gamma", u[2]),
        "noise": uniform("noise", u[3]),
        "scatter": uniform("scatter", u[4]),
        "blur_mm": uniform("blur_mm", u[5]),
        "bit_depth": BIT_DEPTHS[min(int(u[6] * len(BIT_DEPTHS)), len(BIT_DEPTHS) - 1)],
        "monochrome1": int(u[7] < 0.5),
    }


def resolve_physics(physics: Mapping[str, Any] | None) -> dict[str, Any]:
    """Neutral physics overridden by ``physics``; unknown keys and impossible values rejected."""
    out = dict(NEUTRAL_PHYSICS)
    if physics is None:
        return out
    unknown = set(physics) - set(NEUTRAL_PHYSICS)
    if unknown:
        raise ConfigError(f"physics: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"expected {', '.join(NEUTRAL_PHYSICS)}")
    out.update(physics)
    for key in ("exposure", "contrast", "gamma"):
        if not (isinstance(out[key], (int, float)) and math.isfinite(out[key]) and out[key] > 0):
            raise ConfigError(f"physics: {key} must be a positive number, got {out[key]!r}")
    for key in ("noise", "blur_mm"):
        if not (isinstance(out[key], (int, float)) and math.isfinite(out[key]) and out[key] >= 0):
            raise ConfigError(f"physics: {key} must be a number >= 0, got {out[key]!r}")
    if not (isinstance(out["scatter"], (int, float)) and 0 <= out["scatter"] < 1):
        raise ConfigError(f"physics: scatter must be in [0, 1), got {out['scatter']!r}")
    if out["bit_depth"] not in range(8, 17):
        raise ConfigError(f"physics: bit_depth must be 8..16, got {out['bit_depth']!r}")
    if out["monochrome1"] not in (0, 1, True, False):
        raise ConfigError(f"physics: monochrome1 must be 0 or 1, got {out['monochrome1']!r}")
    out["monochrome1"] = int(out["monochrome1"])
    return out


def apply_physics(att: np.ndarray, physics: Mapping[str, Any], z: np.ndarray) -> np.ndarray:
    """Processed radiograph in [0, 1] (MONOCHROME2) from attenuation ``att`` and noise ``z``."""
    size = att.shape[0]
    exposure, contrast = float(physics["exposure"]), float(physics["contrast"])
    trans = np.exp(F32(-K_ATT * contrast) * att)  # transmission, exposure applied at the log
    sigma = float(physics["blur_mm"]) * size / FIELD_OF_VIEW_MM
    if sigma > 0.05:
        trans = ndi.gaussian_filter(trans, sigma, truncate=3.0)
    scatter = float(physics["scatter"])
    if scatter > 0:
        trans = F32(1 - scatter) * trans + F32(scatter) * _veil(trans)
    noise = float(physics["noise"])
    if noise > 0:
        trans = trans + F32(noise) * np.sqrt(trans) * z
    trans = np.maximum(trans, F32(1e-4))
    y = -np.log(trans) / F32(K_ATT) - F32(math.log(exposure) / K_ATT)
    img = np.clip(y, 0, 1)
    gamma = float(physics["gamma"])
    if gamma != 1.0:
        img = img ** F32(gamma)
    return img.astype(F32)


def _veil(trans: np.ndarray) -> np.ndarray:
    """Scatter veil: the transmission blurred over ~10 % of the image side.

    Computed on a 32 x 32 reduction and enlarged again: the veil has no detail to lose and a
    direct Gaussian of that width costs ~20x more."""
    size = trans.shape[0]
    small = np.asarray(Image.fromarray(trans, mode="F").resize((32, 32), Image.BOX), dtype=F32)
    small = ndi.gaussian_filter(small, 3.2, mode="nearest")
    return np.asarray(Image.fromarray(small, mode="F").resize((size, size), Image.BILINEAR), dtype=F32)


def quantize(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """Stored pixel values (MONOCHROME2 sense) with ``bit_depth`` bits, as uint16."""
    top = (1 << int(bit_depth)) - 1
    return np.round(np.clip(img, 0, 1) * top).astype(np.uint16)
