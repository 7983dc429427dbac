"""The four StarGAN v2 networks (Choi et al., CVPR 2020), written from the paper.

Clean-room implementation (the authors' code is CC BY-NC). Vocabulary follows the paper:
G(x, s) -> x_fake; F(z, y) -> s; E(x, y) -> s; D(x, y) -> one real/fake logit per image.
No device, DataParallel or channel-count assumptions live here: the caller moves modules,
and ``in_channels`` comes from the config.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf
from torch import nn

from .conditioning import make_head
from .config import ModelConfig
from .equalize import soft_equalize

_SQRT2 = math.sqrt(2.0)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class ResBlock(nn.Module):
    """Pre-activation residual block: [IN] -> LReLU -> conv3x3 -> [pool] -> [IN] -> LReLU -> conv3x3.

    The shortcut is a learned 1x1 conv only when the width changes; the sum is scaled by
    1/sqrt(2) to keep unit variance.
    """

    def __init__(self, c_in: int, c_out: int, normalize: bool = False, downsample: bool = False):
        super().__init__()
        self.downsample = downsample
        self.norm1 = nn.InstanceNorm2d(c_in, affine=True) if normalize else nn.Identity()
        self.norm2 = nn.InstanceNorm2d(c_in, affine=True) if normalize else nn.Identity()
        self.conv1 = nn.Conv2d(c_in, c_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.act = _act()
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        if self.downsample:
            h = nnf.avg_pool2d(h, 2)
        h = self.conv2(self.act(self.norm2(h)))
        sc = self.skip(x)
        if self.downsample:
            sc = nnf.avg_pool2d(sc, 2)
        return (h + sc) / _SQRT2


class AdaIN(nn.Module):
    """Adaptive instance norm: ``(1 + gamma(s)) * IN(x) + beta(s)``."""

    def __init__(self, style_dim: int, channels: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.affine = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(s)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class AdaINResBlock(nn.Module):
    """Decoder block: AdaIN -> LReLU -> [upsample] -> conv3x3 -> AdaIN -> LReLU -> conv3x3.

    X-rays use no high-pass (landmark) branch, so the shortcut is always active (the paper's
    ``w_hpf = 0`` setting).
    """

    def __init__(self, c_in: int, c_out: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.norm1 = AdaIN(style_dim, c_in)
        self.norm2 = AdaIN(style_dim, c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.act = _act()
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm1(x, s))
        if self.upsample:
            h = nnf.interpolate(h, scale_factor=2, mode="nearest")
            x = nnf.interpolate(x, scale_factor=2, mode="nearest")
        h = self.conv2(self.act(self.norm2(self.conv1(h), s)))
        return (h + self.skip(x)) / _SQRT2


def _widths(cfg: ModelConfig, n: int, base: int | None = None) -> list[int]:
    """Channel widths after each of ``n`` down-sampling stages from ``base`` (default the model's
    base width), doubling, capped."""
    base = cfg.width if base is None else base
    return [min(base * 2 ** (i + 1), cfg.max_width) for i in range(n)]


class Generator(nn.Module):
    """G(x, s): encoder of down-sampling IN blocks, bottleneck, AdaIN decoder. With
    ``model.generator_output: residual`` the decoder's output is added to x."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n = cfg.generator_down
        widths = [cfg.width] + _widths(cfg, n)
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.width, 3, 1, 1)
        self.encode = nn.ModuleList(
            [ResBlock(widths[i], widths[i + 1], normalize=True, downsample=True) for i in range(n)]
            + [ResBlock(widths[-1], widths[-1], normalize=True) for _ in range(2)]
        )
        self.decode = nn.ModuleList(
            [AdaINResBlock(widths[-1], widths[-1], cfg.style_dim) for _ in range(2)]
            + [AdaINResBlock(widths[i + 1], widths[i], cfg.style_dim, upsample=True)
               for i in reversed(range(n))]
        )
        self.conv_out = nn.Sequential(
            nn.InstanceNorm2d(cfg.width, affine=True), _act(), nn.Conv2d(cfg.width, cfg.in_channels, 1)
        )
        self.residual = cfg.generator_output == "residual"

    def reset_output(self) -> None:
        """A residual G starts as the identity (its last layer zero), after he_init."""
        if self.residual:
            nn.init.zeros_(self.conv_out[-1].weight)
            nn.init.zeros_(self.conv_out[-1].bias)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.encode:
            h = block(h)
        for block in self.decode:
            h = block(h, s)
        out = self.conv_out(h)
        return x + out if self.residual else out


class MappingNetwork(nn.Module):
    """F(z, y): shared MLP on the latent code, then a conditioned head producing the style code."""

    def __init__(self, cfg: ModelConfig, num_conditions: int):
        super().__init__()
        self.latent_dim = cfg.latent_dim
        layers: list[nn.Module] = []
        dim = cfg.latent_dim
        for _ in range(cfg.mapping_shared_layers):
            layers += [nn.Linear(dim, cfg.mapping_width), nn.ReLU()]
            dim = cfg.mapping_width
        self.shared = nn.Sequential(*layers)
        self.head = make_head(cfg.conditioning, num_conditions, dim, cfg.style_dim,
                              hidden=cfg.mapping_head_layers, width=cfg.mapping_width)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head(self.shared(z), y)


