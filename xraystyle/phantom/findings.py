"""Findings of the phantom: parameters, their effect on the attenuation map, and exact masks.

Each finding draws its parameters from its own random stream, always the same number of draws
whether or not it is present, so switching one finding on or off leaves the anatomy and every
other finding unchanged. Parameters are fractions of the image side or of the lung, so they
render at any size; a mask marks the finding's region and is never empty when it is present.

- effusion: dependent pleural fluid replacing aerated lung from the base up, with a meniscus
  climbing the lateral chest wall (blunts the costophrenic angle, hides the hemidiaphragm);
  side right / left / both, ``volume`` = fluid height at the chest wall / lung height.
- nodule: a sphere of radius ``radius`` (fraction of the image side) in the mid lung zone.
- cardiomegaly: the heart drawn with a cardiothoracic ratio ``ctr`` in [0.55, 0.68]
  (normal anatomy: 0.40-0.47); the mask is the heart.
- pneumothorax: apical and lateral pleural air without lung markings, bounded by a thin
  visceral pleural line; ``rim`` = widest air gap / hemithorax width.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy import ndimage as ndi

from ..errors import ConfigError
from .anatomy import F32, AnatomyLayers, grid

FINDINGS = ("effusion", "nodule", "cardiomegaly", "pneumothorax")
SIDES = ("right", "left")  # the patient's sides: right = image left

# Per-finding columns of the truth table (cardiomegaly's CTR is recorded for every image).
TRUTH_COLUMNS = {
    "effusion": ("effusion_side", "effusion_volume", "effusion_meniscus", "effusion_area_px"),
    "nodule": ("nodule_side", "nodule_x", "nodule_y", "nodule_radius", "nodule_radius_px"),
    "pneumothorax": ("pneumothorax_side", "pneumothorax_rim", "pneumothorax_size"),
}

# Columns of the truth table holding a present finding's renderer inputs, exactly the values
# rendered (blank when absent): with the case seed and the physics they re-render the image.
# ``param_nodule_u`` / ``_v`` are the nodule's ``position``; ``param_nodule_radius`` is the
# radius asked for (``nodule_radius`` is the one drawn, at least 1.5 px).
PARAM_COLUMNS = {
    "effusion": ("param_effusion_side", "param_effusion_volume", "param_effusion_meniscus",
                 "param_effusion_density"),
    "nodule": ("param_nodule_side", "param_nodule_radius", "param_nodule_density", "param_nodule_u",
               "param_nodule_v"),
    "cardiomegaly": ("param_cardiomegaly_ctr",),
    "pneumothorax": ("param_pneumothorax_side", "param_pneumothorax_rim", "param_pneumothorax_lucency"),
}

# Accepted values of the numeric parameters (wider than the drawn ranges, so counterfactuals may
# ask for more; intervals are closed unless the bound is listed in _OPEN).
PARAM_RANGES = {
    "effusion": {"volume": (0.0, 1.0), "meniscus": (0.0, 1.0), "density": (0.0, 1.5)},
    "nodule": {"radius": (0.0, 0.2), "density": (0.0, 1.0), "u": (0.0, 1.0), "v": (0.0, 1.0)},
    "cardiomegaly": {"ctr": (0.5, 0.9)},
    "pneumothorax": {"rim": (0.0, 1.0), "lucency": (0.0, 1.0)},
}
_OPEN = {("effusion", "volume", 0), ("effusion", "density", 0), ("nodule", "radius", 0),
         ("nodule", "density", 0), ("cardiomegaly", "ctr", 0), ("cardiomegaly", "ctr", 1),
         ("pneumothorax", "rim", 0)}

# Keys a caller may fix per finding (render_phantom(findings_present={"nodule": {...}})).
_KEYS = {
    "effusion": {"side", "volume", "meniscus", "density"},
    "nodule": {"side", "radius", "density", "position"},
    "cardiomegaly": {"ctr"},
    "pneumothorax": {"side", "rim", "lucency"},
}


def draw_finding_params(name: str, rng: np.random.Generator) -> dict[str, Any]:
    """Parameters of one finding (drawn even when it is absent: fixed number of draws)."""
    side_u, a, b, c, d = rng.random(5)
    if name == "effusion":
        side = "right" if side_u < 0.4 else "left" if side_u < 0.75 else "both"
        return {"side": side, "volume": _r(0.15 + 0.35 * a), "meniscus": _r(0.45 + 0.3 * b),
                "density": _r(0.85 + 0.15 * c)}
    if name == "nodule":
        return {"side": SIDES[int(side_u < 0.5)], "radius": _r(0.015 + 0.02 * a),
                "density": _r(0.12 + 0.08 * b), "position": (_r(c), _r(d))}
    if name == "cardiomegaly":
        return {"ctr": _r(0.55 + 0.13 * a)}
    if name == "pneumothorax":
        return {"side": SIDES[int(side_u < 0.5)], "rim": _r(0.1 + 0.2 * a), "lucency": _r(0.6 + 0.4 * b)}
    raise ConfigError(f"unknown finding {name!r}: expected one of {', '.join(FINDINGS)}")


def _r(x: float) -> float:
    """Round drawn values so that the recorded value is exactly the one rendered."""
    return round(float(x), 5)


def merge_overrides(name: str, drawn: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Apply caller-fixed parameters over the drawn ones, rejecting unknown keys and values."""
    unknown = set(override) - _KEYS[name]
    if unknown:
        raise ConfigError(f"{name}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                          f"expected {', '.join(sorted(_KEYS[name]))}")
    out = {**drawn, **override}
    sides = ("right", "left", "both") if name == "effusion" else SIDES
    if "side" in out and out["side"] not in sides:
        raise ConfigError(f"{name}: side must be one of {', '.join(sides)}, got {out['side']!r}")
    if name == "cardiomegaly" and not 0.5 < float(out["ctr"]) < 0.9:
        raise ConfigError(f"cardiomegaly: ctr must be in (0.5, 0.9), got {out['ctr']}")
    return out


def check_finding_params(name: str, p: Mapping[str, Any]) -> dict[str, Any]:
    """A complete parameter set of ``name`` with plain Python values, or ConfigError (one line)
    for a missing or unknown key, a wrong side or a value outside :data:`PARAM_RANGES`."""
    if name not in _KEYS:
        raise ConfigError(f"unknown finding {name!r}: expected one of {', '.join(FINDINGS)}")
    missing, unknown = _KEYS[name] - set(p), set(p) - _KEYS[name]
    if missing or unknown:
        what = "; ".join(x for x in (missing and f"missing {', '.join(sorted(missing))}",
                                     unknown and f"unknown {', '.join(sorted(unknown))}") if x)
        raise ConfigError(f"{name}: {what} parameter(s); expected {', '.join(sorted(_KEYS[name]))}")
    out: dict[str, Any] = {}
    for key, value in p.items():
        if key == "side":
            sides = ("right", "left", "both") if name == "effusion" else SIDES
            if value not in sides:
                raise ConfigError(f"{name}: side must be one of {', '.join(sides)}, got {value!r}")
            out[key] = str(value)
            continue
        if key == "position":
            try:
                u, v = value
            except (TypeError, ValueError):
                raise ConfigError(f"{name}: position must be a pair (u, v), got {value!r}") from None
            out[key] = (_number(name, "u", u), _number(name, "v", v))
            continue
        out[key] = _number(name, key, value)
    return out


def _number(name: str, key: str, value: Any) -> float:
    lo, hi = PARAM_RANGES[name][key]
    lo_open, hi_open = (name, key, 0) in _OPEN, (name, key, 1) in _OPEN
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    x = float(value) if ok else float("nan")
    if not (ok and (lo < x if lo_open else lo <= x) and (x < hi if hi_open else x <= hi)):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(f"{name}: {key} must be a number in {interval}, got {value!r}")
    return x


def params_to_columns(name: str, p: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`PARAM_COLUMNS` of one present finding."""
    values = dict(p)
    if "position" in values:
        values["u"], values["v"] = values.pop("position")
    return {f"param_{name}_{key}": values[key] for key in (c[len(f"param_{name}_"):] for c in PARAM_COLUMNS[name])}


def params_from_columns(name: str, columns: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`params_to_columns` (values already parsed), checked."""
    values = {c[len(f"param_{name}_"):]: columns[c] for c in PARAM_COLUMNS[name]}
    if "u" in values:
        values["position"] = (values.pop("u"), values.pop("v"))
    return check_finding_params(name, values)


def _lateralness(layers: AnatomyLayers, side: str, lung: np.ndarray) -> tuple[np.ndarray, tuple]:
    """0 at the lung's medial edge, 1 at its lateral edge (per pixel), and the lung's box."""
    rows = np.flatnonzero(lung.any(axis=1))
    cols = np.flatnonzero(lung.any(axis=0))
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    x = np.arange(layers.size, dtype=F32)
    lo, hi = box[2], box[3] - 1
    t = (x - lo) / max(hi - lo, 1)
    t = 1 - t if side == "right" else t  # the right lung's lateral edge is on the image left
    return np.broadcast_to(np.clip(t, 0, 1)[None, :], lung.shape), box


def effusion(layers: AnatomyLayers, p: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Opacity map (fraction of aerated lung replaced by fluid), mask, recorded truth."""
    s = layers.size
    opacity = np.zeros((s, s), F32)
    mask = np.zeros((s, s), bool)
    sides = SIDES if p["side"] == "both" else (p["side"],)
    y = np.arange(s, dtype=F32)[:, None] + F32(0.5)
    for side in sides:
        lung = layers.lung(side)
        if not lung.any():
            continue
        t_lat, (top, bottom, _, _) = _lateralness(layers, side, lung)
        # Costophrenic angle: the lowest lung pixel in the lateral third.
        lateral_rows = np.flatnonzero((lung & (t_lat > 0.66)).any(axis=1))
        y_cp = float(lateral_rows[-1] + 1) if lateral_rows.size else float(bottom)
        height = max(p["volume"] * (bottom - top), 2.0)
        # Meniscus: the fluid climbs the lateral chest wall, its surface lower medially.
        surface = F32(y_cp) - F32(height) * (1 - F32(p["meniscus"]) * (1 - t_lat**2))
        depth_px = y - surface
        fluid = lung & (depth_px > 0)
        if not fluid.any():  # never an empty mask for a present finding
            fluid = lung & (y >= y_cp - 2)
        # Fluid layers thinly up the back: a short haze above the meniscus. Not cut by the hard
        # lung mask (the air map is zero outside the lungs anyway), only by the hemithorax, so
        # the anti-aliased lung border fills too.
        op = np.where(depth_px > 0, 1.0, np.exp(depth_px / F32(0.03 * s))).astype(F32)
        x = np.arange(s, dtype=F32)[None, :] + F32(0.5)
        half = (x < layers.midline_px) if side == "right" else (x >= layers.midline_px)
        opacity = np.maximum(opacity, op * half * F32(p["density"]))
        mask |= fluid
    truth = {"effusion_side": p["side"], "effusion_volume": p["volume"], "effusion_meniscus": p["meniscus"],
             "effusion_area_px": int(mask.sum())}
    return opacity, mask, truth


def pneumothorax(layers: AnatomyLayers, p: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Mask of pleural air (no lung markings) and of the visceral pleural line, truth."""
    s = layers.size
    side = p["side"]
    lung = layers.lung(side)
    t_lat, (top, bottom, left, right) = _lateralness(layers, side, lung)
    crop = (slice(top, bottom), slice(left, right))
    dist = np.zeros((s, s), F32)
    # Distance transform on the lung's box only: ~10x cheaper than on the whole image.
    dist[crop] = ndi.distance_transform_edt(np.pad(lung[crop], 1))[1:-1, 1:-1]
    y = (np.arange(s, dtype=F32)[:, None] + F32(0.5) - F32(top)) / F32(max(bottom - top, 1))
    # Widest at the lateral wall and over the apex, thin medially, tapering to the base.
    apical = np.clip(1 - y / 0.45, 0, 1) * (0.5 + 0.5 * t_lat)
    weight = np.clip(1.25 * np.maximum(t_lat, apical) - 0.25, 0, 1) * np.clip((0.85 - y) / 0.25, 0, 1)
    rim_px = max(p["rim"] * (right - left), 2.0)
    air = lung & (dist < rim_px * weight)
    if not air.any():  # never an empty mask for a present finding
        air = lung & (dist <= 1.5) & (weight > 0.5)
    line = ndi.binary_dilation(air) & lung & ~air
    truth = {"pneumothorax_side": side, "pneumothorax_rim": p["rim"],
             "pneumothorax_size": round(float(air.sum()) / max(int(lung.sum()), 1), 5)}
    return air, line, truth


def nodule(layers: AnatomyLayers, p: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Sphere profile (0..1), mask and truth. The centre is placed in the mid zone of the
    chosen lung, away from where effusions and pneumothoraces go, so that switching those on
    never moves the nodule."""
    s = layers.size
    side = p["side"]
    lung = layers.lung(side)
    radius = max(p["radius"] * s, 1.5)
    t_lat, (top, bottom, left, right) = _lateralness(layers, side, lung)
    y_rel = (np.arange(s, dtype=F32)[:, None] + F32(0.5) - F32(top)) / F32(max(bottom - top, 1))
    zone = lung & (y_rel > 0.2) & (y_rel < 0.55) & (t_lat > 0.25) & (t_lat < 0.65)
    inner = np.zeros((s, s), bool)
    crop = (slice(top, bottom), slice(left, right))
    inner[crop] = ndi.distance_transform_edt(np.pad(lung[crop], 1))[1:-1, 1:-1] > radius + 1
    allowed = zone & inner
    if not allowed.any():
        allowed = inner if inner.any() else lung
    ys, xs = np.nonzero(allowed)
    # position (u, v) in [0, 1]^2: a point of the zone's box; the nearest allowed pixel wins.
    tx = xs.min() + p["position"][0] * (xs.max() - xs.min())
    ty = ys.min() + p["position"][1] * (ys.max() - ys.min())
    k = int(np.argmin((xs - tx) ** 2 + (ys - ty) ** 2))
    cy, cx = ys[k] + 0.5, xs[k] + 0.5
    yy, xx = grid(s)
    d = np.hypot(xx * s - F32(cx), yy * s - F32(cy)) / F32(radius)
    mask = d <= 1
    if not mask.any():
        mask[int(cy), int(cx)] = True
    profile = np.sqrt(np.clip(1 - d * d, 0, 1)) + np.clip(0.5 + (1 - d) * F32(radius), 0, 1) * 0.15
    truth = {"nodule_side": side, "nodule_x": round(float(cx) / s, 5), "nodule_y": round(float(cy) / s, 5),
             "nodule_radius": round(radius / s, 5), "nodule_radius_px": round(radius, 3)}
    return np.minimum(profile, 1).astype(F32), mask, truth


def cardiomegaly_truth(layers: AnatomyLayers) -> dict:
    return {"ctr": round(layers.ctr, 5), "heart_width_px": layers.heart_width_px,
            "thorax_width_px": layers.thorax_width_px}


def apply_findings(
    layers: AnatomyLayers, params: Mapping[str, dict]
) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """Attenuation with the present findings, the visible lung markings, masks and truth.

    ``params`` holds the parameters of the present findings only; cardiomegaly is already in
    ``layers`` (the anatomy was rendered with its CTR).
    """
    s = layers.size
    base = layers.base.copy()
    markings = np.ones((s, s), F32)  # where lung markings stay visible
    masks: dict[str, np.ndarray] = {}
    truth: dict[str, Any] = cardiomegaly_truth(layers)
    if "effusion" in params:
        opacity, masks["effusion"], t = effusion(layers, params["effusion"])
        # Fluid gives back the attenuation the air had removed, and more: it layers several
        # centimetres deep behind the lung base, as dense as the liver below.
        lung_fraction = np.clip(layers.air / F32(0.15), 0, 1)  # anti-aliased lung border
        base += (layers.air + F32(0.1) * lung_fraction) * opacity
        markings *= 1 - opacity
        truth.update(t)
    if "pneumothorax" in params:
        air, line, t = pneumothorax(layers, params["pneumothorax"])
        p = params["pneumothorax"]
        base -= F32(0.1 * p["lucency"]) * air  # no lung tissue in the pleural space
        base += F32(0.07) * line
        # The collapsed lung is a little denser.
        base += F32(0.03) * (layers.lung(p["side"]) & ~air & ~line)
        markings *= ~air
        masks["pneumothorax"] = air
        truth.update(t)
    if "nodule" in params:
        profile, masks["nodule"], t = nodule(layers, params["nodule"])
        base += F32(params["nodule"]["density"]) * profile
        truth.update(t)
    if "cardiomegaly" in params:
        masks["cardiomegaly"] = layers.heart.copy()
    visible = (layers.vessels * markings).astype(F32)
    att = np.maximum(base + visible, 0)
    return att.astype(F32), visible, masks, truth
