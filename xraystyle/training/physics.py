"""Separating acquisition physics from findings during training (docs/physics.md).

Exposure, contrast and display gamma vary across sites and machines independently of the
finding. A StarGAN v2 left alone spends part of its style code on them: latent samples differ
in brightness rather than in the finding, because the diversity loss rewards any visible
difference and the discriminator accepts every exposure the data has. Each remedy below is a
config flag (``physics:`` in the run config) built on the same batched, differentiable
intensity transforms as the data augmentation (``transforms.physics``):

- ``d_augment``: the discriminator sees augmented real *and* fake images, drawn from the same
  distribution (DiffAugment, Zhao et al. 2020; ADA, Karras et al. 2020), so exposure
  statistics cannot separate real from fake or one domain from another;
- ``e_augment``: the style encoder extracts styles (references, cycle) from augmented images;
- ``lambda_inv``: style-encoder invariance, ``|E(aug(x), y) - E(x, y)|`` on real and fake images;
- ``lambda_eq``: generator equivariance, ``|G(aug(x), s) - aug(G(x, s))|`` for the same draw,
  applied as one fixed grey-level map (contrast about mid-grey, not about each image's mean,
  which a finding changes): a generator that edits the finding and leaves the rest commutes
  with it;
- ``sty_augment``: style reconstruction through an augmentation, ``|E(aug(G(x, s)), y) - s|``:
  a style carried by exposure is scrambled before E reads it, so it cannot be reconstructed.

- ``e_veil``: what E reads (references, the cycle's source style, the style reconstruction's
  fake) also gets a scatter veil of a random fraction up to ``e_veil`` (``transforms.physics.
  apply_veil``): scatter is not a grey-level map, so equalisation (``model.style_input``) does
  not remove it, and on the phantom it is what reaches a reference-guided output (issue #16,
  thirteenth round).

Only intensity transforms are used for D, G and the invariance terms (exposure offset, contrast,
gamma), never noise, blur or geometry: those do not commute with the anatomy. The veil is for
E's input alone, where nothing has to commute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..config import check
from ..transforms.config import AugmentConfig, Range
from ..transforms.physics import apply_physics, apply_veil, sample_physics


@dataclass
class StepAugmentConfig(AugmentConfig):
    """Intensity-only transforms drawn inside a training step (every image, every effect).

    Wider than the data augmentation's defaults: they stand for the spread between sites,
    which the networks must learn to ignore, not for mild jitter."""

    KEY: ClassVar[str] = "physics.augment"

    exposure_prob: float = 1.0
    exposure_range: Range = (-0.25, 0.25)
    contrast_prob: float = 1.0
    contrast_range: Range = (0.75, 1.33)
    gamma_prob: float = 1.0
    gamma_range: Range = (0.7, 1.43)
    noise_prob: float = 0.0
    blur_prob: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.noise_prob == 0 and self.blur_prob == 0, "physics.augment",
              "noise and blur do not commute with the anatomy: keep noise_prob and blur_prob at 0")


@dataclass
class PhysicsConfig:
    augment: StepAugmentConfig = field(default_factory=StepAugmentConfig)
    d_augment: bool = False
    e_augment: bool = False
    lambda_inv: float = 0.0
    lambda_eq: float = 0.0
    sty_augment: bool = False
    e_veil: float = 0.0  # largest scatter fraction of the veil on E's inputs (0 = none)

    def __post_init__(self) -> None:
        remedies = self.d_augment or self.e_augment or self.sty_augment or self.lambda_inv > 0 or self.lambda_eq > 0
        check(self.augment.enabled or not remedies, "physics.augment.enabled",
              "false would turn every physics remedy into a no-op; switch the remedies off instead")
        for key in ("d_augment", "e_augment", "sty_augment"):
            check(isinstance(getattr(self, key), bool), f"physics.{key}", "expected true/false")
        check(self.lambda_inv >= 0 and self.lambda_eq >= 0, "physics.lambda_inv/lambda_eq", "must be >= 0")
        check(isinstance(self.e_veil, (int, float)) and 0 <= self.e_veil < 1, "physics.e_veil",
              f"must be a scatter fraction in [0, 1), got {self.e_veil!r}")

    @property
    def active(self) -> bool:
        remedies = self.d_augment or self.e_augment or self.sty_augment or self.lambda_inv > 0 or self.lambda_eq > 0
        return (remedies and self.augment.enabled) or self.e_veil > 0

    @property
    def e_input_changed(self) -> bool:
        """Whether E's style inputs differ from the plain image (intensity augmentation or veil)."""
        return self.e_augment or self.e_veil > 0

    @property
    def sty_input_changed(self) -> bool:
        """Whether the style reconstruction's E reads something other than the plain fake."""
        return self.sty_augment or self.e_veil > 0


class PhysicsAug:
    """Intensity augmentation for one training step: fresh parameters on every call.

    Parameters are drawn for the GLOBAL batch (``world`` x local rows) from ``generator`` and
    this rank's rows taken, so a data-parallel run draws what a single process would.
    """

    def __init__(self, cfg: PhysicsConfig, generator: torch.Generator, rank: int = 0, world: int = 1):
        self.cfg, self.generator, self.rank, self.world = cfg, generator, rank, world

    def params(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        # Only the shape, dtype and device matter: a zero-stride view allocates nothing.
        template = x.new_zeros((), dtype=torch.float32).expand(self.world * b, *x.shape[1:])
        drawn = sample_physics(template, self.cfg.augment, self.generator)
        mine = slice(self.rank * b, (self.rank + 1) * b)
        return {k: v[mine] for k, v in drawn.items()}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor], pointwise: bool = False) -> torch.Tensor:
        """``pointwise``: contrast about mid-grey instead of the image's own mean, so the
        transform is one fixed monotone grey-level map for both sides of an equivariance."""
        about = "zero" if pointwise else self.cfg.augment.contrast_about
        return apply_physics(x, params, contrast_about=about)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x, self.params(x))

    # Each remedy's input: augmented when its flag is on, unchanged otherwise.
    def for_d(self, x: torch.Tensor) -> torch.Tensor:
        return self(x) if self.cfg.d_augment else x

    def veil(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` under a scatter veil of a fraction drawn per image from U[0, e_veil) (global batch)."""
        b = x.shape[0]
        u = torch.rand(self.world * b, generator=self.generator, device=self.generator.device)
        return apply_veil(x, (self.cfg.e_veil * u[self.rank * b:(self.rank + 1) * b]).to(x.device, x.dtype))

    def for_e(self, x: torch.Tensor) -> torch.Tensor:
        x = self(x) if self.cfg.e_augment else x
        return self.veil(x) if self.cfg.e_veil > 0 else x

    def for_sty(self, x: torch.Tensor) -> torch.Tensor:
        x = self(x) if self.cfg.sty_augment else x
        return self.veil(x) if self.cfg.e_veil > 0 else x
