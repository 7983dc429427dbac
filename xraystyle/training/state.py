"""Everything a training run updates: networks, EMA copies, optimisers (no behaviour beyond
building, saving and restoring them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models.networks import build_networks
from .accel import Accel
from .config import RunConfig
from .ema import make_ema

EMA_NETS = ("G", "F", "E")


@dataclass
class TrainState:
    nets: nn.ModuleDict
    ema: nn.ModuleDict
    optims: dict[str, torch.optim.Optimizer]
    step: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "ema": {k: v.state_dict() for k, v in self.ema.items()},
            "optims": {k: v.state_dict() for k, v in self.optims.items()},
            "step": self.step,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        for k, v in self.nets.items():
            v.load_state_dict(sd["nets"][k])
        for k, v in self.ema.items():
            v.load_state_dict(sd["ema"][k])
        for k, v in self.optims.items():
            v.load_state_dict(sd["optims"][k])
        self.step = int(sd["step"])


def build_state(cfg: RunConfig, accel: Accel, seed: int | None = None) -> TrainState:
    """Fresh networks (He init from ``seed``), EMA copies and Adam optimisers on the device."""
    if seed is not None:
        torch.manual_seed(seed)
    nets = build_networks(cfg.model, len(cfg.domains), d_classify=cfg.loss.lambda_cls > 0,
                          d_style=cfg.loss.lambda_style_match > 0).to(accel.device)
    if accel.channels_last:
        nets = nets.to(memory_format=torch.channels_last)
    ema = nn.ModuleDict({k: make_ema(nets[k]) for k in EMA_NETS})
    o = cfg.optim
    kw: dict[str, Any] = {"betas": (o.beta1, o.beta2), "weight_decay": o.weight_decay}
    kw["fused" if accel.fused_optim else "foreach"] = True
    lrs = {"G": o.lr, "F": o.f_lr, "E": o.lr, "D": o.lr if o.d_lr is None else o.d_lr}
    optims = {k: torch.optim.Adam(nets[k].parameters(), lr=lr, **kw) for k, lr in lrs.items()}
    return TrainState(nets, ema, optims)
