"""Networks held fixed for part of a step: no weight gradients, gradients still flow through."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

from torch import nn


@contextmanager
def frozen(nets: Iterable[nn.Module]) -> Iterator[None]:
    """No weight gradients for ``nets`` inside the block; each parameter's own flag restored."""
    params = [p for net in nets for p in net.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
