"""The per-image pipelines: load -> robust window -> resize+pad -> [train] physics -> tensor."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, EnsureTyped
from torch.utils.data import default_collate

from ..errors import XrayStyleError
from ._types import Array, as_tensor
from .augment import RandXrayPhysicsd
from .config import PreprocessConfig
from .geometry import ResizePadd
from .intensity import RobustWindowd
from .loading import LoadXrayd


class XrayCompose(Compose):
    """``Compose`` that lets the toolkit's typed errors through.

    MONAI wraps any exception raised inside a transform in ``RuntimeError("applying transform
    ...")``; callers (the CLI, the dataset's unreadable-image accounting) need the original
    ``InputError`` with its one-line message, so it is unwrapped here.
    """

    def __call__(self, input_: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(input_, *args, **kwargs)
        except RuntimeError as exc:
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, XrayStyleError):
                cause = cause.__cause__
            if cause is None:
                raise
            raise cause from None


def _array_steps(cfg: PreprocessConfig, train: bool) -> list[Callable]:
    steps: list[Callable] = [
        RobustWindowd("image", mask_key="valid_mask", lower=cfg.lower_percentile, upper=cfg.upper_percentile),
        ResizePadd("image", size=cfg.size, mask_key="valid_mask"),
    ]
    if train:
        steps.append(RandXrayPhysicsd("image", cfg.augment, mask_key="valid_mask"))
    steps += [
        EnsureTyped("image", data_type="tensor", dtype=torch.float32, track_meta=False),
        EnsureTyped("valid_mask", data_type="tensor", track_meta=False, allow_missing_keys=True),
    ]
    return steps


def train_pipeline(cfg: PreprocessConfig | None = None, reader_kwargs: Mapping[str, Any] | None = None) -> Compose:
    """Sample dict ``{"path": ...}`` -> ``image`` (1, size, size) float32 tensor in [-1, 1],
    ``valid_mask``, ``meta``, ``window``, ``geometry`` and ``physics`` (the drawn parameters)."""
    cfg = cfg if cfg is not None else PreprocessConfig()
    return XrayCompose([LoadXrayd(reader_kwargs=reader_kwargs), *_array_steps(cfg, train=True)])


def eval_pipeline(cfg: PreprocessConfig | None = None, reader_kwargs: Mapping[str, Any] | None = None) -> Compose:
    """As :func:`train_pipeline` without augmentation (no ``physics`` entry): deterministic."""
    cfg = cfg if cfg is not None else PreprocessConfig()
    return XrayCompose([LoadXrayd(reader_kwargs=reader_kwargs), *_array_steps(cfg, train=False)])


def array_pipeline(cfg: PreprocessConfig | None = None, train: bool = False) -> Compose:
    """The pipeline after loading, for dicts already holding ``image`` (1, H, W) and
    optionally ``valid_mask`` (1, H, W) bool."""
    cfg = cfg if cfg is not None else PreprocessConfig()
    return XrayCompose(_array_steps(cfg, train))


def preprocess_array(array: Array, valid_mask: Array | None = None, cfg: PreprocessConfig | None = None, *,
                     train: bool = False, seed: int | None = None) -> dict[str, Any]:
    """Run the pipeline on an already loaded (H, W) or (1, H, W) image (phantom, synthesis).

    Returns the sample dict (``image``, ``valid_mask``, ``window``, ``geometry`` and, with
    ``train=True``, ``physics``). ``seed`` makes the augmentation reproducible.
    """
    x = as_tensor(array)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"expected an (H, W) or (1, H, W) image, got shape {tuple(as_tensor(array).shape)}")
    if valid_mask is None:
        mask = torch.ones(x.shape, dtype=torch.bool)
    else:
        mask = as_tensor(valid_mask).to(torch.bool).reshape(x.shape)
    pipe = array_pipeline(cfg, train=train)
    if seed is not None:
        pipe.set_random_state(seed=seed)
    image = x[None].detach().cpu().numpy().astype(np.float32, copy=False)
    return pipe({"image": image, "valid_mask": mask[None].cpu().numpy()})


def collate_samples(samples: list[Mapping[str, Any]]) -> dict[str, Any]:
    """DataLoader ``collate_fn`` for pipeline outputs: tensors and numeric records
    (``physics``, ``geometry``, ``window``) are stacked; ``meta`` stays a list of dicts.

    ``default_collate`` (and MONAI's ``list_data_collate``) refuse the ``None`` values that
    ``XrayMeta.to_dict()`` legitimately holds (no pixel spacing, no view position, ...).
    """
    stackable = [{k: v for k, v in s.items() if k != "meta"} for s in samples]
    batch = default_collate(stackable)
    if any("meta" in s for s in samples):
        batch["meta"] = [s.get("meta") for s in samples]
    return batch
