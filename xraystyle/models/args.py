"""The model's own arguments: everything inference needs, saved in every checkpoint.

nanoGPT's ``model_args`` is the model to follow: a checkpoint carries the arguments its networks
were built from, and :class:`~xraystyle.trained.TrainedModel` rebuilds from those alone. The
training config (optimiser, losses, schedules, evaluation) is kept in the checkpoint for
resumption and provenance but is never parsed for synthesis, so renaming or removing a
``train.*`` / ``eval.*`` key does not stop older checkpoints from loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..cohorts.vocabulary import NORMAL
from ..config import check, from_dict, to_dict
from ..errors import ConfigError
from ..transforms.config import PreprocessConfig
from .config import ModelConfig
from .labels import LabelSpace


@dataclass
class ModelArgs:
    model: ModelConfig = field(default_factory=ModelConfig)
    domains: list[str] = field(default_factory=lambda: [NORMAL, "effusion"])  # or findings (multi-label)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)  # how inputs are prepared
    # Finding combinations kept out of training (multi-label): evaluation marks them held out.
    holdout_combinations: list[list[str]] = field(default_factory=list)

    def __post_init__(self):
        check(self.model.img_size == self.preprocess.size, "preprocess.size",
              f"must equal model.img_size ({self.model.img_size}), got {self.preprocess.size}")

    @classmethod
    def from_run(cls, cfg) -> "ModelArgs":
        """The model arguments of a RunConfig."""
        return cls(cfg.model, list(cfg.domains), cfg.data.preprocess,
                   [list(c) for c in cfg.data.holdout_combinations])

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any]) -> "ModelArgs":
        """From ``payload["model_args"]``; checkpoints written before it existed carry only the
        run config, whose model-relevant sections are read and nothing else."""
        data = payload.get("model_args")
        if data is None:
            config = payload["config"]
            data_section = config.get("data") if isinstance(config, dict) else None
            if not isinstance(config, dict) or not isinstance(data_section or {}, dict):
                raise ConfigError("model arguments: the checkpoint's config is not a mapping")
            data_section = data_section or {}
            data = {"model": config.get("model") or {}, "domains": config["domains"],
                    "preprocess": data_section.get("preprocess") or {},
                    "holdout_combinations": data_section.get("holdout_combinations") or []}
        try:
            return from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"model arguments: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @property
    def labels(self) -> LabelSpace:
        """Domains or finding sets, as the conditioning says (models/labels.py)."""
        return LabelSpace.for_conditioning(self.model.conditioning, self.domains)

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def size(self) -> int:
        return self.model.img_size

    def fixed_style_rows(self, y: torch.Tensor) -> torch.Tensor | None:
        """Bool (B,) mask of labels whose style is the deterministic normal one, or None when
        every target has sampled styles (``model.normal_style: sampled``, or no normal label)."""
        return self.labels.fixed_style_rows(y, self.model.normal_style)
