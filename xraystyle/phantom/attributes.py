"""Attribute oracle: what finding an output image shows, and how much, measured against the
patient it claims to be (docs/evaluation.md, "Attribute oracle").

The phantom knows every source: its seed and physics re-render the patient **without any
finding** (the *baseline*), with its exact lung and heart masks, and with the heart drawn at
any cardiothoracic ratio. An output (an image in the model's [-1, 1] space) is read as a change
of that baseline:

1. **Grey levels**: a monotone (isotonic) map ``g`` from the output's grey levels to the
   baseline's, fitted on *reference* pixels no finding touches (body outside the lungs and the
   heart, the top fifth of each lung). A global exposure / contrast / gamma / window change is
   monotone, so ``g`` undoes it. ``R^2`` of that fit is the **gate**: an output whose reference
   pixels it cannot explain (noise, another image) is not this patient (``valid`` False) and
   reports no finding.
2. **Rise**: ``r = (g(out) - max(base, blur(base))) / C`` with ``C`` the baseline's own
   soft-tissue-minus-lung contrast: 1 where aerated lung became as dense as soft tissue, 0
   where nothing changed. Measuring over the maximum of the baseline and its 1-px blur makes a
   slightly blurred output (edges of the bright chest wall and liver spilling into the lung)
   no rise.
3. **Heart (CTR)**: the heart masks of this patient at CTR 0.52 ... 0.76 are rendered once per
   baseline; the CTR whose lung pixels covered by the heart best match the risen lung pixels
   (least squares) is the measured CTR (the patient's own CTR when no larger heart fits better).
   Those pixels (dilated by one) are *explained by the heart* and excluded from the fluid and
   nodule measures: a grown heart never reads as fluid.
4. **Fluid, per hemithorax**: in the lower 60 % of the lung (not heart-explained) the risen
   area (``sum clip(r, 0, 1)``) / lung area; present above a threshold; ``fluid_volume`` = an
   isotonic map of that area (or of the height below, or height + 0.1 area: whichever ranks
   the fit half best) to the rendered volume; ``fluid_height`` = height of the risen
   run along the lateral wall (two outermost lung pixels of each row) from the costophrenic
   angle up (row profile, rows
   whose mean rise is >= 0.5), over the lung height (the phantom's ``volume`` is exactly this
   height).
5. **Nodule**: the peak of the Gaussian-smoothed rise in the lungs (without heart- or
   fluid-explained pixels); present above a threshold; position = rise-weighted centroid
   around the peak; radius = an isotonic map of the half-peak area's equivalent radius.

Thresholds and maps are fitted by :func:`calibrate_attribute_oracle` on ideal renders of half
of the calibration patients (each rendered without findings, with an effusion, a nodule, a
cardiomegaly under one random physics draw, and without findings under a second draw), and its
accuracy and false-positive rates on degenerate outputs are measured on the other half.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import isotonic_regression

from ..errors import ConfigError

log = logging.getLogger(__name__)

ATTRIBUTE_ORACLE_VERSION = 1
SIDES = ("right", "left")  # the patient's sides: right = image left
SIDE_LABELS = ("none", "right", "left", "both")
CTR_GRID = tuple(round(0.52 + 0.02 * i, 2) for i in range(13))  # 0.52 ... 0.76
RISEN = 0.5  # r above this: the pixel became (half) as dense as soft tissue
BASAL_FROM = 0.4  # fluid is measured below this fraction of the lung height (from the apex)
REFERENCE_TOP = 0.2  # the top fifth of each lung is a reference region (no finding goes there)


# ----------------------------------------------------------------------------- baseline


@dataclass
class PatientBaseline:
    """The patient without any finding, in the model's space, with its anatomy."""

    size: int
    image: np.ndarray  # (S, S) float32 in [-1, 1]: the clean render, preprocessed
    lungs: dict[str, np.ndarray]  # "right" / "left" -> (S, S) bool
    heart: np.ndarray  # (S, S) bool
    ctr: float  # the patient's own CTR
    growth: list[tuple[float, np.ndarray]]  # (ctr, lung pixels the heart covers at that ctr)
    reference: np.ndarray = field(init=False)  # (S, S) bool: pixels no finding touches
    envelope: np.ndarray = field(init=False)  # max(image, 1-px blur of image)
    contrast: float = field(init=False)  # soft tissue - lung, in [-1, 1] units
    geometry: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        s = self.size
        lung_any = self.lungs["right"] | self.lungs["left"]
        body = self.image > np.percentile(self.image, 5)  # anything but the background
        outside = body & ~ndi.binary_dilation(lung_any, iterations=1) & ~ndi.binary_dilation(self.heart, iterations=2)
        top_rows = np.zeros((s, s), bool)
        self.geometry = {}
        rows_idx = np.arange(s)[:, None] + 0.5
        for side in SIDES:
            lung = self.lungs[side]
            rows = np.flatnonzero(lung.any(axis=1))
            cols = np.flatnonzero(lung.any(axis=0))
            top, bottom = int(rows[0]), int(rows[-1]) + 1
            lo, hi = int(cols[0]), int(cols[-1])
            t = (np.arange(s) - lo) / max(hi - lo, 1)
            t = np.clip(1 - t if side == "right" else t, 0, 1)  # 1 at the lateral wall
            y_rel = np.broadcast_to((rows_idx - top) / max(bottom - top, 1), (s, s))
            lateral = lung & (t[None, :] >= 0.67)
            lat_rows = np.flatnonzero(lateral.any(axis=1))
            # The lateral wall: the two outermost lung pixels of every row.
            wall = np.zeros((s, s), bool)
            for row in np.flatnonzero(lung.any(axis=1)):
                c = np.flatnonzero(lung[row])
                wall[row, c[:2] if side == "right" else c[-2:]] = True
            self.geometry[side] = {"top": top, "bottom": bottom, "height": bottom - top,
                                   "y_rel": y_rel, "lateral": lateral, "wall": wall,
                                   "y_cp": int(lat_rows[-1]) if lat_rows.size else bottom - 1,
                                   "area": int(lung.sum())}
            top_rows |= lung & (y_rel < REFERENCE_TOP)
        self.reference = outside | top_rows
        lung_level = float(np.median(self.image[lung_any & ~top_rows])) if (lung_any & ~top_rows).any() else -1.0
        tissue = float(np.median(self.image[outside])) if outside.any() else 1.0
        self.contrast = max(tissue - lung_level, 0.05)
        sigma = max(self.size / 64.0, 0.5)
        self.envelope = np.maximum(self.image, ndi.gaussian_filter(self.image, sigma, mode="nearest"))


