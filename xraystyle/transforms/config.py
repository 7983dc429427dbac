"""Preprocessing and augmentation settings, validated on construction.

Plain dataclasses with defaults so that :func:`xraystyle.config.from_dict` can nest
:class:`PreprocessConfig` inside a run config (ranges are ``[low, high]`` lists in YAML).
All intensities are in the pipeline's [-1, 1] units (air/black -1, bone/white +1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ..config import check

Range = tuple[float, float]


def _range(value: object, key: str, lo: float, hi: float, *, open_low: bool = False) -> Range:
    """Validate an ordered ``(low, high)`` pair inside ``[lo, hi]`` (``(lo, hi]`` if open_low)."""
    check(isinstance(value, (list, tuple)) and len(value) == 2, key, f"expected [low, high], got {value!r}")
    check(all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value), key,
          f"expected two numbers, got {value!r}")
    a, b = float(value[0]), float(value[1])
    check(a <= b, key, f"low {a} is above high {b}")
    low_ok = a > lo if open_low else a >= lo
    bound = f"({lo}, {hi}]" if open_low else f"[{lo}, {hi}]"
    check(low_ok and b <= hi, key, f"[{a}, {b}] must lie in {bound}")
    return (a, b)


def _prob(value: object, key: str) -> float:
    check(isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0,
          key, f"probability must be in [0, 1], got {value!r}")
    return float(value)


@dataclass
class AugmentConfig:
    """Physics-motivated intensity augmentation (never geometric, never a flip).

    Each effect fires with its ``*_prob`` and then draws its value uniformly from its range
    (gamma log-uniformly, so 0.8..1.25 is symmetric between darkening and brightening).
    Defaults are mild: they mimic the spread between exposures and vendors, not damage.
    """

    KEY: ClassVar[str] = "augment"  # config key named in error messages

    enabled: bool = True
    # Additive offset: a dose change shifts the log (displayed) signal by a constant.
    exposure_prob: float = 0.5
    exposure_range: Range = (-0.1, 0.1)
    # Multiplicative contrast about the per-image mean of valid pixels ("mean") or about 0.
    contrast_prob: float = 0.5
    contrast_range: Range = (0.9, 1.1)
    contrast_about: Literal["mean", "zero"] = "mean"
    # Gamma on the [0, 1]-mapped image: < 1 brightens mid-tones, > 1 darkens them.
    gamma_prob: float = 0.5
    gamma_range: Range = (0.8, 1.25)
    # Quantum-like noise: std at mid-grey, larger where fewer photons reach the detector.
    noise_prob: float = 0.25
    noise_range: Range = (0.0, 0.03)
    # Gaussian blur sigma in pixels of the final (resized) image.
    blur_prob: float = 0.25
    blur_range: Range = (0.0, 1.0)

    def __post_init__(self) -> None:
        check(isinstance(self.enabled, bool), f"{self.KEY}.enabled", f"expected true/false, got {self.enabled!r}")
        for name in ("exposure", "contrast", "gamma", "noise", "blur"):
            key = f"{self.KEY}.{name}_prob"
            setattr(self, f"{name}_prob", _prob(getattr(self, f"{name}_prob"), key))
        self.exposure_range = _range(self.exposure_range, f"{self.KEY}.exposure_range", -1.0, 1.0)
        self.contrast_range = _range(self.contrast_range, f"{self.KEY}.contrast_range", 0.0, 10.0, open_low=True)
        self.gamma_range = _range(self.gamma_range, f"{self.KEY}.gamma_range", 0.0, 10.0, open_low=True)
        self.noise_range = _range(self.noise_range, f"{self.KEY}.noise_range", 0.0, 1.0)
        self.blur_range = _range(self.blur_range, f"{self.KEY}.blur_range", 0.0, 20.0)
        check(self.contrast_about in ("mean", "zero"), f"{self.KEY}.contrast_about",
              f"must be 'mean' or 'zero', got {self.contrast_about!r}")


@dataclass
class PreprocessConfig:
    """Robust window, square resize-pad and (training only) augmentation."""

    size: int = 256
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        check(isinstance(self.size, int) and not isinstance(self.size, bool) and 16 <= self.size <= 2048,
              "size", f"must be an integer in 16..2048, got {self.size!r}")
        lo, hi = self.lower_percentile, self.upper_percentile
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
        check(numeric and 0.0 <= lo < hi <= 100.0, "lower_percentile/upper_percentile",
              f"need 0 <= lower < upper <= 100, got {lo!r} and {hi!r}")
        self.lower_percentile, self.upper_percentile = float(lo), float(hi)
        check(isinstance(self.augment, AugmentConfig), "augment",
              f"expected an AugmentConfig, got {type(self.augment).__name__}")
