import logging

import numpy as np
import pytest
import torch

from xraystyle.transforms import RobustWindow, RobustWindowd, robust_window, to_uint16, window_limits

from .conftest import to_np


def _ramp(h=40, w=50, seed=0):
    return np.random.default_rng(seed).permutation(np.arange(h * w, dtype=np.float32)).reshape(h, w) * 3.0 + 100


def test_window_maps_chosen_percentiles_to_minus_one_and_plus_one(kind):
    a = _ramp()
    out = RobustWindow(lower=10, upper=90)(kind(a[None]))
    assert type(out) is type(kind(a)) and out.shape == (1, 40, 50) and out.dtype in (np.float32, torch.float32)
    lo, hi = np.percentile(a, [10, 90])
    expected = np.clip(2 * (a - lo) / (hi - lo) - 1, -1, 1)
    np.testing.assert_allclose(to_np(out)[0], expected, atol=1e-5)
    assert to_np(out)[0][a == a.min()].item() == -1 and to_np(out)[0][a == a.max()].item() == 1


def test_window_ignores_padding_pixels(kind):
    a = _ramp()
    padded = a.copy()
    padded[:, :12] = 65535.0  # DICOM PixelPaddingValue-like block that would dominate the top percentile
    mask = np.ones_like(a, dtype=bool)
    mask[:, :12] = False
    out, limits = robust_window(kind(padded), kind(mask), lower=1, upper=99)
    assert limits == pytest.approx(tuple(np.percentile(a[:, 12:], [1, 99])))
    out = to_np(out)
    assert (out[:, :12] == -1).all()
    assert out[:, 12:].max() == 1 and out[:, 12:].min() == -1


@pytest.mark.parametrize("value", [0.0, 1234.5, -7.0])
def test_constant_image_is_finite_all_minus_one(kind, value, caplog):
    a = np.full((1, 20, 30), value, dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="xraystyle.transforms.intensity"):
        out, limits = robust_window(kind(a))
    assert limits is None and np.isfinite(to_np(out)).all() and (to_np(out) == -1).all()
    assert "no contrast" in caplog.text


def test_all_padding_and_non_finite_pixels(kind):
    a = _ramp()
    assert window_limits(kind(a), kind(np.zeros_like(a, dtype=bool))) is None
    b = a.copy()
    b[0, :5] = np.nan
    b[1, :5] = np.inf
    out, limits = robust_window(kind(b), lower=0, upper=100)
    assert np.isfinite(to_np(out)).all() and (to_np(out)[:2, :5] == -1).all()
    assert limits == (float(np.nanmin(np.where(np.isinf(b), np.nan, b))), float(a.max()))


def test_coinciding_percentiles_fall_back_to_min_max(kind):
    a = np.zeros((50, 50), dtype=np.float32)
    a[10, 10:14] = 500.0  # a small marker: 0.16% of pixels, above the 99.5th percentile
    out, limits = robust_window(kind(a))
    assert limits == (0.0, 500.0)
    assert to_np(out)[10, 10] == 1 and to_np(out)[0, 0] == -1


def test_large_image_subsample_matches_exact_percentiles():
    a = np.random.default_rng(1).gamma(2.0, 300.0, size=(1100, 1000)).astype(np.float32)
    lo, hi = window_limits(a)
    exact = np.percentile(a, [0.5, 99.5])
    span = exact[1] - exact[0]
    assert abs(lo - exact[0]) < 0.01 * span and abs(hi - exact[1]) < 0.01 * span


def test_integer_input_gives_float32():
    out = RobustWindow()(np.arange(100, dtype=np.uint16).reshape(10, 10))
    assert out.dtype == np.float32 and out.min() == -1 and out.max() == 1


def test_dict_form_uses_mask_from_dict_and_records_window(kind):
    a = _ramp()[None]
    mask = np.ones_like(a, dtype=bool)
    mask[..., -3:] = False
    d = RobustWindowd("image", lower=5, upper=95)({"image": kind(a), "valid_mask": kind(mask), "other": 1})
    assert d["other"] == 1 and (to_np(d["image"])[..., -3:] == -1).all()
    assert (d["window"]["low"], d["window"]["high"]) == pytest.approx(tuple(np.percentile(a[mask], [5, 95])))
    flat = RobustWindowd("image")({"image": kind(np.ones((1, 4, 4), np.float32))})
    assert np.isnan(flat["window"]["low"]) and (to_np(flat["image"]) == -1).all()


def test_invalid_percentiles_rejected():
    with pytest.raises(ValueError):
        RobustWindow(lower=50, upper=50)


def test_to_uint16_maps_unit_range_linearly(kind):
    x = kind(np.array([[-1.0, 0.0, 1.0, -2.0, 2.0, 0.5]], dtype=np.float32))
    assert to_uint16(x).tolist() == [[0, 32768, 65535, 0, 65535, 49151]]