def _prep(sample, size: int) -> np.ndarray:
    """A rendered sample as a cohort file holds it, preprocessed to the model's space."""
    from ..transforms import PreprocessConfig, preprocess_array
    from .physics import quantize

    stored = quantize(sample.image, int(sample.physics["bit_depth"])).astype(np.float32)
    return np.asarray(preprocess_array(stored, None, PreprocessConfig(size=size))["image"][0], dtype=np.float32)


def patient_baseline(seed, size: int, physics: Mapping[str, Any] | None = None, *,
                     lung_source: str = "auto") -> PatientBaseline:
    """Baseline of the patient ``seed`` (an int or a cohort's ``case_seed``) under ``physics``
    (the source's own; None = neutral) at ``size`` px: the clean render, lungs, heart and the
    heart's lung coverage for every CTR of :data:`CTR_GRID` (masks only: physics-free)."""
    from .generator import render_phantom

    clean = render_phantom(seed, size, {}, physics, lung_source=lung_source)
    lungs = {side: clean.anatomy_masks[f"lung_{side}"] for side in SIDES}
    lung_any = lungs["right"] | lungs["left"]
    growth = []
    for c in CTR_GRID:
        if c <= clean.truth["ctr"]:
            continue
        big = render_phantom(seed, size, {"cardiomegaly": {"ctr": c}}, None, lung_source=lung_source)
        growth.append((c, lung_any & big.anatomy_masks["heart"]))
    return PatientBaseline(size, _prep(clean, size), lungs, clean.anatomy_masks["heart"].copy(),
                           float(clean.truth["ctr"]), growth)