class _Trunk(nn.Sequential):
    """Shared trunk of E and D: conv3x3, down-sampling blocks to 4x4, LReLU, conv4x4, LReLU."""

    def __init__(self, cfg: ModelConfig, base: int | None = None):
        n = cfg.critic_down
        base = cfg.width if base is None else base
        widths = [base] + _widths(cfg, n, base)
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, base, 3, 1, 1)]
        layers += [ResBlock(widths[i], widths[i + 1], downsample=True) for i in range(n)]
        layers += [_act(), nn.Conv2d(widths[-1], widths[-1], 4, 1, 0), _act(), nn.Flatten()]
        super().__init__(*layers)
        self.out_features = widths[-1]
        self.widths = widths  # widths[i]: channels of the map after i down-sampling blocks

    def forward_with_map(self, x: torch.Tensor, blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, map)``: the trunk's output and its feature map after ``blocks``
        down-sampling blocks (img_size / 2**blocks on a side), from one pass."""
        fmap = x
        for i, layer in enumerate(self):
            x = layer(x)
            if i == blocks:  # layer 0 is the input conv, layer i the i-th block
                fmap = x
        return x, fmap


class _PatchHead(nn.Module):
    """One real/fake logit per cell of a feature map, conditioned like D's image head (the same
    head kind applied at every cell, a 1x1 conv per domain)."""

    def __init__(self, cfg: ModelConfig, num_conditions: int, channels: int):
        super().__init__()
        self.act = _act()
        self.head = make_head(cfg.conditioning, num_conditions, channels, 1)

    def forward(self, fmap: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = fmap.shape
        cells = self.act(fmap).permute(0, 2, 3, 1).reshape(b * h * w, c)
        return self.head(cells, y.repeat_interleave(h * w, dim=0)).view(b, h * w)


class StyleEncoder(nn.Module):
    """E(x, y): the style code of image ``x`` as seen by domain ``y``'s head."""

    def __init__(self, cfg: ModelConfig, num_conditions: int):
        super().__init__()
        self.equalize = cfg.style_input == "equalized"
        self.trunk = _Trunk(cfg)
        self.head = make_head(cfg.conditioning, num_conditions, self.trunk.out_features, cfg.style_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.equalize:
            x = soft_equalize(x)
        return self.head(self.trunk(x), y)


class Discriminator(nn.Module):
    """D(x, y): multi-task discriminator, one real/fake logit per image for its domain ``y``.

    With ``classify`` it also has a domain classifier on the same trunk (StarGAN v1's auxiliary
    classifier, Choi et al. 2018): one logit per domain, or per finding for set labels.
    ``D(x, y, classify=True)`` returns ``(real/fake logit, class logits)`` from one trunk pass.
    With ``style_dim`` > 0 it also judges an image together with a style code: ``D(x, y, s=s)``
    adds the projection ``<W h, s> / sqrt(style_dim)`` of the trunk's features onto the style
    (the projection discriminator, Miyato & Koyama 2018, conditioned on the style instead of a
    class), so it can score whether an image shows what its style says.
    With ``model.d_patch`` the real/fake output is ``[B, 1 + cells]``: column 0 the image logit
    (with the style projection, if any), then one logit per cell of the patch head
    (``losses.per_image`` weighs them)."""

    def __init__(self, cfg: ModelConfig, num_conditions: int, classify: bool = False, style_dim: int = 0):
        super().__init__()
        self.trunk = _Trunk(cfg, cfg.d_width)
        self.head = make_head(cfg.conditioning, num_conditions, self.trunk.out_features, 1)
        self.cls = nn.Linear(self.trunk.out_features, num_conditions) if classify else None
        self.style_proj = nn.Linear(self.trunk.out_features, style_dim, bias=False) if style_dim else None
        self.patch_blocks = int(math.log2(cfg.img_size // cfg.d_patch)) if cfg.d_patch else 0
        self.patch = _PatchHead(cfg, num_conditions, self.trunk.widths[self.patch_blocks]) if cfg.d_patch else None

    def forward(self, x: torch.Tensor, y: torch.Tensor, classify: bool = False, s: torch.Tensor | None = None):
        if self.patch is None:
            h = self.trunk(x)
        else:
            h, fmap = self.trunk.forward_with_map(x, self.patch_blocks)
        out = self.head(h, y).squeeze(1)
        if s is not None:
            if self.style_proj is None:
                raise RuntimeError("this discriminator was built without a style projection")
            out = out + (self.style_proj(h) * s).sum(1) / math.sqrt(s.shape[1])
        if self.patch is not None:
            out = torch.cat([out[:, None], self.patch(fmap, y)], dim=1)
        if not classify:
            return out
        if self.cls is None:
            raise RuntimeError("this discriminator was built without a domain classifier")
        return out, self.cls(h)


def he_init(module: nn.Module) -> None:
    """He (Kaiming normal, fan_in) weights and zero biases for conv and linear layers."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_networks(cfg: ModelConfig, num_conditions: int, d_classify: bool = False,
                   d_style: bool = False) -> nn.ModuleDict:
    """G, F, E, D as a ModuleDict keyed by the paper's letters: "G", "F", "E", "D".
    ``d_classify``: D carries the domain classifier (``loss.lambda_cls > 0``); ``d_style``: D
    carries the style projection (``loss.lambda_style_match > 0``)."""
    nets = nn.ModuleDict({
        "G": Generator(cfg),
        "F": MappingNetwork(cfg, num_conditions),
        "E": StyleEncoder(cfg, num_conditions),
        "D": Discriminator(cfg, num_conditions, classify=d_classify, style_dim=cfg.style_dim if d_style else 0),
    })
    he_init(nets)
    nets["G"].reset_output()
    return nets
