"""models/equalize.py and ``model.style_input: equalized``: E reads an image no increasing
grey-level map can change, and still passes gradients to the generator."""

from __future__ import annotations

import pytest
import torch

from xraystyle.models.config import ModelConfig
from xraystyle.models.equalize import soft_equalize
from xraystyle.models.networks import build_networks


def _chest(n=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    lungs = ((xx.abs() - 0.45) ** 2 / 0.08 + yy**2 / 0.5 < 1).float()
    base = 0.6 - 1.1 * lungs + 0.3 * yy
    return 0.6 * (base + 0.05 * torch.randn(n, 1, size, size, generator=g)).clamp(-1, 1)  # room to re-expose


MONOTONE = {
    "exposure": lambda v: v + 0.3,  # unclipped: a clipped map ties pixels, and ties do change ranks
    "contrast": lambda v: 0.6 * v - 0.1,
    "gamma": lambda v: 2 * ((v + 1) / 2) ** 1.4 - 1,
    "tanh": lambda v: torch.tanh(2 * v),
}


@pytest.mark.parametrize("name", MONOTONE)
def test_increasing_grey_level_maps_do_not_change_the_equalised_image(name):
    x = _chest()
    e = soft_equalize(x)
    moved = soft_equalize(MONOTONE[name](x))
    assert (moved - e).abs().mean() < 0.01, name
    assert (MONOTONE[name](x) - x).abs().mean() > 0.05  # the map itself does change the image


def test_equalised_image_keeps_the_anatomy_and_its_range():
    x = _chest()
    e = soft_equalize(x)
    assert e.shape == x.shape and e.min() >= -1 and e.max() <= 1
    assert abs(float(e.mean())) < 0.05  # ranks are uniform
    # the order of pixel values is kept: equalisation is increasing in the pixel value
    flat_x, flat_e = x[0].flatten(), e[0].flatten()
    order = flat_x.argsort()
    assert (flat_e[order].diff() >= -1e-5).all()
    # a different image gives a different equalised image (the anatomy is still there)
    assert (soft_equalize(_chest(seed=1).flip(-2)) - e).abs().mean() > 0.1


def test_gradients_reach_the_pixels():
    x = _chest().requires_grad_(True)
    (soft_equalize(x) * torch.linspace(-1, 1, 32)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_style_encoder_reads_the_equalised_image_when_configured():
    torch.manual_seed(0)
    cfg = ModelConfig(img_size=32, base_width=16, max_width=32, style_dim=8, mapping_width=16, style_input="equalized")
    nets = build_networks(cfg, 2)
    x, y = _chest(), torch.tensor([1, 1, 1])
    s = nets["E"](x, y)
    assert torch.allclose(nets["E"](MONOTONE["gamma"](x), y), s, atol=0.05 * s.abs().mean().item())
    plain = build_networks(ModelConfig(img_size=32, base_width=16, max_width=32, style_dim=8, mapping_width=16), 2)
    plain["E"].load_state_dict(nets["E"].state_dict())  # same weights, no equalisation: exposure moves the code
    assert not torch.allclose(plain["E"](MONOTONE["gamma"](x), y), plain["E"](x, y), atol=0.05 * s.abs().mean().item())


def test_style_input_is_validated():
    from xraystyle.errors import ConfigError

    with pytest.raises(ConfigError, match="model.style_input"):
        ModelConfig(img_size=32, style_input="rank")
