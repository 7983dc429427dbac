"""The run configuration: one validated dataclass tree, loaded from YAML, saved with every run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..cohorts.vocabulary import NORMAL
from ..config import check, from_dict, load_yaml, to_dict
from ..data.sampling import TARGET_POLICIES
from ..errors import ConfigError
from ..models.args import ModelArgs
from ..models.conditioning import is_set_conditioning
from ..models.config import ModelConfig
from ..models.labels import LabelSpace
from ..transforms.config import AugmentConfig, PreprocessConfig
from .losses import GEOMETRY_CELLS, LossConfig
from .physics import PhysicsConfig


@dataclass
class OptimConfig:
    lr: float = 1e-4  # G, E, D
    f_lr: float = 1e-6  # mapping network
    d_lr: float | None = None  # D alone (two time-scale update rule); None: lr
    beta1: float = 0.0
    beta2: float = 0.99
    weight_decay: float = 1e-4
    ema_beta: float = 0.999

    def __post_init__(self):
        check(self.lr > 0 and self.f_lr > 0, "optim.lr/f_lr", "must be > 0")
        check(self.d_lr is None or self.d_lr > 0, "optim.d_lr", "must be > 0 (or null: optim.lr)")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "optim.beta1/beta2", "must be in [0, 1)")
        check(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        check(0 <= self.ema_beta < 1, "optim.ema_beta", "must be in [0, 1)")


@dataclass
class DataConfig:
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # physics augmentation of real images
    split: str = "train"
    # Finding combinations kept out of training entirely (multi-label runs), e.g. [[effusion, nodule]]
    holdout_combinations: list[list[str]] = field(default_factory=list)
    workers: int = 0  # DataLoader workers for building the tensor cache
    max_bad_fraction: float = 0.01

    def __post_init__(self):
        check(self.split in ("train", "val", "test", "all"), "data.split", "must be train, val, test or all")
        check(self.workers >= 0, "data.workers", "must be >= 0")
        check(0 <= self.max_bad_fraction <= 1, "data.max_bad_fraction", "must be in [0, 1]")


@dataclass
class TrainConfig:
    iters: int = 100_000
    batch_size: int = 8  # global batch (split across data-parallel processes)
    seed: int = 0
    mode: str = "auto"  # "reference" (fp32 eager), "fast" (bf16, channels_last, compile), "auto"
    # multi-label targets: toggle | observed | random | mixed; single domains: toggle = another
    # domain than the source's, any other value = uniform over all domains (the paper)
    target_policy: str = "mixed"
    log_every: int = 10
    sample_every: int = 1000
    ckpt_every: int = 5000
    keep_ckpts: int = 3
    n_samples: int = 4  # source images in sample grids

    def __post_init__(self):
        check(self.iters >= 1, "train.iters", "must be >= 1")
        check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        check(self.mode in ("auto", "reference", "fast"), "train.mode", "must be auto, reference or fast")
        check(self.target_policy in TARGET_POLICIES, "train.target_policy",
              f"must be one of {', '.join(TARGET_POLICIES)}")
        for key in ("log_every", "sample_every", "ckpt_every", "keep_ckpts", "n_samples"):
            check(getattr(self, key) >= 1, f"train.{key}", "must be >= 1")


@dataclass
class EvalConfig:
    """Evaluation during training (xraystyle.evaluation.evaluate_model on the EMA networks)."""

    every: int = 0  # steps between evaluations; 0 = off
    classifier: str | None = None  # classifier spec: xrv:<weights> or a classifier .pt
    split: str = "val"
    limit: int = 16  # source images per domain pair
    n_styles: int = 4

    def __post_init__(self):
        check(self.every >= 0, "eval.every", "must be >= 0 (0 = off)")
        check(self.every == 0 or self.classifier, "eval.classifier", "needed when eval.every > 0")
        check(self.split in ("train", "val", "test"), "eval.split", "must be train, val or test")
        check(self.limit >= 1 and self.n_styles >= 1, "eval.limit/n_styles", "must be >= 1")


@dataclass
class RunConfig:
    domains: list[str] = field(default_factory=lambda: [NORMAL, "effusion"])
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        multi = self.multi_label
        if multi:
            check(len(self.domains) >= 1, "domains", "name at least one finding")
            check(NORMAL not in self.domains, "domains",
                  "multi-label runs name findings only: 'normal' is the empty set")
            check(self.eval.every == 0, "eval.every", "periodic evaluation supports single-domain runs only")
        else:
            check(len(self.domains) >= 2, "domains", "need at least two domains, e.g. normal,effusion")
            check(not self.data.holdout_combinations, "data.holdout_combinations", "needs a multi-label run")
        check(len(set(self.domains)) == len(self.domains), "domains", "names must be unique")
        for name in self.domains:
            check(name.isidentifier() and name.islower(), "domains",
                  f"{name!r} is not a finding name (lower-case letters, digits, underscores)")
        for combo in self.data.holdout_combinations:
            check(len(combo) >= 1 and set(combo) <= set(self.domains), "data.holdout_combinations",
                  f"{combo} must name findings of this run ({', '.join(self.domains)})")
        check(self.loss.lambda_extent == 0 or multi or NORMAL in self.domains, "loss.lambda_extent",
              "needs a 'normal' domain: it compares findings added to normal images")
        check(self.loss.cyc_normal_weight == 1 or multi or NORMAL in self.domains, "loss.cyc_normal_weight",
              "needs a 'normal' domain: it weighs the cycle of translations to normal")
        check(self.loss.cyc_detach != "adds" or multi or NORMAL in self.domains, "loss.cyc_detach",
              "adds needs a 'normal' domain: it holds the cycle's first pass on normal sources")
        check(self.loss.lambda_partial == 0 or multi or NORMAL in self.domains, "loss.lambda_partial",
              "needs a 'normal' domain: it mixes translations to normal with their sources")
        check(self.loss.lambda_geometry == 0 or multi or NORMAL in self.domains, "loss.lambda_geometry",
              "needs a 'normal' domain: it reads where translations to and from normal change the image")
        check(self.loss.lambda_laterality == 0 or multi or NORMAL in self.domains, "loss.lambda_laterality",
              "needs a 'normal' domain: it compares adds to normal images with removals of their references")
        check(self.loss.lambda_ref_extent == 0 or multi or NORMAL in self.domains, "loss.lambda_ref_extent",
              "needs a 'normal' domain: it compares adds to normal images with removals of their references")
        check(self.loss.lambda_geometry == 0 or self.model.style_dim >= GEOMETRY_CELLS, "loss.lambda_geometry",
              f"needs model.style_dim >= {GEOMETRY_CELLS}: the style's first {GEOMETRY_CELLS} dims hold the geometry")
        check(self.model.img_size == self.data.preprocess.size, "data.preprocess.size",
              f"must equal model.img_size ({self.model.img_size}), got {self.data.preprocess.size}")


    @property
    def multi_label(self) -> bool:
        """True when labels are finding sets (``model.conditioning`` set-*), not domain indices."""
        return is_set_conditioning(self.model.conditioning)

    @property
    def labels(self) -> LabelSpace:
        """Domains or finding sets, as ``model.conditioning`` says (models/labels.py)."""
        return LabelSpace.for_conditioning(self.model.conditioning, self.domains)

    @property
    def model_args(self) -> ModelArgs:
        """What inference needs (saved in every checkpoint; see models/args.py)."""
        return ModelArgs.from_run(self)

    def fixed_style_rows(self, y: torch.Tensor) -> torch.Tensor | None:
        """Bool (B,) mask of labels whose style is the deterministic normal one. Called three
        times per training step: asks the label space directly, building no ModelArgs."""
        return self.labels.fixed_style_rows(y, self.model.normal_style)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Build a RunConfig from a YAML file (or defaults) with dotted-key overrides applied."""
    data = load_yaml(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {p} is not a section")
        node[leaf] = value
    where = f"{path}: " if path is not None else ""
    try:
        return from_dict(RunConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


__all__ = ["RunConfig", "TrainConfig", "DataConfig", "OptimConfig", "LossConfig", "load_config",
           "config_diff", "to_dict"]
