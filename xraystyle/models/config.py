"""Network hyper-parameters (StarGAN v2, section 1 of docs/architecture.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import check
from .conditioning import KINDS


@dataclass
class ModelConfig:
    img_size: int = 256
    in_channels: int = 1  # radiographs are single-channel; 3 only for RGB experiments
    base_width: int | None = None  # None: the paper's rule 2**14 // img_size
    max_width: int = 512
    style_dim: int = 64
    latent_dim: int = 16
    mapping_width: int = 512
    mapping_shared_layers: int = 4
    mapping_head_layers: int = 3
    n_down: int | None = None  # generator down-sampling blocks; None: log2(img_size) - 4
    conditioning: str = "single"  # "single" (domain index) | "set-additive" | "set-film" (finding sets)
    # "sampled": every target has diverse styles (the paper). "fixed": the normal target (the empty
    # finding set) gets the one deterministic style F(0, y) (docs/physics.md); runs without a
    # normal domain are unaffected.
    normal_style: str = "sampled"
    # What E reads: "image" (the paper) or "equalized" (models/equalize.py: a soft rank transform,
    # so that no exposure / contrast / gamma change of the reference can become its style).
    style_input: str = "image"
    # What G outputs: "image" (the paper: the decoder renders the whole picture) or "residual"
    # (x_fake = x + G's decoder output, which starts at zero: G edits the source instead of
    # re-rendering it, so anatomy it leaves alone stays sharp and D can only judge the edit).
    generator_output: str = "image"
    # D's first width (None: base_width): a wider discriminator alone, G and E unchanged.
    d_base_width: int | None = None
    # D's patch head (PatchGAN, Isola et al. 2017): besides its one logit per image, D scores each
    # cell of its feature map at this grid size (e.g. 8: 8 x 8 cells) with the same domain
    # conditioning, and the adversarial loss weighs the image logit and the mean cell half each,
    # so that a remnant of a finding in one region is judged where it is. On the phantom the cells
    # settle at a constant and removal is unchanged (issue #16, eighth round). 0 = as published.
    d_patch: int = 0

    def __post_init__(self):
        check(64 <= self.img_size <= 1024 or self.img_size == 32, "model.img_size",
              f"must be a power of two from 32 to 1024, got {self.img_size}")
        check(self.img_size & (self.img_size - 1) == 0, "model.img_size",
              f"must be a power of two, got {self.img_size}")
        check(self.in_channels in (1, 3), "model.in_channels", "must be 1 or 3")
        check(self.base_width is None or self.base_width >= 4, "model.base_width", "must be >= 4")
        check(self.d_base_width is None or self.d_base_width >= 4, "model.d_base_width", "must be >= 4")
        check(self.max_width >= max(self.width, self.d_width), "model.max_width",
              f"must be >= base widths {self.width} (G, E) and {self.d_width} (D)")
        check(self.style_dim >= 1 and self.latent_dim >= 1, "model.style_dim/latent_dim", "must be >= 1")
        check(self.mapping_width >= 1, "model.mapping_width", "must be >= 1")
        check(self.mapping_shared_layers >= 1 and self.mapping_head_layers >= 0,
              "model.mapping_*_layers", "shared >= 1, head >= 0")
        limit = int(math.log2(self.img_size)) - 2
        check(self.n_down is None or 1 <= self.n_down <= limit, "model.n_down",
              f"must be between 1 and {limit} for {self.img_size} px")
        check(self.conditioning in KINDS, "model.conditioning", f"must be one of {', '.join(KINDS)}")
        check(self.normal_style in ("sampled", "fixed"), "model.normal_style", "must be sampled or fixed")
        check(self.style_input in ("image", "equalized"), "model.style_input", "must be image or equalized")
        check(self.generator_output in ("image", "residual"), "model.generator_output",
              "must be image or residual")
        check(self.d_patch == 0 or (self.d_patch & (self.d_patch - 1) == 0 and 4 <= self.d_patch <= self.img_size // 2),
              "model.d_patch", f"must be 0 or a power of two from 4 to {self.img_size // 2} (img_size / 2), "
              f"got {self.d_patch}")

    @property
    def width(self) -> int:
        return self.base_width if self.base_width is not None else 2**14 // self.img_size

    @property
    def d_width(self) -> int:
        return self.d_base_width if self.d_base_width is not None else self.width

    @property
    def generator_down(self) -> int:
        return self.n_down if self.n_down is not None else max(1, int(math.log2(self.img_size)) - 4)

    @property
    def critic_down(self) -> int:
        """Down-sampling blocks of the style encoder / discriminator trunk (to 4x4)."""
        return int(math.log2(self.img_size)) - 2