# ----------------------------------------------------------------------------- measurement


@dataclass
class SideFluid:
    present: bool
    volume: float  # calibrated estimate of the rendered volume (0 when absent)
    height: float  # risen run at the lateral wall / lung height
    area: float  # raw statistic: risen basal area / lung area


@dataclass
class Attributes:
    """What one output shows, relative to its patient's baseline."""

    valid: bool  # the output is this patient (grey-level fit R^2 above the gate)
    fit_r2: float
    fluid: dict[str, SideFluid]  # "right" / "left"
    side: str  # none / right / left / both
    nodule_present: bool
    nodule_yx: tuple[float, float] | None  # centre, fractions of the side (y, x)
    nodule_radius: float | None  # fraction of the side
    nodule_peak: float  # raw statistic
    ctr: float
    cardiomegaly: bool  # ctr > 0.5

    @property
    def fluid_volume(self) -> float:
        """Mean estimated volume of the sides with fluid (0 without)."""
        v = [f.volume for f in self.fluid.values() if f.present]
        return float(np.mean(v)) if v else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _as_image(x, size: int, what: str) -> np.ndarray:
    try:
        a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected an image array, got {type(x).__name__}") from None
    a = a.reshape(a.shape[-2:]) if a.ndim > 2 and int(np.prod(a.shape[:-2])) == 1 else a
    if a.shape != (size, size):
        raise ConfigError(f"{what}: expected shape ({size}, {size}) like the baseline, got {tuple(np.shape(x))}")
    if not np.isfinite(a).all():
        raise ConfigError(f"{what}: {int((~np.isfinite(a)).sum())} non-finite pixel(s)")
    return a


def _monotone_map(out: np.ndarray, base: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, float]:
    """g(out) (isotonic fit of base on out over ``ref``) and its R^2 on ``ref``."""
    x, y = out[ref].astype(np.float64), base[ref].astype(np.float64)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    fitted = isotonic_regression(y[order]).x
    # Tied x must share one value: average the fit over ties, then interpolate.
    ux, inv = np.unique(xs, return_inverse=True)
    uy = np.bincount(inv, weights=fitted) / np.bincount(inv)
    mapped = np.interp(out.astype(np.float64), ux, uy) if len(ux) > 1 else np.full(out.shape, uy[0])
    resid = mapped[ref] - y
    var = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / var if var > 0 else 0.0
    return mapped.astype(np.float32), r2


@dataclass
class Iso:
    """A monotone map from a statistic to a truth value (piecewise linear, clamped)."""

    x: list[float]
    y: list[float]

    @classmethod
    def fit(cls, stat: np.ndarray, truth: np.ndarray) -> "Iso":
        stat, truth = np.asarray(stat, float), np.asarray(truth, float)
        if len(stat) == 0:
            return cls([0.0], [0.0])
        order = np.argsort(stat, kind="stable")
        fitted = isotonic_regression(truth[order]).x
        ux, inv = np.unique(stat[order], return_inverse=True)
        uy = np.bincount(inv, weights=fitted) / np.bincount(inv)
        return cls([float(v) for v in ux], [float(v) for v in uy])

    def __call__(self, v: float) -> float:
        return float(np.interp(v, self.x, self.y))


