"""Each finding changes the image where its mask says, the way it should; nothing else moves."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from xraystyle.errors import ConfigError
from xraystyle.phantom.generator import FINDINGS, render_phantom

SIZE = 64


def _pair(seed: int, finding: dict, size: int = SIZE):
    """The same patient without and with one finding, neutral physics."""
    return render_phantom(seed, size, {}, None), render_phantom(seed, size, finding, None)


def _texture(img: np.ndarray) -> np.ndarray:
    return np.abs(ndi.laplace(img.astype(np.float64)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masks_nonempty_exactly_when_present(seed):
    rng = np.random.default_rng(seed)
    for _ in range(3):
        present = {f: bool(rng.random() < 0.5) for f in FINDINGS}
        s = render_phantom(seed, SIZE, present, None)
        for f in FINDINGS:
            assert s.labels[f] == int(present[f])
            assert s.masks[f].any() == present[f], f


@pytest.mark.parametrize("side", ["right", "left", "both"])
def test_effusion_raises_intensity_at_the_lung_base(side):
    clean, fx = _pair(4, {"effusion": {"side": side, "volume": 0.35}})
    mask = fx.masks["effusion"]
    diff = fx.image - clean.image
    assert diff[mask].mean() > 0.08
    # dependent: the fluid sits in the lower part of the lungs
    lungs = clean.anatomy_masks["lung_right"] | clean.anatomy_masks["lung_left"]
    rows = np.nonzero(lungs)[0]
    assert np.nonzero(mask)[0].mean() > rows.min() + 0.6 * (rows.max() - rows.min())
    cols = np.nonzero(mask)[1]
    centre = SIZE / 2
    if side == "right":  # patient's right = image left; the other hemithorax is untouched
        assert cols.max() < centre and np.abs(diff[:, int(centre) + 4 :]).max() == 0
    elif side == "left":
        assert cols.min() > centre and np.abs(diff[:, : int(centre) - 4]).max() == 0
    else:
        assert cols.min() < centre < cols.max()
    assert fx.truth["effusion_side"] == side and fx.truth["effusion_volume"] == 0.35


def test_effusion_volume_is_graded():
    small = render_phantom(5, SIZE, {"effusion": {"side": "left", "volume": 0.15}}, None)
    large = render_phantom(5, SIZE, {"effusion": {"side": "left", "volume": 0.45}}, None)
    assert large.masks["effusion"].sum() > 1.5 * small.masks["effusion"].sum()


@pytest.mark.parametrize("side", ["right", "left"])
def test_pneumothorax_is_lucent_without_markings(side):
    clean, fx = _pair(6, {"pneumothorax": {"side": side, "rim": 0.25}}, size=128)
    mask = fx.masks["pneumothorax"]
    diff = fx.image - clean.image
    assert diff[mask].mean() < -0.05
    inner = ndi.binary_erosion(mask)
    # no lung markings in the pleural air, where there were some before
    assert clean.lung_markings[inner].mean() > 0.005
    assert fx.lung_markings[mask].max() == 0
    assert _texture(fx.image)[inner].mean() < _texture(clean.image)[inner].mean()
    # apical / lateral: the air sits in the upper lung and hugs the lateral wall
    lung = clean.anatomy_masks[f"lung_{side}"]
    rows = np.nonzero(lung)[0]
    assert np.nonzero(mask)[0].mean() < rows.mean()
    cols = np.nonzero(mask)[1]
    assert (cols.mean() < np.nonzero(lung)[1].mean()) == (side == "right")
    # a visible pleural line just inside the air: brighter than the air next to it
    line = ndi.binary_dilation(mask) & lung & ~mask
    assert fx.image[line].mean() > fx.image[inner].mean() + 0.03
    assert 0 < fx.truth["pneumothorax_size"] < 1


def test_nodule_raises_intensity_locally():
    clean, fx = _pair(7, {"nodule": {"radius": 0.03}})
    mask = fx.masks["nodule"]
    diff = fx.image - clean.image
    assert diff[mask].mean() > 0.08
    far = ~ndi.binary_dilation(mask, iterations=2)
    assert np.abs(diff[far]).max() == 0
    ys, xs = np.nonzero(mask)
    t = fx.truth
    assert abs(xs.mean() + 0.5 - t["nodule_x"] * SIZE) < 1 and abs(ys.mean() + 0.5 - t["nodule_y"] * SIZE) < 1
    radius_px = np.sqrt(mask.sum() / np.pi)
    assert abs(radius_px - t["nodule_radius_px"]) < 1
    lung = fx.anatomy_masks[f"lung_{t['nodule_side']}"]
    assert (mask & lung).sum() >= 0.9 * mask.sum()


@pytest.mark.parametrize("size", [32, 64, 128])
def test_cardiomegaly_ctr_and_wider_heart(size):
    for seed in range(4):
        clean, fx = _pair(seed, {"cardiomegaly": True}, size=size)
        assert 0.38 <= clean.truth["ctr"] < 0.5
        assert fx.truth["ctr"] > 0.5
        cols_clean = np.nonzero(clean.anatomy_masks["heart"].any(axis=0))[0]
        cols_fx = np.nonzero(fx.masks["cardiomegaly"].any(axis=0))[0]
        assert cols_fx.size > cols_clean.size
        assert cols_fx.size == fx.truth["heart_width_px"]
        assert abs(fx.truth["ctr"] - cols_fx.size / fx.truth["thorax_width_px"]) < 1e-4


def test_fixed_ctr_is_rendered():
    s = render_phantom(3, 256, {"cardiomegaly": {"ctr": 0.62}}, None)
    assert abs(s.truth["ctr"] - 0.62) < 1.0 / s.truth["thorax_width_px"]


@pytest.mark.parametrize("seed", range(12))
def test_heart_is_on_the_image_right(seed):
    s = render_phantom(seed, SIZE, {"cardiomegaly": seed % 2 == 1}, None)
    heart = s.anatomy_masks["heart"]
    cols = np.nonzero(heart)[1] + 0.5
    mid = s.anatomy["midline"] * SIZE
    assert cols.mean() > mid
    assert (cols > mid).mean() > 0.55
    # and the right hemidiaphragm (image left) is not lower than the left one
    right, left = s.anatomy_masks["lung_right"], s.anatomy_masks["lung_left"]
    assert np.nonzero(right)[0].max() <= np.nonzero(left)[0].max() + 0.06 * SIZE


def test_toggling_a_finding_leaves_the_others_in_place():
    a = render_phantom(9, SIZE, {"nodule": True}, None)
    b = render_phantom(9, SIZE, {"nodule": True, "effusion": True, "pneumothorax": True}, None)
    assert np.array_equal(a.masks["nodule"], b.masks["nodule"])
    assert a.finding_params["nodule"] == b.finding_params["nodule"]
    assert a.anatomy == b.anatomy


def test_overrides_are_validated():
    with pytest.raises(ConfigError, match="unknown parameter"):
        render_phantom(0, SIZE, {"nodule": {"diameter": 3}}, None)
    with pytest.raises(ConfigError, match="side must be"):
        render_phantom(0, SIZE, {"pneumothorax": {"side": "both"}}, None)
    with pytest.raises(ConfigError, match="ctr must be"):
        render_phantom(0, SIZE, {"cardiomegaly": {"ctr": 0.45}}, None)
    with pytest.raises(ConfigError, match="unknown finding"):
        render_phantom(0, SIZE, {"edema": True}, None)
    with pytest.raises(ConfigError, match="size must be"):
        render_phantom(0, 16, {}, None)


def test_seed_kinds_are_reproducible():
    ss = np.random.SeedSequence(5, spawn_key=(0, 3))
    a, b = render_phantom(ss, 48, {}, None), render_phantom(ss, 48, {}, None)
    assert np.array_equal(a.image, b.image)  # reusing one SeedSequence object: same patient
    g1 = render_phantom(np.random.default_rng(1), 48, {}, None)
    g2 = render_phantom(np.random.default_rng(1), 48, {}, None)
    assert np.array_equal(g1.image, g2.image)
    assert not np.array_equal(a.image, g1.image)
    with pytest.raises(ConfigError, match="seed"):
        render_phantom(-1, 48, {}, None)
