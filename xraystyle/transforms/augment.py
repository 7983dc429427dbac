"""MONAI array and dictionary transforms over the physics math in ``physics.py``.

Array forms take numpy or torch images shaped (H, W), (C, H, W) or a batch (B, C, H, W) on any
device, and return the type they were given; one call draws one parameter set (MONAI
semantics), so a batch gets the same value throughout; for per-sample values on a batch use
:func:`~xraystyle.transforms.physics.sample_physics` + ``apply_physics``.

Dictionary forms also record what they drew in ``data[record_key]`` (default ``"physics"``):
always all five names of :data:`~xraystyle.transforms.physics.PARAM_NAMES`, identity values
for effects that did not fire, as Python floats so DataLoader collation gives (B,) tensors.
Every random transform owns its ``numpy.random.RandomState`` (``set_random_state``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import MAX_SEED

from ._types import Array, as_mask, as_tensor, like
from .config import AugmentConfig
from .physics import IDENTITY, PARAM_NAMES, apply_physics

Range = tuple[float, float]


def _apply(img: Array, params: dict[str, Any], valid_mask: Array | None = None,
           contrast_about: str = "mean", noise: RandQuantumNoise | None = None) -> Array:
    """Run :func:`apply_physics` on one image or batch of any supported layout and type."""
    x = as_tensor(img)
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"expected (H, W), (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    x4 = x.reshape((1,) * (4 - x.ndim) + tuple(x.shape))
    mask = as_mask(valid_mask, tuple(x.shape), x.device)
    if mask is not None:
        mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
    if noise is not None and params.get("noise", 0.0) != 0.0:
        params = {**params, "noise_field": noise.draw_field(tuple(x4.shape), x4)}
    y = apply_physics(x4, params, mask, contrast_about=contrast_about)
    return like(y.reshape(x.shape), img)


class _RandPhysics(RandomizableTransform):
    """One physics effect: fires with ``prob``, then draws its value from ``value_range``."""

    name: ClassVar[str]
    log_uniform: ClassVar[bool] = False

    def __init__(self, prob: float, value_range: Range):
        RandomizableTransform.__init__(self, prob)
        lo, hi = (float(v) for v in value_range)
        if not lo <= hi:
            raise ValueError(f"{self.name} range must be ordered, got {value_range}")
        self.value_range = (lo, hi)
        self.value = IDENTITY[self.name]

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            self.value = IDENTITY[self.name]
            return
        lo, hi = self.value_range
        if self.log_uniform:
            self.value = float(math.exp(self.R.uniform(math.log(lo), math.log(hi))))
        else:
            self.value = float(self.R.uniform(lo, hi))

    def params(self) -> dict[str, float]:
        """The value drawn last (identity if the effect did not fire)."""
        return {self.name: self.value}

    def __call__(self, img: Array, valid_mask: Array | None = None, randomize: bool = True) -> Array:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return self._apply(img, valid_mask)

    def _apply(self, img: Array, valid_mask: Array | None) -> Array:
        return _apply(img, self.params(), valid_mask)


class RandExposure(_RandPhysics):
    """Additive offset in [-1, 1] units (a dose change in the log domain)."""

    name = "exposure"

    def __init__(self, prob: float = 0.5, offset_range: Range = (-0.1, 0.1)):
        super().__init__(prob, offset_range)


class RandContrast(_RandPhysics):
    """Multiplicative contrast about the valid-pixel mean (``about="mean"``) or about 0."""

    name = "contrast"

    def __init__(self, prob: float = 0.5, factor_range: Range = (0.9, 1.1),
                 about: Literal["mean", "zero"] = "mean"):
        if factor_range[0] <= 0:
            raise ValueError(f"contrast factors must be > 0, got {factor_range}")
        super().__init__(prob, factor_range)
        self.about = about

    def _apply(self, img: Array, valid_mask: Array | None) -> Array:
        return _apply(img, self.params(), valid_mask, contrast_about=self.about)


class RandGamma(_RandPhysics):
    """Gamma on the [0, 1]-mapped image (log-uniform draw): < 1 brightens mid-tones."""

    name = "gamma"
    log_uniform = True

    def __init__(self, prob: float = 0.5, gamma_range: Range = (0.8, 1.25)):
        if gamma_range[0] <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma_range}")
        super().__init__(prob, gamma_range)


class RandQuantumNoise(_RandPhysics):
    """Signal-dependent Gaussian noise; ``std_range`` is the std at mid-grey."""

    name = "noise"

    def __init__(self, prob: float = 0.25, std_range: Range = (0.0, 0.03)):
        if std_range[0] < 0:
            raise ValueError(f"noise std must be >= 0, got {std_range}")
        super().__init__(prob, std_range)

    def draw_field(self, shape: tuple[int, ...], like_tensor: torch.Tensor) -> torch.Tensor:
        """Standard-normal field from this transform's own random state."""
        field = self.R.standard_normal(shape).astype(np.float32)
        return torch.from_numpy(field).to(device=like_tensor.device, dtype=like_tensor.dtype)

    def _apply(self, img: Array, valid_mask: Array | None) -> Array:
        return _apply(img, self.params(), valid_mask, noise=self)


class RandBlur(_RandPhysics):
    """Gaussian blur, sigma in pixels."""

    name = "blur"

    def __init__(self, prob: float = 0.25, sigma_range: Range = (0.0, 1.0)):
        if sigma_range[0] < 0:
            raise ValueError(f"blur sigma must be >= 0, got {sigma_range}")
        super().__init__(prob, sigma_range)