@dataclass
class AttributeOracle:
    size: int
    fluid_threshold: float  # per-side area statistic
    nodule_threshold: float  # smoothed rise peak
    r2_limit: float  # gate: grey-level fit R^2 below this = not this patient
    volume_map: Iso
    radius_map: Iso  # equivalent radius (px) -> rendered radius (px)
    report: dict = field(default_factory=dict)
    volume_feature: str = "area"  # fluid statistic volume_map reads: "area", "height" or "combined"

    def measure(self, output, baseline: PatientBaseline) -> Attributes:
        """Attributes of ``output`` ((S, S) or (1, S, S), [-1, 1], numpy or torch) read against
        ``baseline`` (:func:`patient_baseline` of its source's patient and physics)."""
        if not isinstance(baseline, PatientBaseline):
            raise ConfigError(f"baseline: expected a PatientBaseline, got {type(baseline).__name__}")
        if baseline.size != self.size:
            raise ConfigError(f"baseline is {baseline.size} px but the oracle was calibrated at {self.size} px")
        out = _as_image(output, self.size, "output")
        feats = _features(out, baseline)
        return self._decide(feats)

    def _decide(self, f: dict) -> Attributes:
        valid = f["r2"] >= self.r2_limit
        fluid = {}
        for side in SIDES:
            present = bool(valid and f["area"][side] > self.fluid_threshold)
            fluid[side] = SideFluid(present, self.volume_map(f[self.volume_feature][side]) if present else 0.0,
                                    float(f["height"][side]) if present else 0.0, float(f["area"][side]))
        label = {(False, False): "none", (True, False): "right", (False, True): "left", (True, True): "both"}
        side = label[(fluid["right"].present, fluid["left"].present)]
        nod = bool(valid and f["peak"] > self.nodule_threshold)
        ctr = f["ctr"] if valid else f["own_ctr"]
        return Attributes(bool(valid), float(f["r2"]), fluid, side, nod,
                          f["yx"] if nod else None,
                          self.radius_map(f["eq_radius"]) / self.size if nod else None,
                          float(f["peak"]), float(ctr), bool(valid and ctr > 0.5))

    def to_json(self) -> dict:
        return {"size": self.size, "fluid_threshold": self.fluid_threshold,
                "nodule_threshold": self.nodule_threshold, "r2_limit": self.r2_limit,
                "volume_map": asdict(self.volume_map), "radius_map": asdict(self.radius_map),
                "volume_feature": self.volume_feature, "report": self.report}

    @classmethod
    def from_json(cls, d: dict) -> "AttributeOracle":
        return cls(int(d["size"]), float(d["fluid_threshold"]), float(d["nodule_threshold"]),
                   float(d["r2_limit"]), Iso(**d["volume_map"]), Iso(**d["radius_map"]), d.get("report", {}),
                   d.get("volume_feature", "area"))


