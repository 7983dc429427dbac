import numpy as np
import pytest

from xraystyle.transforms import ResizePad, ResizePadd, resize_pad, resize_pad_geometry, undo_resize_pad

from .conftest import to_np


def _smooth(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return (0.6 * np.sin(yy / h * 3.0) * np.cos(xx / w * 2.0)).astype(np.float32)[None]


@pytest.mark.parametrize("shape, resized, pad", [
    ((60, 40), (32, 21), (0, 0, 5, 6)),   # portrait: pad left/right
    ((40, 60), (21, 32), (5, 6, 0, 0)),   # landscape: pad top/bottom
    ((16, 16), (32, 32), (0, 0, 0, 0)),   # square, upsampled
])
def test_resize_pad_keeps_aspect_and_pads_with_minus_one(kind, shape, resized, pad):
    img = kind(np.full((1, *shape), 0.25, dtype=np.float32))
    out, geo = resize_pad(img, 32)
    assert type(out) is type(img) and tuple(out.shape) == (1, 32, 32)
    assert geo["original_shape"] == shape and geo["resized_shape"] == resized and geo["pad"] == pad
    assert abs(resized[0] / resized[1] - shape[0] / shape[1]) < 0.05
    o = to_np(out)[0]
    top, bottom, left, right = pad
    inside = np.zeros((32, 32), dtype=bool)
    inside[top:32 - bottom, left:32 - right] = True
    assert (o[~inside] == -1).all()
    np.testing.assert_allclose(o[inside], 0.25, atol=1e-6)


def test_downsampling_is_anti_aliased():
    stripes = np.tile(np.array([-1.0, 1.0], dtype=np.float32), (64, 32))[None]  # 1-px columns
    out, _ = resize_pad(stripes, 16)
    # Without a low-pass filter, 4x decimation of a Nyquist pattern keeps +-1 values.
    assert np.abs(out).max() < 0.1


def test_undo_round_trip_on_non_square_image(kind):
    img = _smooth(90, 60)
    out, geo = resize_pad(kind(img), 48)
    back = to_np(undo_resize_pad(out, geo))
    assert back.shape == img.shape
    assert np.abs(back - img).max() < 0.03
    up, geo_up = resize_pad(kind(_smooth(20, 12)), 64)  # upsampled then back down
    assert np.abs(to_np(undo_resize_pad(up, geo_up)) - _smooth(20, 12)).max() < 0.03


def test_mask_resizes_and_pads_false(kind):
    mask = np.ones((1, 60, 40), dtype=bool)
    mask[..., :10] = False  # padding strip on the left quarter
    out, geo = resize_pad(kind(mask), 32, mask=True)
    m = to_np(out)[0]
    assert m.dtype == bool and geo["pad"] == (0, 0, 5, 6)
    assert not m[:, :5].any() and not m[:, -6:].any()   # canvas padding
    assert not m[:, 5:9].any() and m[:, 12:26].all()    # original padding strip stays invalid


def test_dict_form_records_geometry_and_resizes_mask(kind):
    d = {"image": kind(_smooth(50, 30)), "valid_mask": kind(np.ones((1, 50, 30), dtype=bool)), "keep": "x"}
    out = ResizePadd("image", size=20)(d)
    assert tuple(out["image"].shape) == (1, 20, 20) and tuple(out["valid_mask"].shape) == (1, 20, 20)
    assert out["geometry"] == resize_pad_geometry((50, 30), 20) and out["keep"] == "x"
    assert to_np(out["valid_mask"]).sum() == 20 * out["geometry"]["resized_shape"][1]
    assert -1 <= to_np(out["image"]).min() and to_np(out["image"]).max() <= 1


def test_array_transform_and_tiny_image():
    assert ResizePad(16)(np.zeros((1, 1, 300), np.float32)).shape == (1, 16, 16)
    with pytest.raises(ValueError):
        resize_pad_geometry((0, 5), 16)
