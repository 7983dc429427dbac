"""Radiograph preprocessing as MONAI transforms: robust window, resize+pad, physics augmentation.

Every transform has an array form and a dictionary (``...d``) form; see docs/transforms.md.
"""

from .augment import (
    RandBlur,
    RandBlurd,
    RandContrast,
    RandContrastd,
    RandExposure,
    RandExposured,
    RandGamma,
    RandGammad,
    RandQuantumNoise,
    RandQuantumNoised,
    RandXrayPhysicsd,
)
from .config import AugmentConfig, PreprocessConfig
from .geometry import ResizePad, ResizePadd, resize_pad, resize_pad_geometry, undo_resize_pad
from .intensity import RobustWindow, RobustWindowd, apply_window, robust_window, to_uint16, window_limits
from .loading import LoadXrayd
from .physics import IDENTITY, PARAM_NAMES, apply_physics, gaussian_blur, identity_params, sample_physics
from .pipelines import (
    XrayCompose,
    array_pipeline,
    collate_samples,
    eval_pipeline,
    preprocess_array,
    train_pipeline,
)

__all__ = [
    "AugmentConfig", "PreprocessConfig",
    "RobustWindow", "RobustWindowd", "robust_window", "window_limits", "apply_window", "to_uint16",
    "ResizePad", "ResizePadd", "resize_pad", "resize_pad_geometry", "undo_resize_pad",
    "RandExposure", "RandExposured", "RandContrast", "RandContrastd", "RandGamma", "RandGammad",
    "RandQuantumNoise", "RandQuantumNoised", "RandBlur", "RandBlurd", "RandXrayPhysicsd",
    "IDENTITY", "PARAM_NAMES", "apply_physics", "sample_physics", "gaussian_blur", "identity_params",
    "LoadXrayd", "XrayCompose", "train_pipeline", "eval_pipeline", "array_pipeline", "preprocess_array",
    "collate_samples",
]
