import math

import pytest
import torch

from xraystyle.config import from_dict
from xraystyle.errors import ConfigError
from xraystyle.models.config import ModelConfig
from xraystyle.models.networks import build_networks


def tiny(**kw):
    base = dict(img_size=32, base_width=16, max_width=64, style_dim=16, latent_dim=8, mapping_width=32,
                mapping_shared_layers=2, mapping_head_layers=1)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("size,channels", [(32, 1), (64, 1), (64, 3)])
def test_shapes(size, channels):
    cfg = tiny(img_size=size, in_channels=channels)
    nets = build_networks(cfg, num_conditions=3)
    x = torch.randn(2, channels, size, size)
    y = torch.tensor([0, 2])
    s = nets["F"](torch.randn(2, cfg.latent_dim), y)
    assert s.shape == (2, cfg.style_dim)
    assert nets["G"](x, s).shape == x.shape
    assert nets["E"](x, y).shape == (2, cfg.style_dim)
    assert nets["D"](x, y).shape == (2,)


def test_paper_parameter_counts():
    # Section 1 of the reference: at 256 px RGB, G 43.5M (face setting = 5 down blocks), F 2.4M,
    # E 20.9M, D 20.9M (2 domains).
    cfg = ModelConfig(img_size=256, in_channels=3)
    nets = build_networks(cfg, num_conditions=2)
    count = {k: sum(p.numel() for p in v.parameters()) / 1e6 for k, v in nets.items()}
    assert count["F"] == pytest.approx(2.4, abs=0.1)
    assert count["E"] == pytest.approx(20.9, abs=0.1)
    assert count["D"] == pytest.approx(20.9, abs=0.1)
    from xraystyle.models.networks import Generator

    g5 = Generator(ModelConfig(img_size=256, in_channels=3, n_down=5))
    assert sum(p.numel() for p in g5.parameters()) / 1e6 == pytest.approx(43.5, abs=0.1)


def test_domain_heads_are_selected_by_y():
    cfg = tiny()
    nets = build_networks(cfg, num_conditions=2)
    z = torch.randn(1, cfg.latent_dim).expand(2, -1)
    s = nets["F"](z, torch.tensor([0, 1]))
    assert not torch.allclose(s[0], s[1])  # same z, different domain -> different style
    x = torch.randn(1, 1, 32, 32).expand(2, -1, -1, -1)
    d = nets["D"](x, torch.tensor([0, 1]))
    assert d[0] != d[1]


def test_he_init_statistics():
    cfg = tiny(img_size=64)
    nets = build_networks(cfg, num_conditions=2)
    conv = nets["G"].conv_in
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.3)
    assert torch.all(conv.bias == 0)


def test_style_changes_output_and_gradients_flow():
    cfg = tiny()
    nets = build_networks(cfg, 2)
    x = torch.randn(2, 1, 32, 32)
    s1, s2 = torch.randn(2, cfg.style_dim), torch.randn(2, cfg.style_dim)
    assert not torch.allclose(nets["G"](x, s1), nets["G"](x, s2))
    out = nets["G"](x, s1).sum()
    out.backward()
    assert all(p.grad is not None for p in nets["G"].parameters())


@pytest.mark.parametrize("bad,match", [
    ({"img_size": 48}, "img_size"),
    ({"img_size": 2048}, "img_size"),
    ({"in_channels": 2}, "in_channels"),
    ({"base_width": 128, "max_width": 64}, "max_width"),
    ({"n_down": 9}, "n_down"),
    ({"conditioning": "nope"}, "conditioning"),
])
def test_impossible_configs_rejected(bad, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(ModelConfig, {"img_size": 32, "base_width": 16, "max_width": 64, **bad})


def test_unknown_key_rejected():
    with pytest.raises(ConfigError, match="model.widht"):
        from_dict(ModelConfig, {"widht": 3}, "model.")


def test_residual_generator_starts_as_identity_and_learns_an_edit():
    """model.generator_output: residual: x_fake = x + decoder output, zero at initialisation; the
    zero layer still receives a gradient, so G leaves the identity as soon as it trains."""
    torch.manual_seed(0)
    cfg = tiny(generator_output="residual")
    nets = build_networks(cfg, num_conditions=2)
    x = torch.randn(2, 1, 32, 32)
    s = nets["F"](torch.randn(2, cfg.latent_dim), torch.tensor([0, 1]))
    assert torch.equal(nets["G"](x, s), x)
    nets["G"](x, s).pow(2).mean().backward()
    assert nets["G"].conv_out[-1].weight.grad.abs().sum() > 0
    # the paper's G renders the picture itself: not the identity, not zero
    paper = build_networks(tiny(), num_conditions=2)["G"](x, s)
    assert not torch.allclose(paper, x) and paper.abs().sum() > 0


def test_generator_output_is_validated():
    with pytest.raises(ConfigError, match="model.generator_output"):
        tiny(generator_output="masked")


def test_d_base_width_widens_the_discriminator_only():
    """model.d_base_width: D's trunk starts (and doubles) from its own width; G and E keep
    base_width, so a wider D is one knob."""
    narrow, wide = build_networks(tiny(), 2), build_networks(tiny(d_base_width=32), 2)
    assert wide["D"].trunk[0].out_channels == 32 and narrow["D"].trunk[0].out_channels == 16
    for name in ("G", "E", "F"):
        assert [p.shape for p in wide[name].parameters()] == [p.shape for p in narrow[name].parameters()]
    x, y = torch.randn(2, 1, 32, 32), torch.tensor([0, 1])
    assert wide["D"](x, y).shape == (2,)
    with pytest.raises(ConfigError, match="model.d_base_width"):
        tiny(d_base_width=2)
    with pytest.raises(ConfigError, match="max_width"):
        tiny(d_base_width=128)


@pytest.mark.parametrize("conditioning,y", [("single", torch.tensor([0, 1])),
                                            ("set-additive", torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))])
def test_d_patch_scores_the_image_and_every_cell(conditioning, y):
    """model.d_patch: D's output is [image logit, one logit per cell of the g x g feature map];
    column 0 is the patch-free D's logit, and cell (i, j) is the conditioned head applied to the
    map's features at (i, j), row-major."""
    cfg = tiny(d_patch=8, conditioning=conditioning)
    D = build_networks(cfg, 2)["D"].eval()
    x = torch.randn(2, 1, 32, 32)
    out = D(x, y)
    assert out.shape == (2, 1 + 8 * 8)
    assert torch.allclose(out[:, 0], D.head(D.trunk(x), y).squeeze(1), atol=1e-6)
    fmap = x
    for layer in list(D.trunk)[:1 + D.patch_blocks]:  # input conv, then the down-sampling blocks
        fmap = layer(fmap)
    assert fmap.shape[-2:] == (8, 8)
    i, j = 5, 2
    cell = D.patch.head(torch.nn.functional.leaky_relu(fmap[:, :, i, j], 0.2), y).squeeze(1)
    assert torch.allclose(out[:, 1 + i * 8 + j], cell, atol=1e-6)
    # the classifier and the style projection still act on the image logit's features
    both = build_networks(cfg, 2, d_classify=True, d_style=True)["D"]
    logit, cls = both(x, y, classify=True, s=torch.randn(2, cfg.style_dim))
    assert logit.shape == (2, 65) and cls.shape == (2, 2)
    assert build_networks(tiny(), 2)["D"].patch is None


@pytest.mark.parametrize("bad", [2, 6, 32, 64])
def test_d_patch_is_validated(bad):
    with pytest.raises(ConfigError, match="model.d_patch"):
        tiny(d_patch=bad)
