"""Lung shape templates for the phantom: real masks from torchxrayvision, procedural fallback.

torchxrayvision ships 517 binary lung masks traced on real chest radiographs
(``semantic_masks_v7labs_lungs.zip``). Each usable mask becomes a :class:`LungTemplate`: the two
lungs cropped to their joint bounding box and resampled to a canonical square, image-left lung
(the patient's right) and image-right lung (the patient's left) kept apart so that findings can
pick a side. Masks are never mirrored: the heart notch must stay on the image right.

Decoding a 2000 px PNG costs 10-20 ms, so templates are decoded lazily and cached per process;
big cohorts first call :func:`warm_bank`, which decodes all of them once and keeps the result in
``$XRAYSTYLE_CACHE`` (default ``~/.cache/xraystyle``) for every later process.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ..paths import cache_dir

log = logging.getLogger(__name__)

CANON = 128  # canonical template side in pixels
_ZIP_NAME = "semantic_masks_v7labs_lungs.zip"
_BANK_VERSION = 1  # bump when _normalise changes: invalidates on-disk caches


@dataclass(frozen=True)
class LungTemplate:
    """Two lungs in a canonical CANON x CANON frame spanning their joint bounding box.

    ``right``/``left`` are the patient's right lung (image left) and left lung (image right),
    float32 soft masks in [0, 1] (quantised to 1/255 so that cached and freshly decoded
    templates are identical). ``depth`` is a smooth 0..1 map of lung thickness (thin at the
    borders, thickest centrally), ``aspect`` the joint box height / width in the source image.
    """

    name: str
    right: np.ndarray
    left: np.ndarray
    aspect: float

    @functools.cached_property
    def depth(self) -> np.ndarray:
        both = self.right + self.left
        blurred = ndi.gaussian_filter(both, sigma=CANON * 0.06)
        return (blurred / max(float(blurred.max()), 1e-6)).astype(np.float32)


def _zip_path() -> Path | None:
    try:
        import torchxrayvision
    except ImportError:  # the fallback keeps the phantom usable without the optional shapes
        return None
    path = Path(torchxrayvision.__file__).parent / "data" / _ZIP_NAME
    return path if path.is_file() else None


def _archive() -> zipfile.ZipFile | None:
    """The zip, opened once per process (reading its directory costs ~5 ms). Keyed by process
    id: a forked worker must not share the parent's file offset."""
    return _open_archive(os.getpid())


@functools.lru_cache(maxsize=1)
def _open_archive(pid: int) -> zipfile.ZipFile | None:
    path = _zip_path()
    return zipfile.ZipFile(path) if path is not None else None


@functools.lru_cache(maxsize=1)
def template_names() -> tuple[str, ...]:
    """Sorted member names of the lung mask zip (empty when it is not installed)."""
    archive = _archive()
    if archive is None:
        log.warning("torchxrayvision lung masks not found: the phantom uses procedural lung shapes")
        return ()
    return tuple(sorted(n for n in archive.namelist() if not n.endswith("/")))


def load_template(name: str) -> LungTemplate | None:
    """One normalised template; None when the mask is not a usable PA lung pair."""
    cached = _disk_bank()
    if name in cached:
        return cached[name]
    return _decode(name)


