"""Physics-motivated intensity augmentation as pure, batched, differentiable torch functions.

One implementation serves both the per-image MONAI transforms (``augment.py``) and the
discriminator-side augmentation inside a training step on GPU: :func:`sample_physics` draws
per-sample parameters from an :class:`AugmentConfig` with a ``torch.Generator``, and
:func:`apply_physics` applies them. Nothing here is geometric: a chest radiograph is never
flipped (heart side and situs are anatomy, not nuisance).

Order of effects, following the imaging chain in the displayed (log) domain:

1. blur      system blur (focal spot, scatter, detector MTF): Gaussian, sigma in pixels
2. exposure  dose change: additive offset, since log(N0 * T) = log N0 + log T
3. noise     quantum noise: Gaussian with std ``noise * exp(QUANTUM_SPAN * (u - 0.5) / 2)``
             where ``u`` in [0, 1] is the brightness; brighter = more attenuation = fewer
             photons, and the log signal's variance is ~ 1 / photons
4. contrast  display contrast: ``m + c * (x - m)`` about the valid-pixel mean ``m`` (or 0)
5. gamma     display gamma on the [0, 1]-mapped image, mapped back to [-1, 1]

The result is clamped to [-1, 1]; with a valid mask, padding pixels are reset to -1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F

from .config import AugmentConfig

PARAM_NAMES = ("exposure", "contrast", "gamma", "noise", "blur")
# Parameter values that leave an image unchanged: what is recorded when an effect did not fire.
IDENTITY: dict[str, float] = {"exposure": 0.0, "contrast": 1.0, "gamma": 1.0, "noise": 0.0, "blur": 0.0}
# log of the photon-count ratio between the darkest and brightest displayed pixel (~20x): the
# noise std grows by exp(QUANTUM_SPAN / 2) ~ 4.5x from black to white.
QUANTUM_SPAN = 3.0
_GAMMA_FLOOR = 1e-6  # below it gamma is linear: bounded gradient, value error < 2 * 1e-6**g


def identity_params() -> dict[str, float]:
    """A fresh copy of :data:`IDENTITY`."""
    return dict(IDENTITY)


def apply_physics(x: torch.Tensor, params: Mapping[str, torch.Tensor | float],
                  valid_mask: torch.Tensor | None = None,
                  contrast_about: Literal["mean", "zero"] = "mean") -> torch.Tensor:
    """Apply per-sample physics parameters to a batch ``x`` of shape (B, C, H, W) in [-1, 1].

    ``params`` maps names in :data:`PARAM_NAMES` to (B,) tensors (or scalars, broadcast);
    absent names are the identity. A non-zero ``noise`` needs ``params["noise_field"]``, a
    standard-normal tensor shaped like ``x``. ``valid_mask`` (bool, broadcastable to ``x``)
    restricts the contrast mean to real pixels and resets padding to -1 afterwards.
    Differentiable in ``x`` and in the parameters; ``x`` is never modified in place.
    """
    if x.ndim != 4:
        raise ValueError(f"apply_physics expects (B, C, H, W), got shape {tuple(x.shape)}")
    if contrast_about not in ("mean", "zero"):
        raise ValueError(f"contrast_about must be 'mean' or 'zero', got {contrast_about!r}")
    b = x.shape[0]
    valid = None if valid_mask is None else valid_mask.to(device=x.device, dtype=torch.bool)

    def per_sample(name: str) -> torch.Tensor | None:
        v = params.get(name)
        if v is None:
            return None
        v = torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1)
        if v.numel() == 1:
            v = v.expand(b)
        elif v.numel() != b:
            raise ValueError(f"params[{name!r}] has {v.numel()} values for a batch of {b}")
        return v.view(b, 1, 1, 1)

    y = x
    blur = per_sample("blur")
    if blur is not None:
        y = gaussian_blur(y, blur.view(b))
    exposure = per_sample("exposure")
    if exposure is not None:
        y = y + exposure
    noise = per_sample("noise")
    if noise is not None:
        field = params.get("noise_field")
        if field is not None:
            u = ((y + 1.0) * 0.5).clamp(0.0, 1.0)
            y = y + noise * torch.exp((0.5 * QUANTUM_SPAN) * (u - 0.5)) * field.to(y)
        elif bool((noise != 0).any()):
            raise ValueError("non-zero noise needs params['noise_field'] (standard normal, shaped like x)")
    contrast = per_sample("contrast")
    if contrast is not None:
        centre = _mean(y, valid) if contrast_about == "mean" else 0.0
        # y*c + m*(1-c), not m + c*(y-m): exact identity at c == 1.
        y = y * contrast + centre * (1.0 - contrast)
    gamma = per_sample("gamma")
    if gamma is not None:
        u = ((y + 1.0) * 0.5).clamp(0.0, 1.0)
        # Linear toe below _GAMMA_FLOOR (continuous there): d(u**g)/du is infinite at u = 0
        # for g < 1, which would put inf/NaN into gradients from black pixels.
        toe = u * torch.pow(torch.as_tensor(_GAMMA_FLOOR, dtype=u.dtype, device=u.device), gamma - 1.0)
        curve = torch.where(u >= _GAMMA_FLOOR, u.clamp_min(_GAMMA_FLOOR).pow(gamma), toe)
        y = torch.where(gamma == 1.0, y, curve * 2.0 - 1.0)
    y = y.clamp(-1.0, 1.0)
    if valid is not None:
        y = torch.where(valid, y, torch.full_like(y, -1.0))
    return y


VEIL_CELLS = 8  # the scatter veil's detail: the image side over 8 (a veil spans ~10 % of the side)
VEIL_ATTENUATION = 3.0  # displayed [0, 1] -> line attenuation, as the phantom's K (phantom/physics.py)


def apply_veil(x: torch.Tensor, scatter: torch.Tensor) -> torch.Tensor:
    """Scatter: a fraction ``scatter`` (B,) of the transmitted signal spread into a low-frequency
    veil (mean kept), for a batch ``x`` (B, C, H, W) in [-1, 1] read as a log image (bright =
    attenuating): transmission T = exp(-k u) with u the [0, 1]-mapped image, T <- (1 - s) T + s V
    with V the box-pooled (``VEIL_CELLS`` cells a side) and bilinearly enlarged T, back to the log
    image. Not monotone in the grey level, so equalisation does not remove it; it does not commute
    with the anatomy, so it is for what E reads only (``physics.e_veil``). ``scatter`` 0 is an
    exact identity; differentiable in ``x``."""
    b, _, h, w = x.shape
    s = torch.as_tensor(scatter, dtype=x.dtype, device=x.device).reshape(-1).expand(b).view(b, 1, 1, 1)
    t = torch.exp(-VEIL_ATTENUATION * ((x + 1.0) * 0.5).clamp(0.0, 1.0))
    cell = (max(1, h // VEIL_CELLS), max(1, w // VEIL_CELLS))
    veil = F.interpolate(F.avg_pool2d(t, cell, ceil_mode=True), size=(h, w), mode="bilinear", align_corners=False)
    u = -torch.log(((1.0 - s) * t + s * veil).clamp_min(1e-6)) / VEIL_ATTENUATION
    return torch.where(s > 0, (2.0 * u - 1.0).clamp(-1.0, 1.0), x)


def _mean(y: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Per-sample mean over valid pixels, shape (B, 1, 1, 1)."""
    if valid is None:
        return y.mean(dim=(1, 2, 3), keepdim=True)
    w = valid.to(y.dtype).expand_as(y)
    return (y * w).sum(dim=(1, 2, 3), keepdim=True) / w.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1.0)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with one sigma (pixels) per sample, 0 = none.

    Hand-written because MONAI's GaussianFilter / GaussianSmooth take one sigma per spatial
    axis for the whole batch, and per-sample sigmas are needed for batched augmentation.
    Borders replicate the edge pixel so the frame does not darken.
    """
    b, c, h, w = x.shape
    r = math.ceil(3.0 * float(sigma.max()))  # kernel support must be a Python int
    if r == 0:
        return x
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).view(b, 1)
    k = torch.exp(-0.5 * (t / s.clamp_min(1e-3)) ** 2)
    # Each sample's kernel ends at its own 3 sigma, so its result does not depend on the batch.
    k = torch.where(t.abs() <= torch.ceil(3.0 * s), k, torch.zeros_like(k))
    k = k / k.sum(dim=1, keepdim=True)
    k = torch.where(s > 0, k, (t == 0).to(x.dtype).expand(b, -1))  # sigma 0: a delta, exact identity
    k = k.repeat_interleave(c, dim=0)  # one kernel per (sample, channel) for a grouped conv
    z = x.reshape(1, b * c, h, w)
    z = F.conv2d(F.pad(z, (r, r, 0, 0), mode="replicate"), k.view(b * c, 1, 1, -1), groups=b * c)
    z = F.conv2d(F.pad(z, (0, 0, r, r), mode="replicate"), k.view(b * c, 1, -1, 1), groups=b * c)
    return z.reshape(b, c, h, w)


def sample_physics(batch: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-sample parameters for ``batch`` (B, C, H, W), drawn from ``cfg`` with ``generator``.

    Returns (B,) tensors for every name in :data:`PARAM_NAMES` (identity where an effect did
    not fire, all identity when ``cfg.enabled`` is False) on ``batch``'s device and dtype, plus
    ``"noise_field"`` when noise can fire. Draws happen on ``generator.device``: pass a
    generator on the batch's device to avoid host-device copies.
    """
    b = batch.shape[0]
    dev = generator.device
    out = {name: torch.full((b,), IDENTITY[name], dtype=batch.dtype, device=batch.device) for name in PARAM_NAMES}
    if not cfg.enabled:
        return out

    def draw(prob: float, lo: float, hi: float, identity: float, log: bool = False) -> torch.Tensor:
        fire = torch.rand(b, generator=generator, device=dev) < prob
        u = torch.rand(b, generator=generator, device=dev, dtype=torch.float64)
        if log:
            v = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
        else:
            v = lo + (hi - lo) * u
        v = torch.where(fire, v, torch.full_like(v, identity))
        return v.to(device=batch.device, dtype=batch.dtype)

    out["exposure"] = draw(cfg.exposure_prob, *cfg.exposure_range, 0.0)
    out["contrast"] = draw(cfg.contrast_prob, *cfg.contrast_range, 1.0)
    out["gamma"] = draw(cfg.gamma_prob, *cfg.gamma_range, 1.0, log=True)
    out["noise"] = draw(cfg.noise_prob, *cfg.noise_range, 0.0)
    out["blur"] = draw(cfg.blur_prob, *cfg.blur_range, 0.0)
    if cfg.noise_prob > 0 and cfg.noise_range[1] > 0:
        field = torch.randn(tuple(batch.shape), generator=generator, device=dev, dtype=torch.float32)
        out["noise_field"] = field.to(device=batch.device, dtype=batch.dtype)
    return out