def _features(out: np.ndarray, b: PatientBaseline) -> dict:
    """Raw statistics of one output against its baseline (no thresholds)."""
    s = b.size
    mapped, r2 = _monotone_map(out, b.image, b.reference)
    r = (mapped - b.envelope) / b.contrast
    soft = np.clip(r, 0, 1)
    lung_any = b.lungs["right"] | b.lungs["left"]
    # Heart: the grid CTR whose lung coverage best explains the rise (the own CTR: nothing).
    best_c, best_err, best_g = b.ctr, float("inf"), np.zeros((s, s), bool)
    domain = np.zeros((s, s), bool)
    for _, g in b.growth:
        domain |= g
    # Fit where fluid does not reach: rows above the lower 40 % of the patient's heart.
    hrows = np.flatnonzero(b.heart.any(axis=1))
    if hrows.size:
        domain[int(hrows[0] + 0.6 * (hrows[-1] - hrows[0])):] = False
    if domain.any():
        best_err = float((soft[domain] ** 2).sum())
        for c, g in b.growth:
            err = float(((soft[domain] - g[domain]) ** 2).sum())
            if err < best_err:
                best_c, best_err, best_g = c, err, g
    explained = ndi.binary_dilation(best_g, iterations=1) if best_g.any() else best_g
    area, height, fluid_px = {}, {}, np.zeros((s, s), bool)
    for side in SIDES:
        geo, lung = b.geometry[side], b.lungs[side]
        zone = lung & (geo["y_rel"] >= BASAL_FROM) & ~explained
        # Fluid lies on the base: risen parts of the zone connected to its lowest fifth.
        lab, _ = ndi.label(zone & (r > 0.25))
        ids = np.unique(lab[zone & (geo["y_rel"] >= 0.8)])
        basal = np.isin(lab, ids[ids > 0])
        area[side] = float(soft[basal].sum()) / max(geo["area"], 1)
        # Height: the risen run of the lateral third, rows up from the costophrenic angle.
        lat = geo["wall"] & ~explained
        run = 0
        for row in range(geo["y_cp"], geo["top"] - 1, -1):
            px = lat[row]
            if not px.any():
                if run == 0:
                    continue
                break
            if soft[row, px].mean() >= RISEN:
                run += 1
            else:
                break
        height[side] = run / max(geo["height"], 1)
        fluid_px |= basal
    # Nodule: smoothed rise in the lungs, heart and fluid pixels left out.
    keep = lung_any & ~explained & ~ndi.binary_dilation(fluid_px, iterations=1)
    sigma = max(0.02 * s, 0.6)
    num = ndi.gaussian_filter(np.where(keep, soft, 0).astype(np.float32), sigma)
    den = ndi.gaussian_filter(keep.astype(np.float32), sigma)
    # Centres only where the phantom puts them: more than ~2 px inside the lung (radius + 1), which
    # also keeps edge spill of a blurred output (chest wall, heart, liver) out of the search.
    centre = ndi.binary_erosion(keep, iterations=2)
    sm = np.where(centre & (den > 0.2), num / np.maximum(den, 1e-6), 0)
    k = int(np.argmax(sm))
    py, px_ = divmod(k, s)
    peak = float(sm[py, px_])
    win = (slice(max(py - 2, 0), py + 3), slice(max(px_ - 2, 0), px_ + 3))
    w = np.where(keep[win], soft[win], 0)
    yy, xx = np.mgrid[win[0], win[1]]
    if w.sum() > 0:
        yx = (float((w * (yy + 0.5)).sum() / w.sum()) / s, float((w * (xx + 0.5)).sum() / w.sum()) / s)
    else:
        yx = ((py + 0.5) / s, (px_ + 0.5) / s)
    raw_peak = float(soft[win].max()) if soft[win].size else 0.0
    lab, _ = ndi.label(keep & (soft >= 0.5 * max(raw_peak, 1e-6)))
    lab_id = lab[win][np.unravel_index(np.argmax(np.where(keep[win], soft[win], -1)), w.shape)]
    eq_radius = math.sqrt(float((lab == lab_id).sum()) / math.pi) if lab_id > 0 else 0.0
    combined = {side: height[side] + 0.1 * area[side] for side in SIDES}
    return {"r2": r2, "area": area, "height": height, "combined": combined, "peak": peak, "yx": yx, "eq_radius": eq_radius,
            "ctr": float(best_c), "own_ctr": b.ctr}


# ----------------------------------------------------------------------------- degenerate outputs


def blur_output(image: np.ndarray, sigma_px: float | None = None) -> np.ndarray:
    """The source blurred (Gaussian, default sigma = size / 64 px: 1 px at 64 px)."""
    sigma = image.shape[-1] / 64.0 if sigma_px is None else sigma_px
    return ndi.gaussian_filter(image, sigma, mode="nearest").astype(np.float32)