@functools.lru_cache(maxsize=None)
def _decode(name: str) -> LungTemplate | None:
    archive = _archive()
    if archive is None:
        return None
    with Image.open(io.BytesIO(archive.read(name))) as im:
        im = im.convert("L")
        factor = max(1, max(im.size) // 256)
        if factor > 1:
            im = im.reduce(factor)  # box reduction: ~4x cheaper than resizing a 2000 px mask
        mask = np.asarray(im) >= 128  # annotation marks in the masks are mid-grey
    return _normalise(name, mask)


def _cache_file() -> Path | None:
    """Where the decoded bank is kept between runs: keyed by the zip's size and mtime."""
    path = _zip_path()
    if path is None:
        return None
    st = path.stat()
    key = hashlib.sha1(f"{st.st_size}-{st.st_mtime_ns}-{CANON}-{_BANK_VERSION}".encode()).hexdigest()[:12]
    return cache_dir() / f"phantom_lungs_{key}.npz"


@functools.lru_cache(maxsize=1)
def _disk_bank() -> dict[str, LungTemplate | None]:
    """Templates from the on-disk cache written by :func:`warm_bank` (empty when absent)."""
    path = _cache_file()
    if path is None or not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            names, valid = data["names"].tolist(), data["valid"]
            right, left, aspect = data["right"], data["left"], data["aspect"]
    except (OSError, ValueError, KeyError) as exc:
        log.debug("ignoring unreadable lung template cache %s: %s", path, exc)
        return {}
    bank: dict[str, LungTemplate | None] = {}
    j = 0
    for name, ok in zip(names, valid):
        if ok:
            bank[name] = LungTemplate(name, _dequant(right[j]), _dequant(left[j]), float(aspect[j]))
            j += 1
        else:
            bank[name] = None
    return bank


def warm_bank() -> None:
    """Decode every template once and keep the result on disk (~5-10 s once per machine).

    Big cohorts call this so that worker processes and later runs load the whole bank in
    milliseconds instead of decoding a 2000 px PNG for every new template they meet.
    """
    names = template_names()
    if not names or set(names) <= set(_disk_bank()):
        return
    templates = [load_template(n) for n in names]
    path = _cache_file()
    good = [t for t in templates if t is not None]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                names=np.array(names),
                valid=np.array([t is not None for t in templates]),
                right=np.stack([_quant(t.right) for t in good]),
                left=np.stack([_quant(t.left) for t in good]),
                aspect=np.array([t.aspect for t in good], dtype=np.float64),
            )
        os.replace(tmp, path)  # atomic: concurrent writers never leave a half-written cache
    except OSError as exc:
        log.debug("cannot write lung template cache %s: %s", path, exc)
        return
    _disk_bank.cache_clear()


def _quant(soft: np.ndarray) -> np.ndarray:
    return np.round(soft * 255).astype(np.uint8)


def _dequant(q: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) / np.float32(255)


