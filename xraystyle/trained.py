"""A trained model for synthesis and evaluation: (EMA) networks + the arguments they were built from.

A checkpoint carries the model's own arguments (:class:`~xraystyle.models.args.ModelArgs`);
:func:`load_trained_model` rebuilds the networks from those alone, so a checkpoint whose training
config has keys this version does not know (or lacks keys it added) still loads for synthesis.
The trainer's periodic evaluation wraps its in-memory EMA networks the same way
(:meth:`TrainedModel.from_networks`), so evaluation and synthesis see one kind of model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, ConfigError
from .models.args import ModelArgs
from .models.networks import build_networks


@dataclass
class TrainedModel:
    nets: Mapping[str, nn.Module]  # "G", "F", "E" (EMA copies unless use_ema=False), eval mode, no grads
    args: ModelArgs
    step: int | None = None
    checkpoint: Path | None = None  # None for in-memory networks (evaluation during training)
    checkpoint_sha256: str | None = None
    config_dict: dict = field(default_factory=dict)  # the run config as stored (provenance hash)

    @classmethod
    def from_networks(cls, nets: Mapping[str, nn.Module], args: ModelArgs, step: int | None = None,
                      config_dict: dict | None = None) -> "TrainedModel":
        """In-memory networks (the trainer's EMA copies) as a model; nothing is copied."""
        missing = [k for k in ("G", "F", "E") if k not in nets]
        if missing:
            raise ConfigError(f"the networks must include G, F and E (missing: {', '.join(missing)})")
        return cls(nets, args, step, config_dict=config_dict or {})

    @property
    def domains(self) -> list[str]:
        return self.args.domains

    @property
    def preprocess(self):
        return self.args.preprocess

    @property
    def latent_dim(self) -> int:
        return self.args.latent_dim

    @property
    def size(self) -> int:
        return self.args.size

    def fixed(self, y: torch.Tensor) -> torch.Tensor | None:
        """Rows of ``y`` that take the deterministic normal style (ModelArgs.fixed_style_rows)."""
        return self.args.fixed_style_rows(y)

    @property
    def labels(self):
        """Domains or finding sets: parse / write targets, a source's own set (models/labels.py)."""
        return self.args.labels

    @property
    def device(self) -> torch.device:
        for net in self.nets.values():
            for t in (*net.parameters(), *net.buffers()):
                return t.device
        return torch.device("cpu")


def load_trained_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> TrainedModel:
    """Load a checkpoint file, or the latest verified snapshot of a run folder."""
    from .training.checkpoint import load_checkpoint, load_latest

    path = Path(path)
    if path.is_dir():
        found = load_latest(path)
        if found is None:
            raise CheckpointError(path, "no readable checkpoint in this run folder")
        payload, path = found
    else:
        payload = load_checkpoint(path)
    try:
        args = ModelArgs.from_checkpoint(payload)
        state = payload["state"]["ema" if use_ema else "nets"]
        nets = build_networks(args.model, len(args.domains))
        model = nn.ModuleDict({k: nets[k] for k in ("G", "F", "E")})
        for k in model:
            model[k].load_state_dict(state[k])
    except (KeyError, TypeError, RuntimeError, ConfigError) as exc:
        raise CheckpointError(path, f"checkpoint does not hold a usable model ({str(exc).splitlines()[0][:150]})") from None
    model.eval().requires_grad_(False).to(device)
    config = payload.get("config")
    return TrainedModel(model, args, int(payload["step"]), path, payload["file_sha256"],
                        config if isinstance(config, dict) else {})
