"""Lung templates: real masks kept upright, bad masks rejected, cache identical, fallback works."""

from __future__ import annotations

import numpy as np
import pytest

from xraystyle.phantom import lungs as pl
from xraystyle.phantom.generator import FINDINGS, render_phantom


def _pair(size=200, right_bottom=0.8, left_bottom=0.85, gap=10):
    """Two filled ellipses as a synthetic lung mask (image-left lung = patient's right)."""
    y, x = np.mgrid[0:size, 0:size] / size
    top = 0.15
    masks = []
    for cx, bottom in ((0.5 - gap / size / 2 - 0.17, right_bottom), (0.5 + gap / size / 2 + 0.17, left_bottom)):
        cy, ry = (top + bottom) / 2, (bottom - top) / 2
        masks.append(((x - cx) / 0.16) ** 2 + ((y - cy) / ry) ** 2 <= 1)
    return masks[0] | masks[1]


def test_normalise_accepts_an_upright_pair():
    tpl = pl._normalise("synthetic", _pair())
    assert tpl is not None
    assert tpl.right.shape == tpl.left.shape == (pl.CANON, pl.CANON)
    right_cols = np.nonzero(tpl.right > 0.5)[1]
    left_cols = np.nonzero(tpl.left > 0.5)[1]
    assert right_cols.max() < left_cols.min()  # the patient's right lung is on the image left
    assert 0.5 < tpl.aspect < 1.2


@pytest.mark.parametrize(
    "mask",
    [
        _pair(right_bottom=0.9, left_bottom=0.75),  # right base clearly lower: mirrored or odd
        _pair(gap=-40),  # lungs fused: no mediastinum
        np.zeros((200, 200), bool),  # empty file (82 of the shipped masks)
        np.pad(_pair(), ((0, 0), (0, 0)))[:, 40:],  # cut by the image border
    ],
)
def test_normalise_rejects_unusable_masks(mask):
    assert pl._normalise("synthetic", mask) is None


def test_real_templates_are_upright():
    names = pl.template_names()
    if not names:
        pytest.skip("torchxrayvision lung masks not installed")
    checked = 0
    for name in names[:60]:
        tpl = pl.load_template(name)
        if tpl is None:
            continue
        checked += 1
        r_rows, l_rows = np.nonzero(tpl.right > 0.5)[0], np.nonzero(tpl.left > 0.5)[0]
        assert r_rows.max() <= l_rows.max() + 0.05 * pl.CANON + 1
        assert np.nonzero(tpl.right > 0.5)[1].mean() < np.nonzero(tpl.left > 0.5)[1].mean()
    assert checked >= 20


def test_disk_cache_gives_identical_templates(tmp_path, monkeypatch):
    names = pl.template_names()
    if not names:
        pytest.skip("torchxrayvision lung masks not installed")
    subset = tuple(names[:4])
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path))
    monkeypatch.setattr(pl, "template_names", lambda: subset)
    pl._disk_bank.cache_clear()
    try:
        fresh = {n: pl._decode(n) for n in subset}
        pl.warm_bank()
        assert len(list(tmp_path.glob("phantom_lungs_*.npz"))) == 1
        cached = pl._disk_bank()
        assert set(cached) == set(subset)
        for n in subset:
            a, b = fresh[n], cached[n]
            assert (a is None) == (b is None)
            if a is not None:
                assert np.array_equal(a.right, b.right) and np.array_equal(a.left, b.left) and a.aspect == b.aspect
    finally:
        pl._disk_bank.cache_clear()


def test_procedural_lungs_render_a_complete_phantom():
    s = render_phantom(3, 64, {f: True for f in FINDINGS}, None, lung_source="procedural")
    assert s.anatomy["lung_template"] == "procedural"
    right, left = s.anatomy_masks["lung_right"], s.anatomy_masks["lung_left"]
    assert right.sum() > 100 and left.sum() > 100
    assert np.nonzero(right)[1].max() < np.nonzero(left)[1].min()
    assert all(s.masks[f].any() for f in FINDINGS)
    again = render_phantom(3, 64, {f: True for f in FINDINGS}, None, lung_source="procedural")
    assert np.array_equal(s.image, again.image)


def test_missing_mask_zip_falls_back_to_procedural_lungs(monkeypatch, caplog):
    monkeypatch.setattr(pl, "_zip_path", lambda: None)
    for cached in (pl._open_archive, pl.template_names, pl._disk_bank):
        cached.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            s = render_phantom(5, 48, {"effusion": True}, None)
        assert s.anatomy["lung_template"] == "procedural"
        assert s.masks["effusion"].any()
        assert "procedural lung shapes" in caplog.text
    finally:
        monkeypatch.undo()
        for cached in (pl._open_archive, pl.template_names, pl._disk_bank):
            cached.cache_clear()
