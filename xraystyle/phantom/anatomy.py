"""Procedural PA chest anatomy for the phantom, as a map of line attenuation.

Everything here is physics-free: :func:`render_anatomy` returns ``base`` (attenuation of body,
lungs, heart, mediastinum and bones, in "neutral display units": with neutral physics the image
equals the attenuation) and ``vessels`` (lung markings, kept apart so that findings can hide
them), plus the masks and geometry that the findings need.

Orientation: PA view as displayed, patient's right on the image left. The heart, aortic knob and
gastric bubble are on the image right, the right hemidiaphragm (image left) is higher. Shapes are
drawn in coordinates normalised to the image side, so one parameter set renders at any size.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from .lungs import LungTemplate, draw_template, load_template, procedural_template, template_names

log = logging.getLogger(__name__)
F32 = np.float32


@dataclass(frozen=True)
class AnatomyParams:
    """One patient's anatomy; lengths are fractions of the image side."""

    lung_template: str
    lung_width: float  # joint lung box width
    lung_stretch: float  # multiplies the template's height / width ratio
    lung_top: float
    midline: float
    body_margin: float  # soft-tissue chest wall beyond the lungs
    shoulder: float  # height of the shoulder line at the neck
    soft_tissue: float  # attenuation of the soft tissue at the body centre
    lung_air: float  # attenuation removed by aerated lung at full depth
    ctr: float  # cardiothoracic ratio of this anatomy without cardiomegaly
    heart_right: float  # share of the heart width right of the midline (patient's right)
    heart_height: float  # heart height / lung height
    heart_apex: float  # relative heart height where the left border is widest
    heart_density: float
    mediastinum_right: float  # superior mediastinum border right of the midline (image left)
    mediastinum_left: float
    spine_width: float
    rib_count: float  # posterior rib spacing = lung height / rib_count
    rib_phase: float
    rib_curve: float
    rib_density: float
    clavicle_level: float  # clavicle height below the lung top, fraction of lung height
    sex: str
    age: int
    breast_density: float  # 0 for male anatomy
    gastric_bubble: float  # radius, 0 when absent
    vessel_seed: int
    procedural_seed: int = field(default=0)


def draw_anatomy(rng: np.random.Generator, lung_source: str = "auto") -> AnatomyParams:
    """Draw anatomy parameters; the number of draws is fixed whatever the template."""
    template = draw_template(rng, lung_source)
    procedural_seed = int(rng.integers(0, 1 << 62))
    sex = "F" if rng.random() < 0.5 else "M"
    breast = float(rng.uniform(0.03, 0.08))
    bubble_u, bubble_r = rng.random(), float(rng.uniform(0.025, 0.045))
    bubble = bubble_r if bubble_u < 0.6 else 0.0
    return AnatomyParams(
        lung_template=template.name,
        lung_width=float(rng.uniform(0.7, 0.8)),
        lung_stretch=float(rng.uniform(0.92, 1.08)),
        lung_top=float(rng.uniform(0.06, 0.11)),
        midline=float(0.5 + rng.uniform(-0.015, 0.015)),
        body_margin=float(rng.uniform(0.04, 0.08)),
        shoulder=float(rng.uniform(0.02, 0.07)),
        soft_tissue=float(rng.uniform(0.66, 0.74)),
        lung_air=float(rng.uniform(0.34, 0.42)),
        ctr=float(rng.uniform(0.40, 0.47)),
        heart_right=float(rng.uniform(0.27, 0.36)),
        heart_height=float(rng.uniform(0.36, 0.44)),
        heart_apex=float(rng.uniform(0.75, 0.9)),
        heart_density=float(rng.uniform(0.05, 0.09)),
        mediastinum_right=float(rng.uniform(0.045, 0.06)),
        mediastinum_left=float(rng.uniform(0.04, 0.055)),
        spine_width=float(rng.uniform(0.075, 0.095)),
        rib_count=float(rng.uniform(9.0, 10.5)),
        rib_phase=float(rng.uniform(-0.25, 0.25)),
        rib_curve=float(rng.uniform(0.85, 1.15)),
        rib_density=float(rng.uniform(0.045, 0.07)),
        clavicle_level=float(rng.uniform(0.0, 0.08)),
        sex=sex,
        age=int(rng.integers(20, 86)),
        breast_density=breast if sex == "F" else 0.0,
        gastric_bubble=bubble,
        vessel_seed=int(rng.integers(0, 1 << 62)),
        procedural_seed=procedural_seed if template.name == "procedural" else 0,
    )