def _normalise(name: str, mask: np.ndarray) -> LungTemplate | None:
    """Split a binary mask into its two lungs and check it looks like an upright PA lung pair.

    The source masks include empty files, crops that cut the lungs at the image border and
    annotation specks; only clean two-lung masks whose right base (image left) is not clearly
    lower than the left one are kept (that also rejects mirrored masks). Most masks were traced
    without a cardiac notch: the phantom's own heart carves it.
    """
    labels, count = ndi.label(mask)
    if count < 2:
        return None
    areas = ndi.sum_labels(mask, labels, index=np.arange(1, count + 1))
    order = np.argsort(areas)[::-1]
    a1, a2 = areas[order[0]], areas[order[1]]
    if a2 < 0.55 * a1 or (a1 + a2) < 0.97 * mask.sum():
        return None
    boxes = ndi.find_objects(labels)
    first, second = int(order[0]) + 1, int(order[1]) + 1
    b1, b2 = boxes[first - 1], boxes[second - 1]
    if (b1[1].start + b1[1].stop) > (b2[1].start + b2[1].stop):
        first, second, b1, b2 = second, first, b2, b1
    right = labels == first  # image left = patient's right lung
    left = labels == second
    top, bottom = min(b1[0].start, b2[0].start), max(b1[0].stop, b2[0].stop)
    x0, x1 = b1[1].start, b2[1].stop
    h, w = bottom - top, x1 - x0
    rows, cols = mask.shape
    margin = max(2, rows // 128)
    if top < margin or x0 < margin or bottom > rows - margin or x1 > cols - margin:
        return None  # lungs cut by the image border
    if not 0.6 <= h / w <= 1.1:
        return None
    if (b1[0].stop - b1[0].start) < 0.75 * h or (b2[0].stop - b2[0].start) < 0.75 * h:
        return None
    if b2[1].start - b1[1].stop < 0.02 * w:
        return None  # lungs touching: no mediastinum
    if (b1[0].stop - b2[0].stop) > 0.05 * h:
        return None  # right lung base clearly lower than the left
    if not 0.65 <= areas[first - 1] / areas[second - 1] <= 1.35:
        return None
    crop = (slice(top, bottom), slice(x0, x1))
    return LungTemplate(name, _to_canon(right[crop]), _to_canon(left[crop]), float(h / w))


def _to_canon(mask: np.ndarray) -> np.ndarray:
    im = Image.fromarray(mask.astype(np.float32), mode="F")
    soft = np.asarray(im.resize((CANON, CANON), Image.BILINEAR), dtype=np.float32).clip(0, 1)
    holes = ndi.binary_fill_holes(soft > 0.5) & (soft <= 0.5)  # annotation gaps inside a lung
    return _dequant(_quant(np.where(holes, np.float32(1), soft)))


def procedural_template(rng: np.random.Generator) -> LungTemplate:
    """A lung pair drawn from a few shape parameters (used when the zip is missing).

    Each lung outline: convex lateral border, rounded apex, straight medial border, and a
    hemidiaphragm dome ending in a sharp lateral costophrenic angle. The patient's left lung
    (image right) has the lower base and the cardiac notch on its medial border.
    """
    from skimage.draw import polygon  # rasterising an outline is what skimage is for

    gap = rng.uniform(0.1, 0.16)
    masks = []
    for side in ("right", "left"):
        base = 1.0 - rng.uniform(0.03, 0.08) if side == "right" else 1.0
        dome = rng.uniform(0.1, 0.16)
        apex = rng.uniform(0.0, 0.04)
        m = 0.5 - gap / 2  # medial border, in the lung's own frame (0 = lateral wall)
        notch = rng.uniform(0.06, 0.12) if side == "left" else 0.0
        t = np.linspace(0, 1, 40)
        # lateral border, from the CP angle upwards, the chest narrowing towards the apex
        y_lat = base - t * (base - 0.3)
        x_lat = 0.01 + rng.uniform(0.08, 0.14) * t**1.6
        # apex: half ellipse from the lateral border over to the medial border
        theta = np.pi + t * np.pi
        cx, ax = (x_lat[-1] + m) / 2, (m - x_lat[-1]) / 2
        x_ap, y_ap = cx + ax * np.cos(theta), 0.3 + (0.3 - apex) * np.sin(theta)
        # medial border down to the cardiophrenic angle, pushed out by the heart on the left
        y_med = 0.3 + t * (base - dome * 0.3 - 0.3)
        x_med = m - notch * np.sin(np.pi / 2 * np.clip((y_med - 0.45) / 0.4, 0, 1))
        # dome from the medial end back to the lateral CP angle
        x_dome = x_med[-1] * (1 - t)
        y_dome = base - dome * np.sin(np.pi * (0.05 + 0.9 * x_dome / max(x_med[-1], 1e-3)))
        xs = np.concatenate([x_lat, x_ap, x_med, x_dome])
        ys = np.concatenate([y_lat, y_ap, y_med, y_dome])
        if side == "left":
            xs = 1 - xs  # the left lung's frame runs from the image right edge inwards
        rr, cc = polygon(ys * (CANON - 1), xs * (CANON - 1), (CANON, CANON))
        mask = np.zeros((CANON, CANON), np.float32)
        mask[rr, cc] = 1
        masks.append(_dequant(_quant(ndi.gaussian_filter(mask, 0.7))))
    return LungTemplate("procedural", masks[0], masks[1], float(rng.uniform(0.72, 0.92)))


def draw_template(rng: np.random.Generator, source: str = "auto") -> LungTemplate:
    """Draw a lung template: a real mask from the zip (``auto``/``real``) or ``procedural``.

    Always consumes the same number of random draws so that later anatomy draws do not depend
    on which template was picked: candidates are drawn up front and the first usable one wins.
    """
    candidates = rng.integers(0, 1 << 30, size=16)
    fallback_rng = np.random.default_rng(int(rng.integers(0, 1 << 62)))
    names = template_names() if source != "procedural" else ()
    for c in candidates if names else ():
        tpl = load_template(names[int(c) % len(names)])
        if tpl is not None:
            return tpl
    return procedural_template(fallback_rng)
