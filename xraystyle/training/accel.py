"""Execution settings: what "reference" and "fast" mean on a given device.

``reference`` is the paper's arithmetic as written: fp32, eager, plain Adam. ``fast`` keeps the
same losses and update rule but runs forward passes under bf16 autocast, in channels_last
memory layout, with torch.compile'd networks (the compiler fuses the memory-bound instance
norm / AdaIN / LeakyReLU / resampling work that dominates the step) and fused Adam. The
discriminator's real-image pass on R1 steps stays eager and in fp32 (compiled graphs do not
support the double backward, and R1 stays exact); its other passes are compiled.
``auto`` = fast on CUDA, reference elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accel:
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False
    fused_optim: bool = False
    prefetch: int = 0
    compile_backend: str = "inductor"  # tests use "aot_eager": the same capture, no code generation
    compile_mode: str | None = None  # torch.compile mode, e.g. "reduce-overhead" (CUDA graphs)
    tf32: bool = False  # TF32 for fp32 convolutions / matmuls (the R1 pass in fast mode)

    @property
    def name(self) -> str:
        return "fast" if (self.amp_dtype or self.compile or self.channels_last) else "reference"

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def configure_backends(self) -> None:
        """Process-wide backend flags for this mode, set once by whoever runs steps (trainer,
        benchmark). TF32 off unless asked for: torch's default leaves it on for cuDNN
        convolutions, which would make "fp32" mean 10-bit mantissas in reference mode and in the
        R1 pass (StyleGAN2-ADA turns it off for the same reason). cuDNN autotuning on: shapes
        are static in training."""
        if self.device.type != "cuda":
            return
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def resolve_device(name: str) -> torch.device:
    # the CPU thread policy in effect (xraystyle/runtime.py), for `-v` runs and bug reports
    log.info("%d CPU threads (%s)", torch.get_num_threads(), ", ".join(
        f"{k}={os.environ.get(k, 'unset')}" for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import ConfigError

        raise ConfigError("--device cuda: CUDA is not available on this machine")
    return torch.device(name)


def make_accel(mode: str, device: torch.device) -> Accel:
    if mode == "auto":
        mode = "fast" if device.type == "cuda" else "reference"
    if mode == "reference":
        return Accel(device, prefetch=2 if device.type == "cuda" else 0)
    cuda = device.type == "cuda"
    # On CPU, "fast" keeps to what helps there (compile); bf16 autocast is slower on most CPUs.
    return Accel(device, amp_dtype=torch.bfloat16 if cuda else None, channels_last=cuda,
                 compile=True, fused_optim=cuda, prefetch=2 if cuda else 0)


def compiled(net: nn.Module, accel: Accel) -> nn.Module:
    if not accel.compile:
        return net
    # One graph per (grad mode, which inputs and weights need gradients) that a step uses: E has
    # six with the physics remedies, near dynamo's default limit of 8, past which it runs eager.
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 16)
    return torch.compile(net, dynamic=False, backend=accel.compile_backend, mode=accel.compile_mode)


def forward_nets(nets: nn.ModuleDict, accel: Accel) -> nn.ModuleDict:
    """The callables of the forward passes: G, F, E, D (compiled in fast mode) and ``D_r1``,
    the eager D for the real pass that R1 differentiates twice. Parameters stay in ``nets``."""
    fwd = nn.ModuleDict({k: compiled(nets[k], accel) for k in ("G", "F", "E", "D")})
    fwd["D_r1"] = nets["D"]
    return fwd