@dataclass
class AnatomyLayers:
    """Rendered anatomy at one size. Masks are bool, maps float32, all (size, size)."""

    size: int
    base: np.ndarray  # attenuation without lung markings
    vessels: np.ndarray  # lung markings, already confined to the aerated lungs
    air: np.ndarray  # attenuation removed by aerated lung (what fluid would give back)
    lung_right: np.ndarray  # patient's right lung = image left
    lung_left: np.ndarray
    heart: np.ndarray
    body: np.ndarray
    midline_px: float
    thorax_width_px: int
    heart_width_px: int
    lung_box: tuple[int, int, int, int]  # top, bottom, left, right (exclusive ends)

    @property
    def ctr(self) -> float:
        return self.heart_width_px / self.thorax_width_px

    def lung(self, side: str) -> np.ndarray:
        return self.lung_right if side == "right" else self.lung_left


@functools.lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates (y, x), each (size, size) float32 in (0, 1)."""
    c = (np.arange(size, dtype=F32) + F32(0.5)) / F32(size)
    return np.broadcast_to(c[:, None], (size, size)), np.broadcast_to(c[None, :], (size, size))


def _edge(signed_px: np.ndarray) -> np.ndarray:
    """Anti-aliased inside indicator from a signed distance in pixels (positive inside)."""
    return np.clip(signed_px + F32(0.5), 0, 1)


def _template(params: AnatomyParams) -> LungTemplate:
    if params.lung_template == "procedural":
        return procedural_template(np.random.default_rng(params.procedural_seed))
    tpl = load_template(params.lung_template) if params.lung_template in template_names() else None
    if tpl is None:  # a parameter set from a machine with another torchxrayvision build
        log.warning("lung template %s is not available here: using a procedural lung shape", params.lung_template)
        return procedural_template(np.random.default_rng(params.procedural_seed))
    return tpl


def _paste(arr: np.ndarray, size: int, top: int, left: int, h: int, w: int) -> np.ndarray:
    """Resample a canonical template map to h x w and place it on a size x size canvas."""
    out = np.zeros((size, size), F32)
    res = np.asarray(Image.fromarray(arr, mode="F").resize((w, h), Image.BILINEAR), dtype=F32)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, size), min(left + w, size)
    out[y0:y1, x0:x1] = res[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def _row_extents(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: any pixel set, first and last set column (undefined where none)."""
    has = mask.any(axis=1)
    first = np.argmax(mask, axis=1)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return has, first, last