def reexpose_output(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The source globally re-exposed: brightness, contrast and gamma of the whole image
    changed (u = (x + 1) / 2 -> clip(a + b (u - 0.5) + 0.5) ** gamma)."""
    a, b = rng.uniform(-0.15, 0.15), math.exp(rng.uniform(math.log(0.75), math.log(1.33)))
    gamma = math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
    u = np.clip(a + b * ((image + 1) / 2 - 0.5) + 0.5, 0, 1) ** gamma
    return (u * 2 - 1).astype(np.float32)


def noise_output(size: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.normal(0, 0.5, (size, size)), -1, 1).astype(np.float32)


# ----------------------------------------------------------------------------- calibration


def _wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [max(0.0, c - h), min(1.0, c + h)]


def _rate(flags) -> dict:
    flags = [bool(f) for f in flags]
    k, n = sum(flags), len(flags)
    return {"value": k / n if n else float("nan"), "ci95": _wilson(k, n), "n": n}


def _spearman(a, b, seed: int = 0, n_boot: int = 1000) -> dict:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    if n < 3:
        return {"value": float("nan"), "ci95": [float("nan")] * 2, "n": n}
    rho = float(spearmanr(a, b).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        if np.ptp(a[i]) > 0 and np.ptp(b[i]) > 0:
            boots.append(spearmanr(a[i], b[i]).statistic)
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (float("nan"),) * 2
    return {"value": rho, "ci95": [float(lo), float(hi)], "n": n}


def _mean_ci(values, seed: int = 0, n_boot: int = 1000) -> dict:
    v = np.asarray(values, float)
    if len(v) == 0:
        return {"value": float("nan"), "ci95": [float("nan")] * 2, "n": 0}
    rng = np.random.default_rng(seed)
    boots = [v[rng.integers(0, len(v), len(v))].mean() for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"value": float(v.mean()), "ci95": [float(lo), float(hi)], "n": int(len(v))}


def _render_patient(i: int, size: int, seed: int, lung_source: str) -> dict:
    """One calibration patient: baseline (physics 1), ideal effusion / nodule / cardiomegaly
    renders (physics 1) and the clean patient re-acquired (physics 2), with their truth."""
    from .generator import draw_physics, render_phantom

    patient, phys = (int(v) for v in np.random.SeedSequence([seed, 15, i]).generate_state(2))
    rng = np.random.default_rng(phys)
    p1, p2 = draw_physics(rng), draw_physics(rng)
    side = ("left", "right", "both")[i % 3]
    eff = {"side": side, "volume": round(float(rng.uniform(0.15, 0.5)), 5),
           "meniscus": round(float(rng.uniform(0.45, 0.75)), 5)}
    ctr = round(float(rng.uniform(0.55, 0.68)), 5)
    base = patient_baseline(patient, size, p1, lung_source=lung_source)
    e = render_phantom(patient, size, {"effusion": eff}, p1, lung_source=lung_source)
    n = render_phantom(patient, size, {"nodule": True}, p1, lung_source=lung_source)
    c = render_phantom(patient, size, {"cardiomegaly": {"ctr": ctr}}, p1, lung_source=lung_source)
    other = render_phantom(patient, size, {}, p2, lung_source=lung_source)
    return {"base": base, "effusion": (_prep(e, size), eff), "nodule": (_prep(n, size), n.truth),
            "cardiomegaly": (_prep(c, size), ctr), "reacquired": _prep(other, size),
            "degenerate_rng": int(phys)}


def _cache_path(size: int, n: int, seed: int, lung_source: str, cache_dir) -> Path:
    from ..paths import cache_dir as default_cache
    from .default import generator_version

    key_src = json.dumps({"v": ATTRIBUTE_ORACLE_VERSION, "size": size, "n": n, "seed": seed,
                          "lungs": lung_source, "generator": generator_version()}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else default_cache()
    return root / "attribute_oracle" / f"{size}px-n{n}-s{seed}-{key}.json"


def calibrate_attribute_oracle(size: int = 64, n: int = 400, seed: int = 0, cache_dir=None, *,
                               lung_source: str = "auto", progress=None) -> AttributeOracle:
    """Fit the oracle on the first half of ``n`` calibration patients, measure it on the second
    half (``oracle.report``), cached as JSON under ``cache_dir/attribute_oracle/`` (default: the
    toolkit's cache folder) with a key covering the phantom generator's version, size, n, seed."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 4:
        raise ConfigError(f"n must be an integer >= 4, got {n!r}")
    path = _cache_path(size, n, seed, lung_source, cache_dir)
    if path.is_file():
        return AttributeOracle.from_json(json.loads(path.read_text()))
    log.info("calibrating the attribute oracle at %d px on %d patients", size, n)
    oracle = _calibrate(size, n, seed, lung_source, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(oracle.to_json(), indent=1, sort_keys=True))
    os.replace(tmp, path)
    return oracle


def _calibrate(size: int, n: int, seed: int, lung_source: str, progress) -> AttributeOracle:
    from ..evaluation.roc import youden_threshold

    if n >= 100:
        from .lungs import warm_bank

        warm_bank()
    rows = []
    for i in range(n):
        p = _render_patient(i, size, seed, lung_source)
        b = p["base"]
        d_rng = np.random.default_rng(p["degenerate_rng"] + 1)
        outputs = {
            "effusion": p["effusion"][0], "nodule": p["nodule"][0], "cardiomegaly": p["cardiomegaly"][0],
            "reacquired": p["reacquired"], "untouched": b.image, "blurred": blur_output(b.image),
            "reexposed": reexpose_output(b.image, d_rng), "noise": noise_output(size, d_rng),
        }
        if i >= n // 2:  # held-out patients: also an effusion re-exposed (the measure must survive it)
            outputs["effusion_reexposed"] = reexpose_output(p["effusion"][0], d_rng)
        rows.append({"feats": {k: _features(v, b) for k, v in outputs.items()},
                     "eff": p["effusion"][1], "nod": p["nodule"][1], "ctr": p["cardiomegaly"][1],
                     "own_ctr": b.ctr})
        if progress:
            progress(i + 1)
    fit, test = rows[: n // 2], rows[n // 2:]

    # Gate: every ideal or re-acquired output of a fit patient passes it, with room.
    same = [r["feats"][k]["r2"] for r in fit for k in ("effusion", "nodule", "cardiomegaly", "reacquired")]
    r2_limit = float(min(same)) - 0.1

    def sides_of(eff):
        return SIDES if eff["side"] == "both" else (eff["side"],)

    # Fluid: positives = the fluid sides of effusion renders; negatives = every other side.
    pos, neg = [], []
    for r in fit:
        fe = r["feats"]["effusion"]["area"]
        for side in SIDES:
            (pos if side in sides_of(r["eff"]) else neg).append(fe[side])
        for k in ("nodule", "cardiomegaly", "reacquired"):
            neg.extend(r["feats"][k]["area"][s] for s in SIDES)
    fluid_threshold = youden_threshold(np.array(pos + neg), np.array([1] * len(pos) + [0] * len(neg)), 0.05)
    vol_true = [r["eff"]["volume"] for r in fit for s in sides_of(r["eff"])]
    from scipy.stats import spearmanr

    # The volume statistic: whichever of area, height, height + 0.1 area ranks the fit half best.
    cand = {k: [r["feats"]["effusion"][k][s] for r in fit for s in sides_of(r["eff"])]
            for k in ("area", "height", "combined")}
    volume_feature = max(cand, key=lambda k: (spearmanr(cand[k], vol_true).statistic, k == "area"))
    volume_map = Iso.fit(np.array(cand[volume_feature]), np.array(vol_true))
    # Specific rather than balanced: at least the 97th percentile of the negatives.
    fluid_threshold = max(fluid_threshold, float(np.quantile(neg, 0.97)))

    npos = [r["feats"]["nodule"]["peak"] for r in fit]
    nneg = [r["feats"][k]["peak"] for r in fit for k in ("effusion", "cardiomegaly", "reacquired")]
    nodule_threshold = youden_threshold(np.array(npos + nneg), np.array([1] * len(npos) + [0] * len(nneg)), 0.2)
    nodule_threshold = max(nodule_threshold, float(np.quantile(nneg, 0.9)))
    radius_map = Iso.fit(np.array([r["feats"]["nodule"]["eq_radius"] for r in fit]),
                         np.array([r["nod"]["nodule_radius_px"] for r in fit]))
    oracle = AttributeOracle(size, float(fluid_threshold), float(nodule_threshold), r2_limit, volume_map, radius_map,
                             volume_feature=volume_feature)
    oracle.report = _evaluate(oracle, test, n, seed, lung_source)
    return oracle


def _evaluate(oracle: AttributeOracle, test: list[dict], n: int, seed: int, lung_source: str) -> dict:
    from .default import generator_version

    dec = [{k: oracle._decide(f) for k, f in r["feats"].items()} for r in test]
    eff = [(r, d["effusion"]) for r, d in zip(test, dec)]
    side_ok = [a.side == r["eff"]["side"] for r, a in eff]
    truth_v = [r["eff"]["volume"] for r, _ in eff]
    est_v = [a.fluid_volume for _, a in eff]
    both_sides = [(r["eff"]["volume"], a.fluid[s].height) for r, a in eff
                  for s in (SIDES if r["eff"]["side"] == "both" else (r["eff"]["side"],))]
    nod = [(r["nod"], d["nodule"]) for r, d in zip(test, dec)]
    pos_err = [math.hypot(a.nodule_yx[0] - t["nodule_y"], a.nodule_yx[1] - t["nodule_x"]) * oracle.size
               for t, a in nod if a.nodule_present]
    rad_err = [abs(a.nodule_radius * oracle.size - t["nodule_radius_px"]) for t, a in nod if a.nodule_present]
    ctr_err = [abs(d["cardiomegaly"].ctr - r["ctr"]) for r, d in zip(test, dec)]
    ctr_norm_err = [abs(d["reacquired"].ctr - r["own_ctr"]) for r, d in zip(test, dec)]

    def anything(a: Attributes) -> bool:
        return a.side != "none" or a.nodule_present or a.cardiomegaly

    fp = {}
    for case in ("untouched", "blurred", "reexposed", "noise", "reacquired"):
        fp[case] = {"any": _rate([anything(d[case]) for d in dec]),
                    "fluid": _rate([d[case].side != "none" for d in dec]),
                    "nodule": _rate([d[case].nodule_present for d in dec]),
                    "cardiomegaly": _rate([d[case].cardiomegaly for d in dec]),
                    "valid": _rate([d[case].valid for d in dec])}
    return {
        "protocol": {"patients": n, "fit": n // 2, "test": n - n // 2, "seed": seed, "size": oracle.size,
                     "lung_source": lung_source, "generator": generator_version(),
                     "version": ATTRIBUTE_ORACLE_VERSION},
        "effusion": {
            "side_accuracy": _rate(side_ok),
            "side_accuracy_reexposed": _rate([d["effusion_reexposed"].side == r["eff"]["side"]
                                              for r, d in zip(test, dec) if "effusion_reexposed" in d]),
            "volume_spearman": _spearman(truth_v, est_v, seed),
            "volume_mae": _mean_ci(np.abs(np.array(truth_v) - np.array(est_v)), seed),
            "height_mae": _mean_ci([abs(t - h) for t, h in both_sides], seed),
            "height_spearman": _spearman(*zip(*both_sides), seed=seed),
            "nodule_fp": _rate([a.nodule_present for _, a in eff]),
            "cardiomegaly_fp": _rate([a.cardiomegaly for _, a in eff]),
        },
        "nodule": {"detection": _rate([a.nodule_present for _, a in nod]),
                   "position_error_px": _mean_ci(pos_err, seed), "radius_error_px": _mean_ci(rad_err, seed),
                   "fluid_fp": _rate([a.side != "none" for _, a in nod])},
        "cardiomegaly": {"detection": _rate([d["cardiomegaly"].cardiomegaly for d in dec]),
                         "ctr_mae": _mean_ci(ctr_err, seed),
                         "ctr_spearman": _spearman([r["ctr"] for r in test], [d["cardiomegaly"].ctr for d in dec], seed),
                         "fluid_fp": _rate([d["cardiomegaly"].side != "none" for d in dec]),
                         "normal_ctr_mae": _mean_ci(ctr_norm_err, seed)},
        "false_positive": fp,
    }
