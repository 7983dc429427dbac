"""A trained model for synthesis and evaluation: EMA networks + the config they were built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import from_dict
from .errors import CheckpointError, ConfigError, XrayStyleError
from .models.networks import build_networks


@dataclass
class TrainedModel:
    nets: nn.ModuleDict  # "G", "F", "E" (EMA copies unless use_ema=False), eval mode, no grads
    cfg: "RunConfig"  # noqa: F821 - the run config stored in the checkpoint
    domains: list[str]
    step: int
    checkpoint: Path
    checkpoint_sha256: str
    config_dict: dict = field(default_factory=dict)  # the config as stored in the checkpoint (stable hash)

    def domain_index(self, name: str) -> int:
        if name not in self.domains:
            raise XrayStyleError(f"unknown target domain {name!r}; this model knows: {', '.join(self.domains)}")
        return self.domains.index(name)

    @property
    def multi_label(self) -> bool:
        return self.cfg.multi_label

    def target_label(self, spec: str) -> torch.Tensor:
        """The label tensor ``y_trg`` (batch of one) for a target written as text.

        Single-domain models take a domain name. Multi-label models take a finding set written
        ``effusion+nodule``; ``normal`` (or an empty string) is the empty set.
        """
        if not self.multi_label:
            return torch.tensor([self.domain_index(spec)], dtype=torch.long)
        names = [n.strip() for n in spec.split("+") if n.strip() and n.strip() != "normal"]
        return self.finding_set(names)

    def finding_set(self, present: list[str], base: torch.Tensor | None = None,
                    absent: list[str] = ()) -> torch.Tensor:
        """Multi-hot [1, K]: ``base`` (default: the empty set; NaN = unknown becomes absent) with
        ``present`` findings added and ``absent`` ones removed (relative edits)."""
        if not self.multi_label:
            raise XrayStyleError("finding sets need a multi-label model (trained with --findings)")
        y = torch.zeros(1, len(self.domains)) if base is None else torch.nan_to_num(base.float().reshape(1, -1))
        for name, value in [(n, 1.0) for n in present] + [(n, 0.0) for n in absent]:
            if name not in self.domains:
                raise XrayStyleError(f"unknown finding {name!r}; this model knows: {', '.join(self.domains)}")
            y[0, self.domains.index(name)] = value
        return y

    def set_text(self, y: torch.Tensor) -> str:
        """A finding set [1, K] as target text: ``effusion+nodule``, or ``normal`` when empty."""
        return "+".join(d for d, v in zip(self.domains, y.reshape(-1).tolist()) if v == 1.0) or "normal"

    def source_set(self, findings: tuple[float, ...] | None, given: list[str] | None = None) -> torch.Tensor:
        """A source's own finding set [1, K] (NaN = unknown): ``given`` names (all others absent)
        when the user named them, else a manifest row's values, else all unknown."""
        if given is not None:
            return self.finding_set(given)
        if findings is not None:
            return torch.tensor([findings], dtype=torch.float32)
        return torch.full((1, len(self.domains)), float("nan"))

    @property
    def device(self) -> torch.device:
        return next(self.nets.parameters()).device


def load_trained_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> TrainedModel:
    """Load a checkpoint file, or the latest verified snapshot of a run folder."""
    from .training.checkpoint import load_checkpoint, load_latest
    from .training.config import RunConfig

    path = Path(path)
    if path.is_dir():
        found = load_latest(path)
        if found is None:
            raise CheckpointError(path, "no readable checkpoint in this run folder")
        payload, path = found
    else:
        payload = load_checkpoint(path)
    try:
        cfg = from_dict(RunConfig, payload["config"])
        state = payload["state"]["ema" if use_ema else "nets"]
        nets = build_networks(cfg.model, len(cfg.domains))
        model = nn.ModuleDict({k: nets[k] for k in ("G", "F", "E")})
        for k in model:
            model[k].load_state_dict(state[k])
    except (KeyError, TypeError, RuntimeError, ConfigError) as exc:
        raise CheckpointError(path, f"checkpoint does not hold a usable model ({str(exc).splitlines()[0][:150]})") from None
    model.eval().requires_grad_(False).to(device)
    return TrainedModel(model, cfg, list(cfg.domains), int(payload["step"]), path, payload["file_sha256"],
                        payload["config"])