def render_anatomy(params: AnatomyParams, size: int, ctr: float | None = None) -> AnatomyLayers:
    """Render the anatomy at ``size`` px; ``ctr`` overrides the heart size (cardiomegaly)."""
    s = size
    yy, xx = grid(s)
    tpl = _template(params)

    # Lungs: the template stretched into the drawn joint box.
    bw = params.lung_width * s
    bh = min(bw * tpl.aspect * params.lung_stretch, (0.93 - params.lung_top) * s)
    top, left = round(params.lung_top * s), round(params.midline * s - bw / 2)
    h, w = max(round(bh), 8), max(round(bw), 8)
    soft_r = _paste(tpl.right, s, top, left, h, w)
    soft_l = _paste(tpl.left, s, top, left, h, w)
    depth = _paste(tpl.depth, s, top, left, h, w)
    hard_r, hard_l = soft_r > 0.5, soft_l > 0.5
    lung_top, lung_bottom = top, top + h
    mid = params.midline * s

    # Thoracic width for the CTR: widest row spanning both lungs (outer lung borders).
    has_r, first_r, _ = _row_extents(hard_r)
    has_l, _, last_l = _row_extents(hard_l)
    both = has_r & has_l
    thorax_w = int((last_l[both] - first_r[both] + 1).max()) if both.any() else max(w, 1)

    # Mediastinum: a soft-tissue band between the lungs (the masks were traced close to the
    # midline), the aortic knob bulging to the patient's left, and the heart below.
    m_r, m_l = mid - params.mediastinum_right * s, mid + params.mediastinum_left * s
    band = _edge(np.minimum(xx * s - F32(m_r), F32(m_l) - xx * s))
    knob_r = 0.024 * s
    kx, ky = m_l - 0.1 * knob_r, lung_top + 0.2 * h
    knob = np.zeros((s, s), F32)
    kb = _box(s, ky - knob_r - 2, ky + knob_r + 2, kx - knob_r - 2, kx + knob_r + 2)
    knob[kb] = _edge(knob_r - np.hypot(xx[kb] * s - F32(kx), yy[kb] * s - F32(ky)))
    hard_r &= xx * s < m_r
    hard_l &= xx * s > m_l
    heart_soft, heart_carve, heart_w_px, heart_profile = _heart(
        params, s, ctr, thorax_w, mid, hard_r, hard_l, lung_top, h, m_r, m_l
    )
    heart_hard = (heart_soft > 0.5) & (yy * s < lung_bottom)
    silhouette = np.maximum(np.maximum(band, knob), heart_carve)
    soft_r = soft_r * (1 - silhouette)
    soft_l = soft_l * (1 - silhouette)
    lungs = soft_r + soft_l

    body, thickness = _body(params, s, yy, xx)
    air = params.lung_air * (0.45 + 0.55 * depth) * lungs
    base = thickness - air
    base += _heart_density(params, heart_profile)
    base += _abdomen(params, s, yy, xx, hard_r | hard_l, body)
    _mediastinum(base, params, s, yy, xx, mid, lung_top, h)
    _spine(base, body, params, s, yy, xx, mid, lung_top, h)
    _ribs(base, body, params, s, yy, xx, mid, thorax_w, lung_top, h)
    _clavicles(base, params, s, yy, xx, mid, thorax_w, lung_top, h)
    if params.breast_density > 0:
        _breasts(base, params, s, yy, xx, mid, thorax_w, lung_bottom)
    vessels = _vessels(params, s, mid, lung_top, h, w) * lungs
    return AnatomyLayers(
        size=s,
        base=np.maximum(base, 0).astype(F32),
        vessels=vessels.astype(F32),
        air=air.astype(F32),
        lung_right=soft_r > 0.5,
        lung_left=soft_l > 0.5,
        heart=heart_hard,
        body=body > 0.5,
        midline_px=float(mid),
        thorax_width_px=thorax_w,
        heart_width_px=heart_w_px,
        lung_box=(lung_top, min(lung_bottom, s), max(left, 0), min(left + w, s)),
    )


def _heart(params, s, ctr, thorax_w, mid, hard_r, hard_l, lung_top, lung_h, m_r, m_l):
    """Cardiac silhouette whose horizontal extent is exactly ``ctr * thorax_w`` pixels.

    Pixelisation can miss the target by a pixel on each side, which at 32-64 px moves the CTR
    by several hundredths: the width is corrected until the measured mask extent matches.
    """
    target = params.ctr if ctr is None else ctr
    # Heart base on the left hemidiaphragm: median lung bottom under the heart's left half.
    bottoms = np.where(hard_l.any(axis=0), s - 1 - np.argmax(hard_l[::-1], axis=0), -1)
    span = slice(int(mid), int(min(mid + 0.6 * target * thorax_w, s)))
    valid = bottoms[span][bottoms[span] >= 0]
    base_y = float(np.median(valid)) if valid.size else lung_top + lung_h * 0.9
    base_y += 0.015 * s
    heart_h = params.heart_height * lung_h * math.sqrt(target / 0.44)
    # The right heart border meets the right lung (no soft-tissue gap that would read as
    # heart) unless that would put most of the heart right of the midline.
    r0 = int(base_y - 0.7 * heart_h)
    has, _, last = _row_extents(hard_r[r0 : max(int(base_y - 0.3 * heart_h), r0 + 1)])
    lung_edge = float(np.median(last[has])) if has.any() else np.inf
    width = target * thorax_w
    enlarged = target > 0.5
    for _ in range(10):
        x_right = min(mid - params.heart_right * width, m_r - 1.0)
        if mid - 0.38 * width <= lung_edge - 1.0 < x_right:
            x_right = lung_edge - 1.0
        x_right = max(x_right, m_l + 1.0 - width)  # the left border clears the mediastinum
        soft, carve, profile = _silhouette(s, x_right, width, heart_h, base_y, m_r, m_l, params)
        cols = np.flatnonzero((soft > 0.5).any(axis=0))
        measured = int(cols[-1] - cols[0] + 1) if cols.size else 0
        err = target * thorax_w - measured
        # Close enough, and on the right side of 0.5 (at 32 px one pixel is 0.04 of CTR).
        ratio = measured / thorax_w
        if abs(err) < 0.75 and (ratio > 0.5 if enlarged else ratio < 0.5):
            break
        width += err if abs(err) >= 0.75 else (1.0 if enlarged else -1.0)
    return soft, carve, measured, profile


