"""Shared fixtures for the transform tests: numpy/torch parameterisation and a PNG reader stand-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import xraystyle.io as xio
from xraystyle.errors import InputError
from xraystyle.io.meta import XrayMeta


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(params=["numpy", "torch"])
def kind(request):
    """Convert a numpy array to the parameterised input type."""
    if request.param == "numpy":
        return lambda a: np.asarray(a)
    return lambda a: torch.as_tensor(np.asarray(a))


def to_np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def write_png16(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(np.asarray(array, dtype=np.uint16)).save(path)
    return path


def _png_reader(path, **kw):
    """Minimal read_xray stand-in (Pillow, 16-bit aware), with the same contract."""
    try:
        with Image.open(path) as im:
            array = np.asarray(im).astype(np.float32)
    except OSError as exc:
        raise InputError(path, f"cannot read image ({type(exc).__name__})") from None
    meta = XrayMeta(source_format="png", rows=array.shape[0], columns=array.shape[1])
    if kw.get("pad_value") is not None:  # lets tests exercise the padding mask
        meta.valid_mask = array != kw["pad_value"]
    return array, meta


@pytest.fixture
def fake_reader(monkeypatch):
    """Install the stand-in as xraystyle.io.read_xray (the real one may not exist yet)."""
    monkeypatch.setattr(xio, "read_xray", _png_reader, raising=False)
    return _png_reader


def chest_like(h: int = 48, w: int = 40, seed: int = 0) -> np.ndarray:
    """Smooth 12-bit-like image, bright (heart-like) blob on the image's LEFT: asymmetric."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = 1200 + 800 * np.exp(-((yy - 0.55) ** 2 + (xx - 0.3) ** 2) / 0.02) + 300 * yy
    return (img + rng.normal(0, 5, (h, w))).astype(np.float32)