def _record(d: dict, record_key: str | None, values: Mapping[str, float]) -> None:
    if record_key:
        d[record_key] = {**IDENTITY, **d.get(record_key, {}), **{k: float(v) for k, v in values.items()}}


class _RandPhysicsd(RandomizableTransform, MapTransform):
    """Dictionary wrapper: one draw per call shared by all ``keys``, recorded in the dict.

    The random state lives in the wrapped array transform, so ``set_random_state`` on the
    wrapper (or on an enclosing Compose) seeds exactly one stream.
    """

    def __init__(self, keys: Hashable | Sequence[Hashable], transform: _RandPhysics,
                 mask_key: str | None, record_key: str | None, allow_missing_keys: bool):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, transform.prob)
        self.transform = transform
        self.mask_key, self.record_key = mask_key, record_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        self.transform.randomize()
        self._do_transform = self.transform._do_transform

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        self.randomize()
        mask = d.get(self.mask_key) if self.mask_key else None
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], mask, randomize=False)
        _record(d, self.record_key, self.transform.params())
        return d


class RandExposured(_RandPhysicsd):
    def __init__(self, keys: Hashable | Sequence[Hashable] = "image", prob: float = 0.5,
                 offset_range: Range = (-0.1, 0.1), mask_key: str | None = "valid_mask",
                 record_key: str | None = "physics", allow_missing_keys: bool = False):
        super().__init__(keys, RandExposure(prob, offset_range), mask_key, record_key, allow_missing_keys)


class RandContrastd(_RandPhysicsd):
    def __init__(self, keys: Hashable | Sequence[Hashable] = "image", prob: float = 0.5,
                 factor_range: Range = (0.9, 1.1), about: Literal["mean", "zero"] = "mean",
                 mask_key: str | None = "valid_mask", record_key: str | None = "physics",
                 allow_missing_keys: bool = False):
        super().__init__(keys, RandContrast(prob, factor_range, about), mask_key, record_key, allow_missing_keys)


class RandGammad(_RandPhysicsd):
    def __init__(self, keys: Hashable | Sequence[Hashable] = "image", prob: float = 0.5,
                 gamma_range: Range = (0.8, 1.25), mask_key: str | None = "valid_mask",
                 record_key: str | None = "physics", allow_missing_keys: bool = False):
        super().__init__(keys, RandGamma(prob, gamma_range), mask_key, record_key, allow_missing_keys)


class RandQuantumNoised(_RandPhysicsd):
    def __init__(self, keys: Hashable | Sequence[Hashable] = "image", prob: float = 0.25,
                 std_range: Range = (0.0, 0.03), mask_key: str | None = "valid_mask",
                 record_key: str | None = "physics", allow_missing_keys: bool = False):
        super().__init__(keys, RandQuantumNoise(prob, std_range), mask_key, record_key, allow_missing_keys)


class RandBlurd(_RandPhysicsd):
    def __init__(self, keys: Hashable | Sequence[Hashable] = "image", prob: float = 0.25,
                 sigma_range: Range = (0.0, 1.0), mask_key: str | None = "valid_mask",
                 record_key: str | None = "physics", allow_missing_keys: bool = False):
        super().__init__(keys, RandBlur(prob, sigma_range), mask_key, record_key, allow_missing_keys)


class RandXrayPhysicsd(RandomizableTransform, MapTransform):
    """All five effects from one :class:`AugmentConfig`, applied in one pass of ``apply_physics``.

    Same math and order as the batched GPU path. Each effect has its own random stream,
    seeded from this transform's ``set_random_state``. Records all five values every call
    (all identity when ``cfg.enabled`` is False, in which case the image is untouched).
    """

    def __init__(self, keys: Hashable | Sequence[Hashable] = "image", cfg: AugmentConfig | None = None,
                 mask_key: str | None = "valid_mask", record_key: str | None = "physics",
                 allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.cfg = cfg if cfg is not None else AugmentConfig()
        c = self.cfg
        self.effects: dict[str, _RandPhysics] = {
            "exposure": RandExposure(c.exposure_prob, c.exposure_range),
            "contrast": RandContrast(c.contrast_prob, c.contrast_range, c.contrast_about),
            "gamma": RandGamma(c.gamma_prob, c.gamma_range),
            "noise": RandQuantumNoise(c.noise_prob, c.noise_range),
            "blur": RandBlur(c.blur_prob, c.blur_range),
        }
        self.mask_key, self.record_key = mask_key, record_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        for effect in self.effects.values():  # distinct child seeds: effects must not fire in lockstep
            effect.set_random_state(seed=int(self.R.randint(MAX_SEED, dtype="uint32")))
        return self

    def randomize(self, data: Any = None) -> None:
        for effect in self.effects.values():
            effect.randomize()
        self._do_transform = any(e._do_transform for e in self.effects.values())

    def params(self) -> dict[str, float]:
        return {name: self.effects[name].value for name in PARAM_NAMES}

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if not self.cfg.enabled:
            _record(d, self.record_key, IDENTITY)
            return d
        self.randomize()
        params = self.params()
        if self._do_transform:
            mask = d.get(self.mask_key) if self.mask_key else None
            for key in self.key_iterator(d):
                d[key] = _apply(d[key], dict(params), mask, self.cfg.contrast_about, self.effects["noise"])
        _record(d, self.record_key, params)
        return d