def _silhouette(s, x_right, width, height, base_y, m_r, m_l, params):
    """Heart borders as functions of the row: they leave the mediastinum at the heart's top,
    the right border (right atrium) bulges to ``x_right`` two thirds down, the left border
    (left ventricle) sweeps out to ``x_right + width`` near the apex and rounds off onto the
    diaphragm. Returns the anti-aliased mask (ending just below the diaphragm), the same shape
    continued downwards (what it hides of the lung bases) and a thickness profile in [0, 1]."""
    y = np.arange(s, dtype=F32) + F32(0.5)
    top = base_y - height
    t = np.clip((y - F32(top)) / F32(height), 0, 1.2)
    apex = params.heart_apex
    grow_r = np.sin(np.pi / 2 * np.clip(t / 0.65, 0, 1)) ** 0.7
    grow_r = np.where(t > 0.65, 1 - 0.25 * ((t - 0.65) / 0.35) ** 2, grow_r)
    grow_l = np.sin(np.pi / 2 * np.clip(t / apex, 0, 1)) ** 1.3
    grow_l = np.where(t > apex, 1 - 0.12 * ((t - apex) / (1 - apex)) ** 2, grow_l)
    xr = F32(m_r) - F32(m_r - x_right) * grow_r.astype(F32)
    xl = F32(m_l) + F32(x_right + width - m_l) * grow_l.astype(F32)
    rows = y >= top
    fade = np.clip((F32(base_y + 0.03 * s) - y) / F32(0.06 * s), 0, 1)[:, None]  # into the abdomen
    px = np.arange(s, dtype=F32)[None, :] + F32(0.5)
    inside = np.minimum(px - xr[:, None], xl[:, None] - px)
    carve = _edge(inside) * rows[:, None]  # continues down: no lung left under the heart
    soft = carve * (y <= base_y + 0.03 * s)[:, None]
    # Thickness of a roughly ellipsoidal heart: thinner where the silhouette is narrow.
    centre = F32(x_right + width / 2)
    profile = np.sqrt(np.clip(1 - ((px - centre) / F32(width / 2)) ** 2, 0, 1)) * soft * fade
    return soft, carve, profile


def _heart_density(params, profile):
    return params.heart_density * profile


def _body(params, s, yy, xx):
    """Body outline (neck, sloping shoulders, chest wall) and soft-tissue thickness."""
    dx = np.abs(xx - F32(params.midline))
    half_w = min(params.lung_width / 2 + params.body_margin, 0.49)
    half = F32(half_w) * (1 - F32(0.05) * ((yy - F32(0.55)) / F32(0.45)) ** 2)
    neck = F32(0.085)
    # Shoulder line: rises from the neck base to the acromion; the neck itself reaches the top.
    t = np.clip((dx - neck) / (half - neck), 0, 1)
    top = F32(params.shoulder) + F32(0.08) * t**2
    top = np.where(dx < neck, F32(0.0) - 1, top)
    inside = np.minimum((half - dx) * s, (yy - top) * s)
    body = _edge(inside)
    profile = np.clip(1 - (dx / half) ** 2, 0, 1) ** 0.5
    return body, params.soft_tissue * profile * body


def _abdomen(params, s, yy, xx, lungs_hard, body):
    """Below the hemidiaphragms: liver / spleen density and an optional gastric bubble."""
    has_col = lungs_hard.any(axis=0)
    cols = np.flatnonzero(has_col)
    if cols.size == 0:
        return np.zeros((s, s), F32)
    bottom = (s - np.argmax(lungs_hard[::-1], axis=0)).astype(F32)
    bottom = np.interp(np.arange(s), cols, bottom[cols]).astype(F32)  # across the mediastinum
    bottom = ndi.uniform_filter1d(bottom, size=max(3, s // 16))
    below = np.clip((np.arange(s, dtype=F32)[:, None] - bottom[None, :]) / (0.03 * s), 0, 1)
    x = np.arange(s, dtype=F32)
    inside = np.clip(np.minimum(x - cols[0], cols[-1] - x) / (0.04 * s), 0, 1)
    out = 0.12 * below * inside[None, :] * body
    if params.gastric_bubble > 0:
        bx = params.midline + 0.13
        lung_bottom_at = float(bottom[min(int(bx * s), s - 1)]) / s
        r = params.gastric_bubble
        by = lung_bottom_at + r * 1.3
        b = _box(s, (by - r) * s - 2, (by + r) * s + 2, (bx - 1.4 * r) * s - 2, (bx + 1.4 * r) * s + 2)
        d = np.hypot((xx[b] - F32(bx)) / 1.4, yy[b] - F32(by))
        out[b] -= 0.12 * _edge((F32(r) - d) * s) * body[b]
    return out


def _box(s: int, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice]:
    """Pixel box (clipped to the image) for drawing a small structure without touching the
    whole image: most structures cover a few percent of it."""
    return (slice(max(int(y0), 0), min(int(math.ceil(y1)), s)), slice(max(int(x0), 0), min(int(math.ceil(x1)), s)))


def _mediastinum(base, params, s, yy, xx, mid, lung_top, lung_h):
    """Trachea (air column, darker) down to the carina, main bronchi beyond it."""
    carina = (lung_top + 0.38 * lung_h) / s
    tx = (mid - 0.006 * s) / s
    half = 0.018
    b = _box(s, 0, (carina + 0.08) * s, (tx - 0.08) * s, (tx + 0.08) * s)
    ys, xs = yy[b], xx[b]
    d = np.abs(xs - F32(tx))
    trachea = _edge((half - d) * s) * np.clip((carina - ys) * s / 2 + 0.5, 0, 1)
    out = -0.09 * trachea
    px, py = xs - F32(tx), ys - F32(carina)
    for sign, angle in ((-1, 0.55), (1, 0.75)):  # right main bronchus is steeper
        # distance to a ray from the carina going down and outwards
        ux, uy = sign * math.sin(angle), math.cos(angle)
        along = px * F32(ux) + py * F32(uy)
        perp = np.abs(px * F32(uy) - py * F32(ux))
        ray = _edge((half * 0.75 - perp) * s) * (along > 0) * (along < 0.07)
        out -= 0.06 * ray
    base[b] += out


def _spine(base, body, params, s, yy, xx, mid, lung_top, lung_h):
    """Vertebral column: cylinder-like density, darker disc spaces, pedicles."""
    half = params.spine_width / 2
    b = _box(s, 0, s, mid - half * s - 1, mid + half * s + 2)
    dx = (xx[b] - F32(mid / s)) / F32(half)
    inside = np.clip(1 - dx * dx, 0, 1)
    column = np.sqrt(inside) * _edge((1 - np.abs(dx)) * F32(half * s))
    period = lung_h / 11.0 / s
    phase = (yy[b] - F32(lung_top / s)) / F32(period)
    frac = phase - np.floor(phase)
    disc = np.exp(-((frac - 0.92) ** 2) / 0.004)
    ped = np.zeros_like(dx)
    for c in (-0.62, 0.62):
        ped = np.maximum(ped, np.exp(-(((dx - c) / 0.18) ** 2 + ((frac - 0.35) / 0.2) ** 2)))
    base[b] += (0.07 * column * (1 - 0.35 * disc) + 0.035 * ped * inside) * body[b]


def _ribs(base, body, params, s, yy, xx, mid, thorax_w, lung_top, lung_h):
    """Posterior ribs as curved bands with brighter cortical margins; faint anterior ribs.

    All ribs of a side share one curve shifted by the rib spacing, so the rib index and the
    position across a rib come from a single phase map (no loop over ribs)."""
    sp = lung_h / params.rib_count / s
    y0 = lung_top / s - 0.6 * sp + params.rib_phase * sp
    lung_bottom = (lung_top + lung_h) / s
    b = _box(s, (y0 - 0.5 * sp) * s, (lung_bottom + 0.1) * s, 0, s)
    ys = yy[b]
    half_w = thorax_w / 2 / s
    d = np.abs(xx[b] - F32(mid / s)) / F32(half_w)
    # Posterior rib: rises from the spine to d ~ 0.25, then sweeps down to the chest wall;
    # upper ribs are more tightly curved.
    upper = np.clip(1.5 - (ys - F32(y0)) / F32(4 * sp), 1, 1.5)
    curve = F32(sp * params.rib_curve) * (-1.4 * d + 3.2 * d * d) * upper
    phase = (ys - F32(y0) - curve) / F32(sp)
    k = np.floor(phase)
    frac = phase - k
    thick = F32(0.42)
    soft = F32(1.0 / max(sp * s, 1.0))  # one pixel in phase units
    band = np.clip(np.minimum(frac, thick - frac) / soft + 0.5, 0, 1)
    across = (2 * frac / thick - 1) ** 2
    profile = 0.55 + 0.45 * across * across
    reach = np.clip((d - 0.12) / 0.12, 0, 1) * np.clip((1.12 - d) / 0.06, 0, 1)
    valid = (k >= 0) & (k <= 9)
    post = params.rib_density * band * profile * reach * valid
    # Anterior ribs: from the chest wall obliquely down towards the midline, fading medially.
    sp_a = sp * 1.25
    phase_a = (ys - F32(y0 + 1.2 * sp) - F32(sp_a * 1.1) * (1 - d)) / F32(sp_a)
    ka = np.floor(phase_a)
    fa = phase_a - ka
    band_a = np.clip(np.minimum(fa, 0.3 - fa) / soft + 0.5, 0, 1)
    reach_a = np.clip((d - 0.35) / 0.3, 0, 1) * np.clip((1.05 - d) / 0.08, 0, 1) * (ka >= 0) * (ka <= 5)
    ant = 0.35 * params.rib_density * band_a * reach_a
    fade = np.clip((F32(lung_bottom + 0.04) - ys) / F32(0.06), 0, 1)  # hidden by the abdomen
    base[b] += (post + ant) * body[b] * fade


def _clavicles(base, params, s, yy, xx, mid, thorax_w, lung_top, lung_h):
    y_med = lung_top / s + params.clavicle_level * lung_h / s + 0.02
    b = _box(s, (y_med - 0.1) * s, (y_med + 0.05) * s, 0, s)
    half_w = thorax_w / 2 / s
    d = np.abs(xx[b] - F32(mid / s)) / F32(half_w)
    # Medial end low near the sternum, lateral end rising to the acromion with a gentle S.
    centre = F32(y_med) - F32(0.07) * d + F32(0.03) * np.sin(np.pi * np.clip(d, 0, 1.2))
    half_t = F32(0.012)
    dist = np.abs(yy[b] - centre)
    band = _edge((half_t - dist) * s)
    reach = np.clip((d - 0.08) / 0.05, 0, 1) * np.clip((1.02 - d) / 0.1, 0, 1)
    across = (dist / half_t).clip(0, 1) ** 2
    base[b] += 0.09 * band * reach * (0.7 + 0.3 * across)


def _breasts(base, params, s, yy, xx, mid, thorax_w, lung_bottom):
    half_w = thorax_w / 2 / s
    cy = lung_bottom / s - 0.06
    for sign in (-1, 1):
        cx = mid / s + sign * 0.55 * half_w
        b = _box(s, (cy - 0.13) * s, (cy + 0.13) * s + 1, (cx - 0.6 * half_w) * s, (cx + 0.6 * half_w) * s + 1)
        d = np.hypot((xx[b] - F32(cx)) / F32(0.6 * half_w), (yy[b] - F32(cy)) / F32(0.13))
        # Sharp lower margin (the breast fold), fading upwards.
        fade = np.clip((yy[b] - F32(cy - 0.12)) / F32(0.12), 0, 1)
        base[b] += params.breast_density * np.clip(1 - d * d, 0, 1) ** 0.5 * fade


def _vessels(params, s, mid, lung_top, lung_h, lung_w):
    """Branching pulmonary vessels from each hilum, thinning and fading to the periphery.

    A random binary tree per lung, grown one generation at a time (vectorised); every branch is
    drawn as two kinked halves, splatted into an accumulator and blurred by about a vessel width.
    """
    # Finer generations only where pixels can show them; the coarse tree is the same at every
    # size because each lung has its own stream and each generation draws after the previous.
    generations = int(np.clip(round(math.log2(s / 64)) + 5, 5, 7))
    acc = np.zeros(s * s, F32)
    scale = lung_w / s
    segs = []
    for k, side in enumerate(("right", "left")):
        rng = np.random.default_rng([params.vessel_seed, k])
        sign = -1.0 if side == "right" else 1.0
        hx = mid + sign * (0.1 * lung_w)
        hy = lung_top + lung_h * (0.46 if side == "right" else 0.42)  # left hilum is higher
        # Trunks fan from up-and-out to down, angles relative to the lateral direction.
        angles = np.radians(np.array([-75, -45, -18, 10, 38, 62, 85]) + rng.uniform(-8, 8, 7))
        n0 = angles.size
        x, y = np.full(n0, hx / s), np.full(n0, hy / s)
        ang = np.where(sign > 0, angles, np.pi - angles)
        length = 0.1 * scale * rng.uniform(0.8, 1.2, n0)
        weight = np.ones(n0)
        for _ in range(generations):
            n = x.size
            kink = rng.normal(0, 0.25, n)
            xm = x + np.cos(ang + kink) * length / 2
            ym = y + np.sin(ang + kink) * length / 2
            x1 = xm + np.cos(ang - kink * 0.5) * length / 2
            y1 = ym + np.sin(ang - kink * 0.5) * length / 2
            segs.append((x, y, xm, ym, weight))
            segs.append((xm, ym, x1, y1, weight))
            spread = np.radians(rng.uniform(15, 35, n))
            ang = np.arctan2(y1 - ym, x1 - xm)
            ang = np.concatenate([ang + spread, ang - spread * rng.uniform(0.5, 1.0, n)])
            x, y = np.concatenate([x1, x1]), np.concatenate([y1, y1])
            length = np.concatenate([length, length]) * rng.uniform(0.62, 0.85, 2 * n)
            weight = np.concatenate([weight, weight]) * 0.66
    _splat(acc, s, *(np.concatenate(parts) for parts in zip(*segs)))
    img = ndi.gaussian_filter(acc.reshape(s, s), sigma=max(0.7, s / 300))
    return 0.06 * np.tanh(img * (2.5 * 256 / s))


def _splat(acc, s, x0, y0, x1, y1, weight):
    """Accumulate segments as points every half pixel (nearest pixel: the blur that follows
    hides the difference to bilinear splatting at a quarter of the cost)."""
    n_pts = np.maximum(2, (np.hypot(x1 - x0, y1 - y0) * s * 2).astype(int))
    idx = np.repeat(np.arange(x0.size), n_pts)
    starts = np.repeat(np.cumsum(n_pts) - n_pts, n_pts)
    t = (np.arange(idx.size) - starts) / n_pts[idx]
    ix = ((x0[idx] + (x1 - x0)[idx] * t) * s).astype(int)
    iy = ((y0[idx] + (y1 - y0)[idx] * t) * s).astype(int)
    ok = (ix >= 0) & (ix < s) & (iy >= 0) & (iy < s)
    w = weight[idx] / (s / 256.0)  # same darkness per unit length at every size
    acc += np.bincount((iy * s + ix)[ok], weights=w[ok], minlength=s * s).astype(F32)
